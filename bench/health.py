"""``stellar-ops health`` speed: all checks at once against one after the other, on the same stack;
and a hanging service, whose check ends at its timeout instead of holding the run."""

from __future__ import annotations

import json
import os
import socket
import statistics
import time
from typing import Any

from bench.report import table, verdict
from stellar_ops.cli.env import runtime
from stellar_ops.health import flow
from stellar_ops_dev.stack import StackInfo


def _rt(info: StackInfo, health: dict[str, Any] | None = None) -> Any:
    config = {**info.ops_config(), "backup": {**info.ops_config()["backup"], "prefix": "bench-health/"}}
    if health:
        config["health"] = health
    os.environ.update(info.env())
    os.environ["STELLAR_OPS_CONFIG"] = json.dumps(config)
    return runtime()


def _median(action: Any, repeat: int) -> float:
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        action()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def _api_delay(info: StackInfo, milliseconds: int) -> None:
    import requests

    response = requests.post(
        f"{info.url('api')}/_control",
        json={"delay_ms": milliseconds},
        headers={"X-API-Key": info.admin_key},
        timeout=5,
    )
    response.raise_for_status()


def run(info: StackInfo, repeat: int = 5, api_delay_ms: int = 300) -> dict[str, Any]:
    """Every server here is on loopback, so the API answers ``api_delay_ms`` late, as a remote API
    would: two checks call it, and what overlapping them saves shows."""
    rt = _rt(info)
    rt.say = rt.warn = lambda message: None
    _api_delay(info, api_delay_ms)
    try:
        at_once = _median(lambda: flow.check_all(rt, record=False), repeat)
        one_by_one = _median(lambda: [flow.check(rt, name, record=False) for name in flow.CHECKS], repeat)
    finally:
        _api_delay(info, 0)
    hang = socket.create_server(("127.0.0.1", 0))  # accepts (the backlog) and never answers
    timeout = 2.0
    try:
        hung = _rt(
            info,
            {
                "check_timeout_seconds": timeout,
                "probe_timeout_seconds": 30,
                "endpoints": [{"name": "hung", "url": f"tls://127.0.0.1:{hang.getsockname()[1]}"}],
            },
        )
        hung.say = hung.warn = lambda message: None
        with_hang = _median(lambda: flow.check_all(hung, record=False), 1)
    finally:
        hang.close()
    ratio = at_once / one_by_one
    table(
        f"stellar-ops health (median of {repeat}; the API answers {api_delay_ms} ms late)",
        ["what", "seconds", "vs one by one"],
        [
            ["six checks at once", f"{at_once:.2f}", f"{ratio:.2f}x"],
            ["the same, one by one", f"{one_by_one:.2f}", "1.00x"],
            [f"at once, one service hanging (check timeout {timeout:g}s)", f"{with_hang:.2f}", ""],
        ],
    )
    print(verdict("at once vs one by one", ratio, "<= 0.7x", ratio <= 0.7))
    print(
        verdict(
            "with a hanging service vs its timeout",
            with_hang / timeout,
            "<= 1.5x",
            with_hang <= 1.5 * timeout,
        )
    )
    return {"at_once_seconds": at_once, "one_by_one_seconds": one_by_one, "hanging_seconds": with_hang}
