"""Shared by every procedure: configuration sections, errors, the taxonomy, alerts, metrics, processes."""
