"""Change management (operations manual 6.1): database migrations rehearsed on a fresh restore
before production, config changes with a verified rolling restart, and the change log."""
