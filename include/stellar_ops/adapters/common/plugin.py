"""The project's Airflow plugin, registered as the ``airflow.plugins`` entry point of the package.

Wherever the package is installed (the image, ``make run``'s virtualenv, a worker, a developer's
``airflow dags test``), every Airflow process finds it, whatever its plugins folder:

- :class:`~stellar_ops.adapters.common.schedules.CronFromNextSlot` is registered, so the scheduler,
  the DAG processor and ``dags test`` can serialize and read back the DAGs that use it;
- on load, the fix of :mod:`stellar_ops.adapters.common.queued_at_deadlines` is installed where
  the installed Airflow still has the bug (Clear on a DAG with a queued-at deadline).
"""

from __future__ import annotations

from typing import Any

from airflow.plugins_manager import AirflowPlugin

from stellar_ops.adapters.common.queued_at_deadlines import install
from stellar_ops.adapters.common.schedules import CronFromNextSlot


class StellarOpsPlugin(AirflowPlugin):  # type: ignore[misc]
    name = "stellar_ops"
    timetables = [CronFromNextSlot]

    @classmethod
    def on_load(cls, *args: Any, **kwargs: Any) -> None:
        install()
