"""``stellar-ops``: every procedure without Airflow, the fallback when Airflow itself is down.

Each command group is a module of :mod:`stellar_ops.cli` with a ``register(subparsers)``
function, found here by itself; it runs the same steps as the procedure's DAG. Targets come from
the environment (:mod:`stellar_ops.cli.env`). Errors print as one line on stderr and exit with
status 2.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
import sys
from collections.abc import Iterator, Sequence
from types import ModuleType

import stellar_ops.cli
from stellar_ops import __version__
from stellar_ops.core.errors import StellarOpsError


def command_groups() -> Iterator[ModuleType]:
    """The modules of this package that register commands, in name order."""
    for info in sorted(pkgutil.iter_modules(stellar_ops.cli.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"stellar_ops.cli.{info.name}")
        if callable(getattr(module, "register", None)):
            yield module


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="stellar-ops", description=__doc__)
    parser.add_argument("--version", action="version", version=f"stellar-ops {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    for module in command_groups():
        module.register(sub)
    return parser


def run(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> int:
    """Parse ``argv`` and run the chosen command; a known failure is one line and status 2."""
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(message)s",
        stream=sys.stderr,
    )
    for noisy in ("botocore", "boto3", "urllib3", "s3transfer"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        return int(args.func(args))
    except StellarOpsError as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{parser.prog}: interrupted", file=sys.stderr)
        return 130


def main(argv: Sequence[str] | None = None) -> int:
    return run(build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
