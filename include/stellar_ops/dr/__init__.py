"""Disaster recovery (``dr_restore_test``): the restore engine, scratch servers, verdicts and report."""
