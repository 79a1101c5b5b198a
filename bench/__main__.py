"""``make bench``: ``python -m bench [--sizes 100,1024] [--only parse|backup|pitr|health|tls|perf|rotation]``.

``--only pitr`` runs the point-in-time recovery part with one backup and one restore as its
logical baseline (``--only backup`` runs both with their three rounds).

Every number is a ratio against a baseline measured in the same run on the same machine.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

from bench import backup, health, parse, perf, pitr, restore, rotation, tls
from bench.report import save
from stellar_ops_dev import demo_data
from stellar_ops_dev.stack import Stack


def main() -> None:
    parser = argparse.ArgumentParser(prog="make bench")
    parser.add_argument("--sizes", default="100,1024", help="database sizes in MiB, ascending")
    parser.add_argument(
        "--only",
        choices=["parse", "backup", "pitr", "health", "tls", "perf", "rotation"],
        help="run one part",
    )
    args = parser.parse_args()
    results: dict = {}
    if args.only in (None, "parse"):
        results["parse"] = parse.run()
    if args.only in (None, "tls"):
        results["tls"] = tls.run()
    if args.only in (None, "perf"):
        results["perf"] = perf.run()
    if args.only in (None, "rotation"):
        results["rotation"] = rotation.run()
    if args.only in (None, "backup", "pitr"):
        rounds = 1 if args.only == "pitr" else 3
        state = Path(tempfile.mkdtemp(prefix="stellar-bench-stack-"))
        stack = Stack(state, demo_rows=1000)
        info = stack.up()
        work = backup.workdir()
        try:
            for size in (int(s) for s in args.sizes.split(",")):
                label = f"{size} MiB"
                print(f"\n# generating the demo database up to {label}...", flush=True)
                demo_data.generate(info.db, size_bytes=size << 20, progress=lambda m: None)
                results[f"backup {label}"] = measured = backup.run(
                    info, state / "state.json", label.replace(" ", ""), work, repeat=rounds
                )
                results[f"restore {label}"] = restored = restore.run(
                    info, label.replace(" ", ""), measured, work, repeat=rounds
                )
                results[f"pitr {label}"] = pitr.run(
                    info, label.replace(" ", ""), work, restored["ours_rto_seconds"]
                )
            rss = [v["peak_rss_mb"] for k, v in results.items() if k.startswith("backup")]
            if len(rss) > 1:
                print(
                    f"\npeak RSS across sizes: {', '.join(f'{r:.0f} MB' for r in rss)} (flat if within 15%: {max(rss) / min(rss) <= 1.15})"
                )
        finally:
            stack.down()
            shutil.rmtree(work, ignore_errors=True)
            shutil.rmtree(state, ignore_errors=True)
    if args.only in (None, "health"):
        state = Path(tempfile.mkdtemp(prefix="stellar-bench-stack-"))
        stack = Stack(state, demo_rows=1000)
        try:
            results["health"] = health.run(stack.up())
        finally:
            stack.down()
            shutil.rmtree(state, ignore_errors=True)
    print(f"\nresults saved to {save(results)}")


if __name__ == "__main__":
    main()
