"""A consumer under load during a rotation: it re-reads "the current credential" before every attempt.

:class:`CredentialHolder` is the consumer's secret (what a service re-reads from its secret store or
.env); :class:`CredentialLoad` runs ``attempt(credential)`` every ``interval`` seconds in a thread
(a new connection each time) and counts what failed, naming each failure by the credential's
fingerprint.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from stellar_ops.rotation.credentials import Credential


class CredentialHolder:
    """The consumer's current credential, switched by the rotation while the load reads it."""

    def __init__(self, credential: Credential) -> None:
        self._lock = threading.Lock()
        self._credential = credential

    def get(self) -> Credential:
        with self._lock:
            return self._credential

    def switch(self, credential: Credential) -> None:
        with self._lock:
            self._credential = credential


@dataclass
class CredentialLoad:
    holder: CredentialHolder
    attempt: Callable[[Credential], None]
    interval: float = 0.05
    attempts: int = 0
    failures: list[str] = field(default_factory=list)
    used: dict[str, int] = field(default_factory=dict)  # identity -> successful attempts
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            credential = self.holder.get()
            self.attempts += 1
            try:
                self.attempt(credential)
            except Exception as exc:  # noqa: BLE001 - every failure is counted, and named
                self.failures.append(f"{credential}: {type(exc).__name__}: {exc}")
            else:
                self.used[credential.identity] = self.used.get(credential.identity, 0) + 1
            self._stop.wait(max(0.0, self.interval - (time.monotonic() - started)))

    def __enter__(self) -> CredentialLoad:
        self._thread = threading.Thread(target=self._run, name="credential-load", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
