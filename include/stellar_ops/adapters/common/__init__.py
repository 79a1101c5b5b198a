"""What every DAG shares: the header, alerting, connections, the task runtime, the Assets."""
