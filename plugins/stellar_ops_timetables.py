"""Registers this project's timetables, so the scheduler can read them back from serialized DAGs."""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from stellar_ops.adapters.common.schedules import CronFromNextSlot


class StellarOpsTimetablesPlugin(AirflowPlugin):
    name = "stellar_ops_timetables"
    timetables = [CronFromNextSlot]
