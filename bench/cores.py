"""How much the machine's cores deliver together: one CPU-bound job alone, then one per core at once.

A restore that spreads its work over the cores can only beat a one-core route by what the other
cores really add. On a virtual machine that is not always a whole core (a host's hyperthread
sibling, or a busy host), and it changes from minute to minute, so it is measured beside the
restore, in the same run.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

# About a second of sha256 on one core: CPU-bound, little memory traffic.
_JOB = "import hashlib\nb = bytes(range(256)) * 4096 * 64\nh = hashlib.sha256()\nfor _ in range(24): h.update(b)\n"


def _run(jobs: int) -> float:
    started = time.perf_counter()
    running = [subprocess.Popen([sys.executable, "-c", _JOB]) for _ in range(jobs)]
    for process in running:
        if process.wait() != 0:
            raise RuntimeError("the CPU probe failed")
    return time.perf_counter() - started


def parallel_throughput(cores: int | None = None, repeat: int = 3) -> dict[str, float]:
    """Work done per second with a job on every core, relative to one job alone (best of ``repeat``)."""
    cores = cores or os.cpu_count() or 1
    alone = min(_run(1) for _ in range(repeat))
    together = min(_run(cores) for _ in range(repeat))
    return {
        "cores": cores,
        "one_job_seconds": round(alone, 3),
        "all_cores_seconds": round(together, 3),
        "throughput_vs_one_core": round(cores * alone / together, 2),
    }
