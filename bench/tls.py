"""TLS probing: 200 loopback endpoints (every tenth slow to answer), probed concurrently by
``stellar_ops.probes.tls.probe_many``, against the slowest single handshake and against a
sequential ``openssl s_client`` loop over the same endpoints, all in the same run.

The servers run in a child process so their handshakes do not share the prober's interpreter.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.report import table, verdict
from stellar_ops.probes.tls import Target, probe_many, probe_target

ENDPOINTS = 200
SLOW_EVERY = 10
SLOW_SECONDS = 0.5
WORKERS = 64
SERVERS = r"""
import json, sys, time
from pathlib import Path
from stellar_ops_dev.certs import LocalCA
from stellar_ops_dev.tls_servers import TlsServer
work, count, slow_every, slow = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
ca = LocalCA("Bench Root")
ca.write_bundle(work / "ca.pem")
cert, key = ca.leaf("bench.test", days=60).write(work, "leaf")
servers = [TlsServer(cert, key, delay=slow if i % slow_every == 0 else 0.0).start() for i in range(count)]
print(json.dumps([s.port for s in servers]), flush=True)
sys.stdin.read()
"""


def _openssl_loop(targets: list[Target], bundle: Path) -> float:
    started = time.perf_counter()
    for target in targets:
        done = subprocess.run(
            [
                "openssl",
                "s_client",
                "-connect",
                f"{target.host}:{target.port}",
                "-servername",
                target.sni,
                "-CAfile",
                str(bundle),
                "-verify_return_error",
            ],
            input=b"",
            capture_output=True,
            timeout=30,
            check=False,
        )
        if b"Verify return code: 0 (ok)" not in done.stdout:
            raise RuntimeError(f"openssl s_client could not verify {target.port}: {done.stdout[-300:]!r}")
    return time.perf_counter() - started


def run(endpoints: int = ENDPOINTS) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="stellar-bench-tls-"))
    servers = subprocess.Popen(
        [sys.executable, "-c", SERVERS, str(work), str(endpoints), str(SLOW_EVERY), str(SLOW_SECONDS)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        assert servers.stdout is not None
        ports = json.loads(servers.stdout.readline())
        bundle = work / "ca.pem"
        targets = [Target("127.0.0.1", port, "bench.test", str(bundle)) for port in ports]
        singles = []
        for target in targets:  # each endpoint alone: the slowest single handshake
            started = time.perf_counter()
            result = probe_target(target)
            singles.append(time.perf_counter() - started)
            assert result.state == "ok", result.error
        slowest = max(singles)
        started = time.perf_counter()
        results = probe_many(targets, max_workers=WORKERS)
        concurrent = time.perf_counter() - started
        assert [r.state for r in results] == ["ok"] * len(targets)
        sequential = _openssl_loop(targets, bundle)
    finally:
        servers.kill()
        servers.wait()
    measured = {
        "endpoints": endpoints,
        "slow_endpoints": len(range(0, endpoints, SLOW_EVERY)),
        "slow_delay_seconds": SLOW_SECONDS,
        "workers": WORKERS,
        "concurrent_seconds": round(concurrent, 3),
        "slowest_single_seconds": round(slowest, 3),
        "openssl_loop_seconds": round(sequential, 3),
        "vs_slowest": round(concurrent / slowest, 2),
        "speedup_vs_openssl": round(sequential / concurrent, 1),
    }
    table(
        f"TLS probes: {endpoints} loopback endpoints, every {SLOW_EVERY}th {SLOW_SECONDS}s slow",
        ["what", "seconds"],
        [
            [f"probe_many ({WORKERS} at once)", measured["concurrent_seconds"]],
            ["slowest single handshake", measured["slowest_single_seconds"]],
            ["sequential openssl s_client loop", measured["openssl_loop_seconds"]],
        ],
    )
    print(verdict("wall / slowest handshake", measured["vs_slowest"], "<= 2", measured["vs_slowest"] <= 2))
    print(
        verdict(
            "openssl loop / wall",
            measured["speedup_vs_openssl"],
            ">= 10",
            measured["speedup_vs_openssl"] >= 10,
        )
    )
    return measured


if __name__ == "__main__":
    run()
