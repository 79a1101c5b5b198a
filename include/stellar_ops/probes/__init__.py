"""Read-only probes of what the service exposes (TLS endpoints), shared by the procedures."""
