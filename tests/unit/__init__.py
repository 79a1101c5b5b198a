"""Unit tests of the pure stellar_ops modules: no servers, no network, no Airflow runtime."""
