"""Point-in-time recovery: physical base backups beside barman-cloud's WAL archive, their catalogue,
retention and recovery. Pure logic over :class:`~stellar_ops.storage.s3.S3Store` and
:class:`~stellar_ops.postgres.target.PgTarget`: no Airflow import."""
