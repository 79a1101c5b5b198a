"""The Assets the DAGs produce and consume."""

from __future__ import annotations

from airflow.sdk import Asset

# Each db_backup run emits an event whose extra holds the backup's key and manifest. A name-only
# Asset: a URI scheme would make every parse load the providers' URI handlers (boto3 among them).
BACKUP_ASSET = Asset(name="stellar_escrow_backup")
