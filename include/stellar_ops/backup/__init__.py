"""The daily backup (``db_backup``): pg_dump streamed to S3, verified, published, retention."""
