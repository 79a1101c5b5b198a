"""Loads :mod:`stellar_ops.adapters.common.queued_at_deadlines` into every Airflow process that
loads plugins, so that Clear works on DAGs with a queued-at deadline on Airflow 3.3.0 to 3.3.2.

The API server serves Clear; it loads the plugins folder when it builds its app (``create_app``
calls ``init_plugins``), and then runs each plugin's ``on_load``. The fix probes the installed
Airflow and applies only when Airflow has the bug; see that module for why and when it stops.
"""

from __future__ import annotations

from typing import Any

from airflow.plugins_manager import AirflowPlugin

from stellar_ops.adapters.common.queued_at_deadlines import install


class QueuedAtDeadlinesPlugin(AirflowPlugin):
    name = "stellar_ops_queued_at_deadlines"

    @classmethod
    def on_load(cls, *args: Any, **kwargs: Any) -> None:
        install()
