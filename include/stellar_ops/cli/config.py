"""``stellar-ops config show|validate|reference``."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from stellar_ops.cli.env import config_from_env
from stellar_ops.cli.output import print_json
from stellar_ops.registry import parse_config, reference_markdown


def register(sub: Any) -> None:
    p = sub.add_parser("config", help="show the effective config, validate one, or print the reference")
    p.add_argument("action", choices=["show", "validate", "reference"])
    p.add_argument("file", nargs="?", help="JSON file to validate (default: STELLAR_OPS_CONFIG)")
    p.set_defaults(func=cmd_config)


def cmd_config(args: argparse.Namespace) -> int:
    if args.action == "reference":
        print(reference_markdown())
    elif args.action == "validate":
        text = Path(args.file).read_text() if args.file else os.environ.get("STELLAR_OPS_CONFIG", "")
        parse_config(text or None)
        print("valid")
    else:
        print_json(config_from_env().model_dump(mode="json"))
    return 0
