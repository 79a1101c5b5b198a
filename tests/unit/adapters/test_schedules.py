"""The rotation's schedule: a first start waits for the next quarter; a missed slot still runs."""

from __future__ import annotations

from datetime import UTC, datetime

import pendulum
import pytest
from airflow.timetables.base import DataInterval, TimeRestriction
from airflow.timetables.trigger import CronTriggerTimetable

from stellar_ops.adapters.common import schedules
from stellar_ops.adapters.common.schedules import CronFromNextSlot

QUARTERLY = "0 9 1 1,4,7,10 *"
START = pendulum.datetime(2026, 1, 1, tz="UTC")
NOW = pendulum.datetime(2026, 12, 6, 17, 0, tz="UTC")


@pytest.fixture
def now(monkeypatch):
    monkeypatch.setattr(schedules, "_now", lambda: NOW)
    monkeypatch.setattr("airflow.timetables.trigger.utcnow", lambda: NOW)
    return NOW


def first_run(timetable, last=None):
    info = timetable.next_dagrun_info(
        last_automated_data_interval=last,
        restriction=TimeRestriction(earliest=START, latest=None, catchup=False),
    )
    return info.run_after


def test_a_first_start_waits_for_the_next_quarter(now):
    assert first_run(CronFromNextSlot(QUARTERLY, timezone="UTC")) == datetime(2027, 1, 1, 9, tzinfo=UTC)
    # what Airflow's own cron schedule would do: the October rotation, at once
    assert first_run(CronTriggerTimetable(QUARTERLY, timezone="UTC")) == datetime(2026, 10, 1, 9, tzinfo=UTC)


def test_once_it_has_run_a_missed_slot_still_runs_late(now):
    july = DataInterval(
        pendulum.datetime(2026, 7, 1, 9, tz="UTC"), pendulum.datetime(2026, 7, 1, 9, tz="UTC")
    )
    expected = first_run(CronTriggerTimetable(QUARTERLY, timezone="UTC"), july)
    assert first_run(CronFromNextSlot(QUARTERLY, timezone="UTC"), july) == expected
    assert expected == datetime(2026, 10, 1, 9, tzinfo=UTC)


def test_the_scheduler_reads_it_back_from_the_serialized_dag():
    from airflow.serialization.encoders import encode_timetable
    from airflow.serialization.serialized_objects import decode_timetable

    encoded = encode_timetable(CronFromNextSlot(QUARTERLY, timezone="UTC"))
    assert encoded["__type"] == "stellar_ops.adapters.common.schedules.CronFromNextSlot"
    decoded = decode_timetable(encoded)
    assert isinstance(decoded, CronFromNextSlot)
    assert decoded.summary.startswith(QUARTERLY)
