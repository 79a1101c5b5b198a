"""Database maintenance (``db_maintenance``): VACUUM ANALYZE in the window, the bloat report."""
