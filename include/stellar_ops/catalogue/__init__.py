"""The backup catalogue: object names, manifests, the inventory and verification, read by every procedure that touches backups."""
