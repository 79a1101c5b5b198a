"""Approvals asked on the terminal, for the commands that run a procedure with approvals."""

from __future__ import annotations

import getpass
import sys
from datetime import UTC, datetime
from typing import Any

from stellar_ops.core.errors import StellarOpsError


def ask(question: str) -> bool:
    print(question, file=sys.stderr)
    if not sys.stdin.isatty():
        raise StellarOpsError("no terminal to ask for the approval on: run with --yes to approve ahead")
    return input("Type 'approve' to go ahead, anything else to reject: ").strip() == "approve"


def approval(question: str, yes: bool) -> dict[str, Any]:
    """The answer as an approval task records it: chosen, by whom, when."""
    chosen = "Approve" if yes or ask(question) else "Reject"
    return {
        "chosen": chosen,
        "by": f"{getpass.getuser()} (terminal{', --yes' if yes else ''})",
        "at": datetime.now(UTC).isoformat(),
    }
