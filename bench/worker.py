"""One measured step in a process of its own, so its peak RSS is its own.

``python -m bench.worker STATE_FILE MODE ARGS...`` prints a JSON line.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from datetime import datetime

from stellar_ops.backup.dump import BackupJob
from stellar_ops.postgres.binaries import find_binaries
from stellar_ops.registry import parse_config
from stellar_ops.storage.s3 import S3Store, client_config
from stellar_ops_dev.stack import StackInfo


def _client(info: StackInfo):
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=info.url("s3"),
        aws_access_key_id=info.s3_access_key,
        aws_secret_access_key=info.s3_secret_key,
        region_name="us-east-1",
        config=client_config(),
    )


def backup(info: StackInfo, prefix: str, level: int, threads: int, slot: str) -> dict:
    config = parse_config(
        {"backup": {"prefix": prefix, "compression_level": level, "compression_threads": threads}}
    )
    job = BackupJob(
        info.db,
        S3Store(_client(info), "stellar-backups", encryption="AES256"),
        config.backup,
        find_binaries(),
    )
    started = time.perf_counter()
    draft = job.dump(
        datetime.fromisoformat(slot), run_id="bench", token=f"bench-{os.getpid()}", say=lambda m: None
    )
    seconds = time.perf_counter() - started
    return {
        "seconds": seconds,
        "size": draft["size_bytes"],
        "raw": draft["uncompressed_bytes"],
        "draft": draft,
    }


def compress_only(info: StackInfo, level: int, threads: int) -> dict:
    """pg_dump -Fc -Z0 through the zstandard binding into a hash, no upload: the compression route alone."""
    from stellar_ops.storage.compression import compressor

    packer = compressor("custom", level, threads)
    digest = hashlib.sha256()
    started = time.perf_counter()
    process = subprocess.Popen(
        ["pg_dump", "-Fc", "-Z0"], stdout=subprocess.PIPE, env=info.db.client_env(), bufsize=0
    )
    size = 0
    assert process.stdout is not None

    def emit(out: bytes) -> None:
        nonlocal size
        digest.update(out)
        size += len(out)

    while chunk := os.read(process.stdout.fileno(), 1 << 20):
        packer.push(chunk, emit)
    packer.finish(emit)
    assert process.wait() == 0
    return {"seconds": time.perf_counter() - started, "size": size}


def peak_rss_mb() -> float:
    """This process's own peak RSS (``VmHWM``).

    Not ``getrusage().ru_maxrss``: on Linux that survives ``exec`` and so starts at the RSS of the
    parent this worker was spawned from, the bench driver itself.
    """
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def main() -> None:
    info = StackInfo.load(sys.argv[1])
    mode = sys.argv[2]
    if mode == "backup":
        result = backup(info, sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), sys.argv[6])
    else:
        result = compress_only(info, int(sys.argv[3]), int(sys.argv[4]))
    result["peak_rss_mb"] = peak_rss_mb()
    print(json.dumps(result, default=str))


if __name__ == "__main__":
    main()
