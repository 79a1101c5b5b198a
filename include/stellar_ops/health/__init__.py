"""The morning health check: services, overnight alerts, backups, disk, indexer lag, certificates."""
