"""Schedules that fit their procedure.

Airflow's cron schedules with ``catchup=False`` run the most recent slot already past as soon as a
DAG first appears (a new deployment, ``make run``). For a daily backup that is welcome; for a
quarterly key rotation it means a rotation, and its approval, on the day the product is
installed. :class:`CronFromNextSlot` waits for the next slot instead when the DAG has never been
run by the scheduler; once it has, it behaves as Airflow's ``CronTriggerTimetable`` (a slot missed
while the scheduler was down still runs once, late).

It is a core timetable class, registered by the package's plugin
(:mod:`stellar_ops.adapters.common.plugin`, an ``airflow.plugins`` entry point), so the scheduler
can read it back from the serialized DAG.
"""

from __future__ import annotations

from typing import Any

import pendulum
from airflow.timetables.base import DagRunInfo, DataInterval, TimeRestriction
from airflow.timetables.trigger import CronTriggerTimetable


class CronFromNextSlot(CronTriggerTimetable):  # type: ignore[misc]
    """A cron schedule whose first scheduled run is its next slot, never one already past."""

    description_suffix = " (the first run waits for the next slot)"

    @property
    def summary(self) -> str:
        return f"{self._expression}{self.description_suffix}"

    def next_dagrun_info(
        self, *, last_automated_data_interval: DataInterval | None, restriction: TimeRestriction
    ) -> DagRunInfo | None:
        if last_automated_data_interval is not None or restriction.catchup:
            return super().next_dagrun_info(  # type: ignore[no-any-return]
                last_automated_data_interval=last_automated_data_interval, restriction=restriction
            )
        start = first_slot(self, _now(), restriction.earliest)
        if restriction.latest is not None and restriction.latest < start:
            return None
        return DagRunInfo.interval(start - self._interval, start)  # type: ignore[no-any-return]


def _now() -> Any:
    return pendulum.now("UTC")


def first_slot(timetable: Any, now: Any, earliest: Any | None) -> Any:
    """The first slot at or after ``now`` (and ``earliest``): a slot already past never runs."""
    return timetable._align_to_next(max(now, earliest) if earliest is not None else now)
