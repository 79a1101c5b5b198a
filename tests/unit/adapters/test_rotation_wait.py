"""A rotation that waits for another tells the ops channel once per run: on its first look, not at
every reschedule, and not again when a failed try is retried (a retry has no reschedules of its own)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

import pytest

from stellar_ops.adapters.rotation import _first_look


@dataclass
class Task:
    retries: int = 2


@dataclass
class TaskInstance:
    try_number: int = 1
    max_tries: int = 2  # retries 2: tries 1, 2 and 3
    rescheduled: bool = False
    task: Task = field(default_factory=Task)

    def get_first_reschedule_date(self, context):
        return datetime(2026, 12, 7, tzinfo=UTC) if self.rescheduled else None


@pytest.mark.parametrize(
    ("ti", "first"),
    [
        (TaskInstance(), True),  # the first try's first look
        (TaskInstance(rescheduled=True), False),  # a later look of the same try
        (TaskInstance(try_number=2), False),  # a retry: the first try looked and told
        (TaskInstance(try_number=3), False),
        (TaskInstance(try_number=4, max_tries=5), True),  # cleared: max_tries grew, a new start
        (TaskInstance(try_number=4, max_tries=5, rescheduled=True), False),
    ],
)
def test_the_ops_channel_is_told_on_the_run_s_first_look_only(ti, first):
    assert _first_look(ti, {}) is first
