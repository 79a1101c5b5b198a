"""The Assets the DAGs produce and consume."""

from __future__ import annotations

from airflow.sdk import Asset

# Each db_backup run emits an event whose extra names the backup and its manifest, with a summary
# (Published.asset_event_extra): its size does not grow with the database's tables. A name-only
# Asset: a URI scheme would make every parse load the providers' URI handlers (boto3 among them).
BACKUP_ASSET = Asset(name="stellar_escrow_backup")
