"""PostgreSQL: targets and connections, client binaries, the catalog, and local servers."""
