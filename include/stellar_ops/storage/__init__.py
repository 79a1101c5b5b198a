"""Storage: the S3 bucket and the compression of backup streams."""
