"""Zero rejected requests through a key rotation: consumers send requests with their keys at a
steady rate while the rotation's steps run against the API stand-in, each consumer switching to
its new key at a random moment of the window.

Two restart backends: the stand-in's reload (``http_reload``, what ``make run`` uses) and a real
restart of the stand-in's process (stop, start), which is what a container restart costs. The
figures: requests sent; rejected although the key was valid (target 0); lost while the API
restarted, counted apart; the longest gap between two accepted answers (the restart window).
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.report import table, verdict
from stellar_ops.cli.env import EnvResources
from stellar_ops.core.http import HttpEndpoint
from stellar_ops.registry import parse_config
from stellar_ops.rotation import flow
from stellar_ops.rotation.backends import Tools
from stellar_ops.rotation.keystore import EnvFileStore
from stellar_ops.rotation.restart import HttpReload
from stellar_ops.runtime import Runtime
from stellar_ops_dev.load import Consumer, LoadGenerator
from tests.support.api_stand_in import StandIn, new_stand_in

WINDOW_SECONDS = 8.0
CONSUMERS = 5
RATE = 100.0


class ProcessRestart:
    """Stop the stand-in's process and start it again, as a container restart does."""

    name = "process_restart"

    def __init__(self, stand_in: StandIn) -> None:
        self.stand_in = stand_in

    def restart(self, admin_key: Callable[[], str | None]) -> float:
        started = time.monotonic()
        self.stand_in.restart()
        return time.monotonic() - started


def rotate_once(backend: str, work: Path) -> dict[str, Any]:
    stand_in = new_stand_in(work / backend, api_keys=CONSUMERS, admin_keys=1)
    try:
        endpoint = HttpEndpoint(stand_in.url)
        config = parse_config({"rotation": {"env_file": str(stand_in.env_file), "restart": "http_reload"}})
        rt = Runtime(config, EnvResources(config, env={}), say=lambda m: None, warn=print)
        restarter = HttpReload(endpoint) if backend == "http_reload" else ProcessRestart(stand_in)
        tools = Tools(EnvFileStore(stand_in.env_file), restarter, endpoint)  # type: ignore[arg-type]
        plan = flow.plan(
            rt,
            key_set="API_KEYS",
            count=CONSUMERS,
            transition_days=WINDOW_SECONDS / 86400,
            reason="compromise",  # no ledger lookup: this bench has no bucket
            dry_run=False,
            slot=datetime.now(UTC),
            run_id=f"bench-{backend}",
        )
        assert isinstance(plan, flow.Plan)
        load = LoadGenerator(
            stand_in.url,
            [Consumer(f"c{i}", k) for i, k in enumerate(stand_in.api_keys)],
            rate_per_second=RATE,
        )
        load.start()
        time.sleep(1)
        flow.generate(rt, tools, plan)
        flow.add(rt, tools, plan)
        restarted = flow.restart(rt, tools, plan, "add")
        flow.test(rt, tools, plan)
        new = list(tools.keystore.state("API_KEYS").pending or ())
        now = time.time()
        load.schedule_switches(new, now, now + WINDOW_SECONDS - 1, seed=11)
        time.sleep(max(0.0, datetime.fromisoformat(restarted["old_keys_stop"]).timestamp() - time.time()))
        flow.remove(rt, tools, plan)
        removal = flow.restart(rt, tools, plan, "remove")
        flow.verify(rt, tools, plan)
        tools.keystore.finish("API_KEYS")
        time.sleep(1)
        report = load.stop().as_dict()
        report["restart_seconds"] = max(restarted["restart_seconds"], removal["restart_seconds"])
        return report
    finally:
        stand_in.stop()


def run() -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="stellar-bench-rotation-"))
    results = {backend: rotate_once(backend, work) for backend in ("http_reload", "process_restart")}
    rows = [
        [
            b,
            r["sent"],
            r["rejected"],
            r["lost"],
            f"{r['longest_gap_seconds']:.3f}",
            f"{r['restart_seconds']:.3f}",
        ]
        for b, r in results.items()
    ]
    table(
        f"API key rotation, {CONSUMERS} consumers at {RATE:.0f} req/s, {WINDOW_SECONDS:.0f}s window",
        ["restart", "sent", "rejected (valid key)", "lost (restart)", "longest gap s", "restart s"],
        rows,
    )
    for backend, r in results.items():
        print(verdict(f"rejected with a valid key ({backend})", r["rejected"], "0", r["rejected"] == 0))
    return results
