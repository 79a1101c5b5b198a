"""API key rotation and the secrets rotation ledger."""
