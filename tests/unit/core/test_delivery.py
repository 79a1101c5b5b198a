"""The retry loop every message goes through, with a fake clock: what is retried, how long it waits."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pytest

from stellar_ops.core.alerts import failure_message, rerouted, unpaged, with_alert_id
from stellar_ops.core.delivery import (
    DeliveryPolicy,
    Refused,
    Undelivered,
    alert_id,
    backoff,
    deliver,
    retry_after,
)


class FakeTime:
    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


class Script:
    """A "post once" answering from a list: a status, (status, headers), or an exception to raise;
    the last answer repeats. Each attempt takes ``latency`` seconds of the fake clock."""

    def __init__(self, clock: FakeTime, answers: Iterable[Any], latency: float = 0.0) -> None:
        self.clock = clock
        self.answers = list(answers)
        self.latency = latency
        self.timeouts: list[float] = []

    def __call__(self, timeout: float) -> tuple[int, dict[str, str]]:
        self.timeouts.append(timeout)
        self.clock.now += min(self.latency, timeout)  # a real attempt ends at its timeout
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, BaseException):
            raise answer
        return answer if isinstance(answer, tuple) else (answer, {})


def run(answers: Iterable[Any], policy: DeliveryPolicy | None = None, latency: float = 0.0):
    fake = FakeTime()
    post = Script(fake, answers, latency)
    outcome = deliver(
        post, policy or DeliveryPolicy(), clock=fake.clock, sleep=fake.sleep, jitter=lambda: 0.999999
    )
    return outcome, fake, post


def test_a_2xx_at_once_makes_one_attempt_and_no_wait() -> None:
    outcome, fake, _ = run([200])
    assert outcome.attempts == 1 and fake.sleeps == []


def test_a_429_waits_what_retry_after_asks() -> None:
    outcome, fake, _ = run([(429, {"Retry-After": "2"}), (429, {"retry-after": "7"}), 200])
    assert fake.sleeps == [2.0, 7.0] and outcome.attempts == 3


def test_retry_after_is_capped() -> None:
    _, fake, _ = run([(429, {"Retry-After": "3600"}), 200], DeliveryPolicy(retry_after_cap=30))
    assert fake.sleeps == [30.0]


def test_a_429_without_a_usable_retry_after_backs_off() -> None:
    _, fake, _ = run([(429, {}), (429, {"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}), 200])
    assert fake.sleeps == pytest.approx([1.0, 2.0], abs=1e-3)
    assert retry_after({"RETRY-AFTER": " 4 "}, cap=60) == 4.0
    assert retry_after({"Retry-After": "-3"}, cap=60) == 0.0


def test_5xx_and_connection_errors_back_off_exponentially_up_to_the_cap() -> None:
    answers = [500, 502, ConnectionRefusedError(), TimeoutError(), 503, 500, 500, 200]
    outcome, fake, _ = run(answers, DeliveryPolicy(max_delay=8, max_seconds=1000))
    assert fake.sleeps == pytest.approx([1, 2, 4, 8, 8, 8, 8], abs=1e-3)
    assert outcome.attempts == 8


def test_jitter_spreads_the_wait_between_half_and_all_of_it() -> None:
    policy = DeliveryPolicy(base_delay=1, max_delay=30)
    assert backoff(3, policy, jitter=lambda: 0.0) == 2.0
    assert backoff(3, policy, jitter=lambda: 0.999999) == pytest.approx(4.0, abs=1e-3)
    assert backoff(50, policy, jitter=lambda: 0.0) == 15.0  # capped, and no overflow


def test_the_bound_is_respected_and_names_the_last_answer() -> None:
    fake = FakeTime()
    post = Script(fake, [503])
    with pytest.raises(Undelivered, match=r"answered HTTP 503; gave up after 5 attempts") as caught:
        deliver(
            post, DeliveryPolicy(max_seconds=20), clock=fake.clock, sleep=fake.sleep, jitter=lambda: 0.999999
        )
    assert caught.value.attempts == 5 and caught.value.status == 503
    # waits of 1, 2, 4, 8 s; the next (16 s) would cross the 20 s bound, so it gives up at once
    assert fake.sleeps == pytest.approx([1, 2, 4, 8], abs=1e-3) and fake.now - 1000 <= 20


def test_a_minute_of_5xx_is_survived_within_the_default_bound() -> None:
    fake = FakeTime()
    calls = []

    def outage(timeout: float) -> tuple[int, dict[str, str]]:
        calls.append(fake.now)
        return (500 if fake.now - 1000 < 60 else 200), {}

    outcome = deliver(outage, DeliveryPolicy(), clock=fake.clock, sleep=fake.sleep, jitter=lambda: 0.0)
    assert outcome.seconds >= 60 and outcome.seconds <= DeliveryPolicy().max_seconds


def test_slow_attempts_count_against_the_bound_and_get_the_time_that_is_left() -> None:
    fake = FakeTime()
    post = Script(fake, [TimeoutError()], latency=10)
    policy = DeliveryPolicy(max_seconds=25, attempt_timeout=10)
    with pytest.raises(Undelivered) as caught:
        deliver(post, policy, clock=fake.clock, sleep=fake.sleep, jitter=lambda: 0.999999)
    # 10 s, wait 1, 10 s, wait 2, then only 2 s are left for the third attempt
    assert post.timeouts == pytest.approx([10, 10, 2], abs=1e-3)
    assert caught.value.attempts == 3 and fake.now - 1000 == pytest.approx(25, abs=1e-2)


@pytest.mark.parametrize("status", [400, 403, 404, 410])
def test_a_4xx_other_than_429_is_not_retried(status: int) -> None:
    with pytest.raises(Refused, match=rf"answered HTTP {status}: not retried.*URL or token") as caught:
        run([status, 200])
    assert caught.value.attempts == 1


def test_an_unexpected_error_is_not_swallowed() -> None:
    with pytest.raises(KeyError):
        run([KeyError("bug")])


MESSAGE = {"text": "[P1] BackupFailed: db_backup.dump_to_s3 failed", "blocks": [{"type": "section"}]}


def test_ids_are_stable_and_tell_messages_apart() -> None:
    assert alert_id(MESSAGE) == alert_id(dict(MESSAGE))
    assert len(alert_id(MESSAGE)) == 16
    assert alert_id(MESSAGE) != alert_id({**MESSAGE, "text": MESSAGE["text"] + " (try 2)"})
    assert alert_id({**MESSAGE, "alert_id": "given"}) == "given"


def test_the_id_is_shown_once_under_the_message_and_kept_through_rerouting() -> None:
    ident = alert_id(MESSAGE)
    shown = with_alert_id(MESSAGE, ident)
    assert shown["text"] == MESSAGE["text"]  # the notification line stays what the message says
    assert shown["blocks"] == [
        *MESSAGE["blocks"],
        {
            "type": "context",
            "block_id": "alert_id",
            "elements": [{"type": "mrkdwn", "text": f"alert id: {ident}"}],
        },
    ]
    assert with_alert_id(shown, ident) == shown
    marked = with_alert_id(rerouted(MESSAGE, "the paging channel could not be reached"), ident)
    assert marked["text"].startswith(":warning: (the paging channel could not be reached) [P1]")
    assert marked["blocks"][-1] == shown["blocks"][-1] and len(marked["blocks"]) == 2
    assert "this should have paged" in unpaged(MESSAGE)["text"]
    plain = with_alert_id({"text": "no blocks"}, ident)
    assert plain["text"] == f"no blocks\nalert id: {ident}" and with_alert_id(plain, ident) == plain


def test_a_failure_alert_has_the_same_id_every_time_it_is_built() -> None:
    from stellar_ops.core.alerts import FailureAlert

    alert = FailureAlert(
        "db_backup", "dump_to_s3", "manual__1", 3, 3, "P1", "BackupFailed", "http://x/dags/db_backup", "boom"
    )
    assert alert_id(failure_message(alert)) == alert_id(failure_message(alert))
    other_try = FailureAlert(
        "db_backup", "dump_to_s3", "manual__2", 3, 3, "P1", "BackupFailed", "http://x/dags/db_backup", "boom"
    )
    assert alert_id(failure_message(alert)) != alert_id(failure_message(other_try))
