"""``stellar-dev``: the local stack of real servers, the demo data and the local Airflow settings.

Development tooling only: no runtime module imports it.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from stellar_ops.cli.env import db_target
from stellar_ops.cli.main import run
from stellar_ops.cli.output import print_json, say
from stellar_ops.core.errors import StellarOpsError
from stellar_ops.core.processes import pid_alive
from stellar_ops_dev.airflow_settings import write_import_files
from stellar_ops_dev.docs import write_pages
from stellar_ops_dev.servers import stop_on_signals
from stellar_ops_dev.stack import Stack, StackInfo, stop_recorded


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="stellar-dev", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("stack", help="start or stop the local stack of real servers")
    p.add_argument("action", choices=["up", "down"])
    p.add_argument("--state-dir", default=".stack")
    p.add_argument("--fixed-ports", action="store_true", help="prefer the stable ports of `make run`")
    p.add_argument(
        "--port",
        action="append",
        default=[],
        type=_named_port,
        metavar="SERVER=PORT",
        help="require this port for this server (the start fails if it is taken); repeatable",
    )
    p.add_argument(
        "--reserve-port",
        action="append",
        default=[],
        type=int,
        metavar="PORT",
        help="a port of another program (Airflow's) that no server may be given; repeatable",
    )
    p.add_argument("--demo-rows", type=int, default=3000, help="trades in the demo database")
    p.add_argument("--foreground", action="store_true", help="stay up until interrupted, then stop")
    p.add_argument("--dags-folder", help="also export an Airflow home for `airflow dags test` on these DAGs")
    p.set_defaults(func=cmd_stack)

    p = sub.add_parser("demo-data", help="fill DATABASE_URL with realistic StellarEscrow data")
    group = p.add_mutually_exclusive_group(required=True)
    group.add_argument("--rows", type=int, help="number of trades to add")
    group.add_argument("--size", help="grow the database to this size, e.g. 500MB or 1GB")
    p.set_defaults(func=cmd_demo_data)

    p = sub.add_parser(
        "perf-workload", help="leave in DATABASE_URL, REDIS_URL and the API what perf_analysis finds"
    )
    p.add_argument("--calls", type=int, default=20, help="calls of the slow hot path")
    p.set_defaults(func=cmd_perf_workload)

    p = sub.add_parser("airflow-settings", help="turn airflow_settings.yaml into `airflow ... import` files")
    p.add_argument("file", help="airflow_settings.yaml")
    p.add_argument("--out", required=True, help="directory for connections/variables/pools.json")
    p.set_defaults(func=cmd_airflow_settings)

    p = sub.add_parser("docs", help="write the generated pages of docs/: procedures/<dag_id>.md, cli.md")
    p.add_argument("--dags-folder", default="dags", help="the DAG files whose doc_md become the pages")
    p.add_argument("--out", default="docs", help="the docs directory")
    p.set_defaults(func=cmd_docs)
    return parser


def _named_port(text: str) -> tuple[str, int]:
    name, sep, port = text.partition("=")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"expected SERVER=PORT, e.g. redis=56379, not {text!r}")
    return name, int(port)


def cmd_stack(args: argparse.Namespace) -> int:
    state_dir = Path(args.state_dir)
    state_file = state_dir / "state.json"
    if args.action == "down":
        if not state_file.exists():
            say(f"no stack recorded in {state_dir}")
            return 0
        stop_recorded(StackInfo.load(state_file))
        state_file.unlink()
        (state_dir / "env").unlink(missing_ok=True)
        say("stack stopped")
        return 0
    if state_file.exists():
        info = StackInfo.load(state_file)
        if any(pid_alive(pid) for pid in info.pids.values()):
            raise StellarOpsError(f"a stack is already running from {state_dir}: run `make stack-down` first")
    stack = Stack(
        state_dir,
        fixed_ports=args.fixed_ports,
        demo_rows=args.demo_rows,
        ports=dict(args.port),
        reserved_ports=args.reserve_port,
    )
    # SIGINT, SIGTERM and SIGHUP (Ctrl-C, a process manager, a closing terminal) at any moment stop
    # what has been started so far: the servers run in sessions of their own and would outlive us.
    with stop_on_signals():
        try:
            return _stack_up(stack, args)
        except BaseException:
            stack.down()
            raise


def _stack_up(stack: Stack, args: argparse.Namespace) -> int:
    state_dir = Path(args.state_dir)
    started = time.monotonic()
    info = stack.up()
    extra = {}
    if args.dags_folder:
        # A private Airflow home beside the stack, so `airflow dags test` runs these DAGs at once.
        # It starts anew with the stack: an earlier stack's runs and state describe servers gone.
        airflow_home = state_dir / "airflow-home"
        shutil.rmtree(airflow_home, ignore_errors=True)
        extra = {
            "AIRFLOW_HOME": str(airflow_home.resolve()),
            "AIRFLOW__CORE__DAGS_FOLDER": str(Path(args.dags_folder).resolve()),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            # `airflow dags test` cannot run a DAG that has a deadline
            "STELLAR_OPS_DEADLINES": '{"enabled": false}',
        }
    info.write_env_file(state_dir / "env", extra)
    say(f"stack up in {time.monotonic() - started:.1f}s; exports in {state_dir / 'env'}")
    for name, port in sorted(info.ports.items()):
        say(f"  {name:<13} 127.0.0.1:{port}")
    for domain in info.tls.get("domains", []):
        say(
            f"  {'nginx (TLS)':<13} 127.0.0.1:{domain['port']}  ({domain['server_name']}, certificate from pebble)"
        )
    if not args.foreground:
        return 0
    try:
        while True:
            time.sleep(0.5)
    except KeyboardInterrupt:
        stack.down()
        say("stack stopped")
    return 0


def cmd_demo_data(args: argparse.Namespace) -> int:
    from stellar_ops_dev import demo_data

    size = demo_data.parse_size(args.size) if args.size else None
    result = demo_data.generate(db_target(), trades=args.rows, size_bytes=size, progress=say)
    print_json(result.__dict__)
    return 0


def cmd_perf_workload(args: argparse.Namespace) -> int:
    from stellar_ops.cli.env import EnvResources, config_from_env
    from stellar_ops_dev import perf_workload

    resources = EnvResources(config_from_env())
    done = perf_workload.generate(
        db_target(), redis=resources.redis(), api=resources.endpoint("api"), calls=args.calls, say=say
    )
    print_json(done.__dict__)
    return 0


def cmd_airflow_settings(args: argparse.Namespace) -> int:
    for name, path in write_import_files(Path(args.file), Path(args.out)).items():
        say(f"{name}: {path}")
    return 0


def cmd_docs(args: argparse.Namespace) -> int:
    for path in write_pages(Path(args.out), Path(args.dags_folder)):
        say(f"wrote {path}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run(build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
