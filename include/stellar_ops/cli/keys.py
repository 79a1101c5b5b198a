"""``stellar-ops keys``: rotate the API's keys (the ``api_key_rotation`` steps in order) and show them.

``keys rotate`` asks for each of the two approvals on the terminal unless ``--yes``, and waits out
the transition window itself. Started again after a crash, it resumes the same rotation (the
quarter's, or ``--rotation-slot``'s) with the same keys.
"""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime
from typing import Any

from stellar_ops.cli import env
from stellar_ops.cli.output import parse_slot, print_json
from stellar_ops.cli.steps import Steps
from stellar_ops.cli.terminal import approval
from stellar_ops.core.errors import StellarOpsError
from stellar_ops.rotation import flow, keys, ledger
from stellar_ops.rotation.backends import Tools, build_tools
from stellar_ops.rotation.config import KEY_SETS
from stellar_ops.runtime import Runtime


def register(sub: Any) -> None:
    p = sub.add_parser("keys", help="API key rotation")
    cmds = p.add_subparsers(dest="keys_command", required=True)
    rotate = cmds.add_parser("rotate", help="rotate a key set: generate, add alongside, test, remove, verify")
    rotate.add_argument("--key-set", choices=KEY_SETS, required=True)
    rotate.add_argument("--count", type=int, default=2, help="how many new keys (default 2)")
    rotate.add_argument(
        "--transition-days", type=float, default=None, help="default rotation.transition_days"
    )
    rotate.add_argument("--reason", choices=flow.REASONS, default="scheduled")
    rotate.add_argument("--dry-run", action="store_true")
    rotate.add_argument("--yes", action="store_true", help="do not ask for the approvals on the terminal")
    rotate.add_argument("--slot", help="the run's time (ISO; default now): picks the quarter")
    rotate.set_defaults(func=cmd_rotate)
    status = cmds.add_parser("status", help="served, pending and previous keys (fingerprints) and the ledger")
    status.set_defaults(func=cmd_status)
    discard = cmds.add_parser("discard", help="forget a rotation's pending keys (served keys unchanged)")
    discard.add_argument("--key-set", choices=KEY_SETS, required=True)
    discard.set_defaults(func=cmd_discard)


def cli_tools(rt: Runtime[flow.RotationSections]) -> Tools:
    def secrets_client() -> Any:
        import boto3

        return boto3.client("secretsmanager")

    return build_tools(
        rt.config.rotation,
        rt.resources.endpoint("api"),
        secrets_client=secrets_client,
        docker_client=rt.resources.docker,
    )


def cmd_rotate(args: argparse.Namespace) -> int:
    rt = env.runtime()
    steps = Steps(rt, flow.DAG_ID)
    slot = parse_slot(args.slot)
    planned = steps.run(
        "check_rotation_due",
        flow.plan,
        rt,
        key_set=args.key_set,
        count=args.count,
        transition_days=args.transition_days,
        reason=args.reason,
        dry_run=args.dry_run,
        slot=slot,
        run_id=f"cli-{slot:%Y%m%dT%H%M%SZ}",
    )
    if isinstance(planned, flow.Skip):
        rt.say(planned.reason)
        return 0
    plan = planned
    tools = cli_tools(rt)
    approvals: dict[str, dict[str, Any] | None] = {"approve_rollout": None, "approve_removal": None}
    done: dict[str, Any] = {}

    def finish(outcome: str) -> int:
        flow.record_audit(rt, plan, outcome=outcome, approvals=approvals, steps=done, now=datetime.now(UTC))
        return 0 if outcome == "rotated" else 1

    try:
        done["generate_keys"] = steps.run("generate_keys", flow.generate, rt, tools, plan)
        notice = steps.run(
            "notify_consumers", flow.notify, rt, plan, done["generate_keys"], datetime.now(UTC)
        )
        done["notify_consumers"] = {k: v for k, v in notice.items() if k != "summary"}
        rollout = approvals["approve_rollout"] = approval(notice["summary"], args.yes)
        if rollout["chosen"] != "Approve":
            flow.discard(rt, tools, plan, "approve_rollout was rejected")
            return finish("cancelled: approve_rollout rejected")
        done["add_new_keys"] = steps.run("add_new_keys", flow.add, rt, tools, plan)
        restarted = steps.run("restart_api", flow.restart, rt, tools, plan, "add")
        done["restart_api"] = restarted
        done["test_new_keys"] = steps.run("test_new_keys", flow.test, rt, tools, plan)
        stop = datetime.fromisoformat(restarted["old_keys_stop"])
        wait = (stop - datetime.now(UTC)).total_seconds()
        if wait > 0:
            rt.say(f"waiting out the transition window until {stop:%Y-%m-%d %H:%M:%S} UTC ({wait:.0f}s)")
            time.sleep(wait)
        question = (
            f"Remove the old {plan.key_set} ({', '.join(done['generate_keys']['old'])})? "
            f"Only {', '.join(done['generate_keys']['new'])} stay accepted."
        )
        removal = approvals["approve_removal"] = approval(question, args.yes)
        if removal["chosen"] != "Approve":
            flow.discard(rt, tools, plan, "approve_removal was rejected")
            return finish("cancelled: approve_removal rejected")
        done["remove_old_keys"] = steps.run("remove_old_keys", flow.remove, rt, tools, plan)
        done["restart_api_after_removal"] = steps.run(
            "restart_api_after_removal", flow.restart, rt, tools, plan, "remove"
        )
        done["verify_rotation"] = steps.run("verify_rotation", flow.verify, rt, tools, plan)
        done["finish_rotation"] = steps.run(
            "finish_rotation",
            flow.finish,
            rt,
            tools,
            plan,
            datetime.now(UTC),
            str(removal["by"]),
        )
    except flow.RolledBackError:
        finish("rolled back after test_new_keys failed")
        raise
    print_json({"rotation_id": plan.rotation_id, **done["finish_rotation"]})
    return finish("rotated")


def cmd_status(args: argparse.Namespace) -> int:
    rt = env.runtime()
    tools = cli_tools(rt)
    document = ledger.load(rt.store(), rt.config.rotation.ledger_key)
    report = {}
    for key_set in KEY_SETS:
        state = tools.keystore.state(key_set)
        report[key_set] = {
            "store": tools.keystore.name,
            "served": keys.fingerprints(state.served),
            "pending": keys.fingerprints(state.pending) if state.pending is not None else None,
            "rotation_id": state.rotation_id,
            "previous": keys.fingerprints(state.previous) if state.previous is not None else None,
            "last_rotation": ledger.last_rotation(document, key_set),
        }
    print_json(report)
    return 0


def cmd_discard(args: argparse.Namespace) -> int:
    rt = env.runtime()
    tools = cli_tools(rt)
    state = tools.keystore.state(args.key_set)
    if state.pending is None:
        rt.say(f"{args.key_set} has no pending keys")
        return 0
    in_use = [k for k in state.pending if k in state.served]
    if in_use:
        raise StellarOpsError(
            f"the pending keys of {state.rotation_id} are already served ({', '.join(keys.fingerprints(in_use))}): "
            "consumers may use them; resume the rotation instead of discarding it"
        )
    tools.keystore.discard_pending(args.key_set)
    rt.say(
        f"discarded the pending keys of {state.rotation_id}: {', '.join(keys.fingerprints(state.pending))}"
    )
    return 0
