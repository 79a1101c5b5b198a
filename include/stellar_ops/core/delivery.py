"""Delivering one message to a webhook within a time bound: the retry loop every sender shares.

Slack's incoming webhooks answer 429 with ``Retry-After`` when a channel is rate limited, and 5xx
in an outage; neither Airflow's notifier callbacks nor the Slack SDK retry them, so a P1 sent in
such a minute would be lost. :func:`deliver` calls a "post once" function until it gets a 2xx:

- 429: wait ``Retry-After`` seconds (capped by ``retry_after_cap``; backoff when absent);
- 5xx, a connection error, a timeout: exponential backoff (``base_delay`` doubling up to
  ``max_delay``) with jitter, so several senders do not retry in step;
- any other 4xx: not retried. It means the webhook URL or token is wrong (Slack answers 403/404
  ``no_service``/``invalid_token``) or the payload is refused (400): retrying cannot fix it.

It gives up (:class:`Undelivered`) when the next wait would cross ``max_seconds`` since the first
try, so a caller always knows within a bound whether to fall back to another route.

The module is pure: the clock, the sleep and the jitter are parameters, for tests.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from stellar_ops.core.config import DeliveryConfig
from stellar_ops.core.errors import StellarOpsError

# What one attempt returns: the HTTP status and the response headers.
Answer = tuple[int, Mapping[str, str]]
# One attempt, given its timeout in seconds; raises OSError (connection refused, reset, timed out;
# requests' and urllib's errors are OSErrors) or http.client.HTTPException when nothing answered.
PostOnce = Callable[[float], Answer]

TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (OSError, http.client.HTTPException)


@dataclass(frozen=True)
class DeliveryPolicy:
    max_seconds: float = 150.0  # from the first try to the last: a minute of 5xx is survived
    attempt_timeout: float = 10.0
    retry_after_cap: float = 60.0
    base_delay: float = 1.0
    max_delay: float = 30.0

    def bounded(self, max_seconds: float) -> DeliveryPolicy:
        """The same policy within a shorter bound (a fallback route, the outbox drain)."""
        return DeliveryPolicy(
            max_seconds=max_seconds,
            attempt_timeout=min(self.attempt_timeout, max(max_seconds, 0.1)),
            retry_after_cap=self.retry_after_cap,
            base_delay=self.base_delay,
            max_delay=self.max_delay,
        )


def policy_of(settings: DeliveryConfig) -> DeliveryPolicy:
    """The policy ``alerts.delivery`` sets."""
    return DeliveryPolicy(
        max_seconds=settings.max_seconds,
        attempt_timeout=settings.attempt_timeout_seconds,
        retry_after_cap=settings.retry_after_cap_seconds,
        max_delay=settings.max_backoff_seconds,
    )


class DeliveryError(StellarOpsError):
    """The message was not delivered; ``attempts`` tries were made, the last answered ``status``."""

    def __init__(self, message: str, *, attempts: int, status: int | None) -> None:
        super().__init__(message)
        self.attempts = attempts
        self.status = status


class Refused(DeliveryError):
    """A 4xx other than 429: the webhook URL, its token or the payload is wrong. Not retried."""


class Undelivered(DeliveryError):
    """Still 429/5xx/unreachable when the time bound ran out."""


@dataclass(frozen=True)
class Delivered:
    attempts: int
    seconds: float


def retry_after(headers: Mapping[str, str], cap: float) -> float | None:
    """``Retry-After`` in seconds (any header case), capped; None when absent or not a number
    (an HTTP date is not worth parsing: backoff covers it)."""
    for name, value in headers.items():
        if name.lower() == "retry-after":
            try:
                seconds = float(str(value).strip())
            except ValueError:
                return None
            return min(max(seconds, 0.0), cap)
    return None


def backoff(attempt: int, policy: DeliveryPolicy, jitter: Callable[[], float] = random.random) -> float:
    """The wait after failed attempt ``attempt`` (1-based): ``base_delay * 2**(attempt-1)`` capped at
    ``max_delay``, then scaled by a random factor in [0.5, 1) ("equal jitter": it still grows)."""
    delay: float = min(policy.max_delay, policy.base_delay * 2.0 ** min(attempt - 1, 30))
    return delay * (0.5 + jitter() / 2)


def deliver(
    post_once: PostOnce,
    policy: DeliveryPolicy,
    *,
    what: str = "the webhook",
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    jitter: Callable[[], float] = random.random,
) -> Delivered:
    """Call ``post_once`` until it answers 2xx, within ``policy.max_seconds``; see the module doc.
    ``what`` names the destination in errors (never its URL: a Slack webhook URL is a secret)."""
    start = clock()
    attempt = 0
    while True:
        attempt += 1
        remaining = policy.max_seconds - (clock() - start)
        timeout = max(0.1, min(policy.attempt_timeout, remaining))
        status: int | None = None
        try:
            status, headers = post_once(timeout)
        except TRANSIENT_ERRORS as exc:
            reason = f"could not be reached ({type(exc).__name__})"
            wait = backoff(attempt, policy, jitter)
        else:
            if 200 <= status < 300:
                return Delivered(attempts=attempt, seconds=clock() - start)
            if status == 429:
                reason = "answered HTTP 429 (rate limited)"
                asked = retry_after(headers, policy.retry_after_cap)
                wait = asked if asked is not None else backoff(attempt, policy, jitter)
            elif status >= 500:
                reason = f"answered HTTP {status}"
                wait = backoff(attempt, policy, jitter)
            else:
                raise Refused(
                    f"{what} answered HTTP {status}: not retried, a 4xx other than 429 means the "
                    "request is wrong (for a webhook, its URL or token): check the connection",
                    attempts=attempt,
                    status=status,
                )
        elapsed = clock() - start
        if elapsed + wait > policy.max_seconds:
            raise Undelivered(
                f"{what} {reason}; gave up after {attempt} attempts in {elapsed:.0f} s "
                f"(the bound is {policy.max_seconds:.0f} s)",
                attempts=attempt,
                status=status,
            )
        sleep(wait)


def event_alert_id(*parts: object) -> str:
    """The id of the alert about one event, from what identifies the event (for a failed task: DAG,
    run, task, map index, try and kind), so that two mapped tasks failing alike keep two ids."""
    return hashlib.sha256("\x1f".join(str(part) for part in parts).encode()).hexdigest()[:16]


def alert_id(payload: Mapping[str, Any]) -> str:
    """The id of a message: its ``alert_id`` when the sender set one, else a digest of its text and
    blocks. Deterministic, so the same alert (the same DAG, task, run, try, kind and error) sent
    again, retried or replayed from the outbox carries the same id."""
    given = payload.get("alert_id")
    if given:
        return str(given)
    content = json.dumps(
        {"text": payload.get("text"), "blocks": payload.get("blocks")}, sort_keys=True, default=str
    )
    return hashlib.sha256(content.encode()).hexdigest()[:16]


# -- what an undelivered alert leaves behind ------------------------------------------------------


def outbox_keys(prefix: str) -> dict[str, str]:
    """Where kept alerts live in the backups bucket (``prefix`` is ``backup.prefix``): the outbox,
    the drains' claims, and the markers of alerts already sent."""
    base = f"{prefix}alerts/"
    return {"outbox": f"{base}outbox/", "claims": f"{base}claims/", "sent": f"{base}sent/"}


def outbox_document(
    ident: str,
    payload: Mapping[str, Any],
    channel: str,
    failures: list[str],
    *,
    alertmanager: bool,
    kept_at: str,
) -> dict[str, Any]:
    """The outbox copy of a message no channel took, whoever kept it (a task or the CLI): the next
    task of any DAG sends it to ``channel`` (``ops`` or ``paging``)."""
    return {
        "alert_id": ident,
        "channel": channel,
        "payload": dict(payload),
        "kept_at": kept_at,
        "failures": failures,
        "alertmanager": alertmanager,
    }
