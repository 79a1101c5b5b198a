"""``stellar-ops``: every procedure without Airflow, plus the local stack and the demo data.

It is the fallback when Airflow itself is down, and it takes its targets from the environment
(see :mod:`stellar_ops.cli_env`). Errors print as one line on stderr and exit with status 2.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from stellar_ops import __version__, alerts, cli_env, metrics
from stellar_ops.errors import StellarOpsError

log = logging.getLogger("stellar_ops")


def _print_json(document: Any) -> None:
    print(json.dumps(document, indent=2, sort_keys=True, default=str))


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# -- config ----------------------------------------------------------------------------------------


def cmd_config(args: argparse.Namespace) -> int:
    from stellar_ops.config import reference_markdown

    if args.action == "reference":
        print(reference_markdown())
    elif args.action == "validate":
        from stellar_ops.config import parse_config

        text = Path(args.file).read_text() if args.file else os.environ.get("STELLAR_OPS_CONFIG", "")
        parse_config(text or None)
        print("valid")
    else:
        _print_json(cli_env.config_from_env().model_dump(mode="json"))
    return 0


# -- stack -----------------------------------------------------------------------------------------


def cmd_stack(args: argparse.Namespace) -> int:
    from stellar_ops.devstack.stack import Stack, StackInfo, stop_recorded

    state_dir = Path(args.state_dir)
    state_file = state_dir / "state.json"
    if args.action == "down":
        if not state_file.exists():
            _say(f"no stack recorded in {state_dir}")
            return 0
        stop_recorded(StackInfo.load(state_file))
        state_file.unlink()
        (state_dir / "env").unlink(missing_ok=True)
        _say("stack stopped")
        return 0
    if state_file.exists():
        info = StackInfo.load(state_file)
        if any(_alive(pid) for pid in info.pids.values()):
            raise StellarOpsError(f"a stack is already running from {state_dir}: run `make stack-down` first")
    stack = Stack(state_dir, fixed_ports=args.fixed_ports, demo_rows=args.demo_rows)
    started = time.monotonic()
    info = stack.up()
    extra = {}
    if args.dags_folder:
        # A private Airflow home beside the stack, so `airflow dags test` runs these DAGs at once.
        extra = {
            "AIRFLOW_HOME": str((state_dir / "airflow-home").resolve()),
            "AIRFLOW__CORE__DAGS_FOLDER": str(Path(args.dags_folder).resolve()),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        }
    info.write_env_file(state_dir / "env", extra)
    _say(f"stack up in {time.monotonic() - started:.1f}s; exports in {state_dir / 'env'}")
    for name, port in sorted(info.ports.items()):
        _say(f"  {name:<13} 127.0.0.1:{port}")
    if not args.foreground:
        return 0
    stopping = {"now": False}

    def stop(signum: int, frame: Any) -> None:
        stopping["now"] = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    while not stopping["now"]:
        time.sleep(0.5)
    stack.down()
    state_file.unlink(missing_ok=True)
    _say("stack stopped")
    return 0


def _alive(pid: int) -> bool:
    from stellar_ops.processes import pid_alive

    return pid_alive(pid)


def cmd_demo_data(args: argparse.Namespace) -> int:
    from stellar_ops import demo_data

    target = cli_env.db_target()
    size = demo_data.parse_size(args.size) if args.size else None
    result = demo_data.generate(target, trades=args.rows, size_bytes=size, progress=_say)
    _print_json(result.__dict__)
    return 0


# -- maintenance -----------------------------------------------------------------------------------


def cmd_maintenance(args: argparse.Namespace) -> int:
    from stellar_ops import maintenance

    config = cli_env.config_from_env()
    settings = config.maintenance
    target = cli_env.db_target()
    tables = args.tables or list(settings.tables)
    status = maintenance.ensure_pg_stat_statements(target)
    if status.warning:
        _say(f"WARNING: {status.warning}")
    report = maintenance.bloat_report_for(target, settings, tables)
    _say(maintenance.format_report(report))
    if args.report_only:
        return 0
    maintenance.vacuum_analyze(
        target, tables=tables, lock_timeout_seconds=settings.lock_timeout_seconds, say=_say
    )
    after = maintenance.bloat_report_for(target, settings, tables)
    _say(maintenance.format_report(after))
    return 0


# -- backups ---------------------------------------------------------------------------------------


def _parse_slot(text: str | None) -> datetime:
    if not text:
        return datetime.now(UTC).replace(microsecond=0)
    try:
        slot = datetime.fromisoformat(text)
    except ValueError:
        raise StellarOpsError(
            f"--slot must be an ISO timestamp such as 2026-11-28T02:00:00Z, got {text!r}"
        ) from None
    return slot if slot.tzinfo else slot.replace(tzinfo=UTC)


def _notify(text: str) -> None:
    webhook = cli_env.optional("BACKUP_ALERT_WEBHOOK")
    if webhook:
        try:
            alerts.post_webhook(webhook, alerts.info_message(text))
        except StellarOpsError as exc:
            _say(f"WARNING: {exc}")


def _push_metrics(procedure: str, points: list[metrics.Metric]) -> None:
    gateway = cli_env.optional("PUSHGATEWAY_URL")
    config = cli_env.config_from_env()
    if gateway:
        metrics.push_to_gateway(gateway, job=config.metrics.job, procedure=procedure, metrics=points)
    api, key = cli_env.optional("STELLAR_API_URL"), cli_env.optional("STELLAR_API_KEY")
    if api and key and config.metrics.push_to_api:
        metrics.post_to_api(api, key, source=procedure, metrics=points)


def cmd_backup(args: argparse.Namespace) -> int:
    from stellar_ops import retention
    from stellar_ops.backup import BackupJob, verify_upload
    from stellar_ops.pg import find_binaries

    config = cli_env.config_from_env()
    cfg = config.backup
    store = cli_env.s3_store(config)
    binaries = find_binaries(cfg.pg_bin_dir)
    job = BackupJob(cli_env.db_target(), store, cfg, binaries)
    slot = _parse_slot(args.slot)
    try:
        prerequisites = job.check_prerequisites(slot)
        if prerequisites.verified_backup_exists and not args.force:
            _say(
                f"a verified backup for {slot.isoformat()} already exists ({prerequisites.key}); use --force"
            )
            return 0
        draft = job.dump(slot, run_id=None, token=f"cli-{os.getpid()}", say=_say)
        verification = verify_upload(store, draft, binaries)
        manifest = job.publish(draft, verification)
        _say(f"published {store.url(manifest.key)} and its manifest")
    except StellarOpsError as exc:
        _notify(f":red_circle: [P2] BackupFailed: {exc}")
        _push_metrics(
            "db_backup",
            metrics.backup_metrics(
                success=False, finished_at=datetime.now(UTC), size_bytes=0, duration_seconds=0
            ),
        )
        raise
    retention.apply_policy(store, cfg, reference=slot, dry_run=args.dry_run_retention, say=_say)
    _push_metrics(
        "db_backup",
        metrics.backup_metrics(
            success=True,
            finished_at=manifest.finished_at,
            size_bytes=manifest.size_bytes,
            duration_seconds=manifest.duration_seconds,
        ),
    )
    if cfg.notify_on_success:
        _notify(
            f":white_check_mark: Backup OK: {store.url(manifest.key)} "
            f"({alerts.human_bytes(manifest.size_bytes)}, {manifest.duration_seconds:.1f}s)"
        )
    _print_json({"key": manifest.key, "size_bytes": manifest.size_bytes, "sha256": manifest.sha256})
    return 0


def cmd_backups(args: argparse.Namespace) -> int:
    from stellar_ops.inventory import list_backups

    config = cli_env.config_from_env()
    store = cli_env.s3_store(config)
    listing = list_backups(store, config.backup.prefix)
    now = datetime.now(UTC)
    if args.action == "list":
        rows = [entry.as_dict(now) for entry in listing.backups]
        if args.json:
            _print_json(rows)
        else:
            print(f"{'key':<64} {'age':>9} {'size':>12} {'format':<7} state")
            for row in rows:
                print(
                    f"{row['key']:<64} {row['age_hours']:>8.1f}h {alerts.human_bytes(row['size_bytes']):>12} "
                    f"{row['format']:<7} {row['state']}"
                )
        return 0
    from stellar_ops.backup_source import verify_published
    from stellar_ops.pg import find_binaries

    result = verify_published(store, listing, args.key, find_binaries(config.backup.pg_bin_dir))
    _print_json(result)
    return 0


# -- DR test ---------------------------------------------------------------------------------------


def cmd_dr_test(args: argparse.Namespace) -> int:
    """The DR test without Airflow: always the local scratch backend, on this machine."""
    import tempfile

    from stellar_ops import backup_source, dr, restore, staging
    from stellar_ops.pg import find_binaries
    from stellar_ops.scratch import LocalScratch, scratch_name

    config = cli_env.config_from_env()
    binaries = find_binaries(config.backup.pg_bin_dir)
    store = None if args.backup.startswith("/") else cli_env.s3_store(config)
    now = datetime.now(UTC)
    backup = backup_source.resolve(
        store, config.backup.prefix, args.backup, reference=now, month_scoped=False
    )
    _say(f"testing {backup.location} ({backup.dump_format}, {backup.state})")
    manifest = backup_source.load_manifest(store, backup)
    checked = backup_source.check_backup(store, backup, manifest, binaries)
    for warning in checked["warnings"]:
        _say(f"WARNING: {warning}")
    work_root = Path(config.dr.work_dir or tempfile.gettempdir())
    work_root.mkdir(parents=True, exist_ok=True)
    scratch = LocalScratch(
        name=scratch_name("cli"),
        work_dir=work_root,
        binaries=binaries,
        run_as=config.dr.run_as_user,
        settings=config.dr.scratch_settings,
        startup_timeout=config.dr.startup_timeout_seconds,
    )
    with scratch.running(keep_on_failure=args.keep_scratch) as server:
        result = restore.recover(
            server.target(),
            store,
            backup,
            manifest,
            work_root,
            jobs=config.dr.restore_jobs,
            memory_dir=staging.MEMORY_DIR if config.dr.stage_in_memory else None,
            binaries=binaries,
            say=_say,
        )
        rto = result.seconds
        observation = restore.observe(server.target(), list(config.dr.sanity_queries))
    verdicts = [
        dr.row_counts(manifest, observation["row_counts"], list(config.dr.key_tables)),
        dr.schema(manifest, observation["schema"], list(config.dr.key_tables), config.dr.min_tables),
        dr.sanity_queries(observation["sanity"]),
    ]
    rpo = dr.rpo_seconds(backup_source.backup_time(backup, manifest), now)
    document = dr.report(
        backup=backup.as_dict(),
        manifest=manifest,
        verdicts=[v.as_dict() for v in verdicts],
        failed_steps=[],
        rto_seconds=rto,
        rpo_seconds=rpo,
        scratch_backend="local",
        run_id=None,
        warnings=checked["warnings"],
    )
    _push_metrics(
        "dr_restore_test",
        metrics.dr_metrics(success=document["success"], restore_seconds=rto, backup_age_seconds=rpo),
    )
    if args.json:
        _print_json(document)
    for verdict in verdicts:
        _say(f"{'PASS' if verdict.passed else 'FAIL'} {verdict.check}: {verdict.detail}")
    _say(dr.summary_line(document))
    _notify(dr.summary_line(document))
    return 0 if document["success"] else 1


# -- parser ----------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="stellar-ops", description=__doc__)
    parser.add_argument("--version", action="version", version=f"stellar-ops {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("config", help="show the effective config, validate one, or print the reference")
    p.add_argument("action", choices=["show", "validate", "reference"])
    p.add_argument("file", nargs="?", help="JSON file to validate (default: STELLAR_OPS_CONFIG)")
    p.set_defaults(func=cmd_config)

    p = sub.add_parser("stack", help="start or stop the local stack of real servers")
    p.add_argument("action", choices=["up", "down"])
    p.add_argument("--state-dir", default=".stack")
    p.add_argument("--fixed-ports", action="store_true", help="prefer the stable ports of `make run`")
    p.add_argument("--demo-rows", type=int, default=3000, help="trades in the demo database")
    p.add_argument("--foreground", action="store_true", help="stay up until interrupted, then stop")
    p.add_argument("--dags-folder", help="also export an Airflow home for `airflow dags test` on these DAGs")
    p.set_defaults(func=cmd_stack)

    p = sub.add_parser("demo-data", help="fill DATABASE_URL with realistic StellarEscrow data")
    group = p.add_mutually_exclusive_group(required=True)
    group.add_argument("--rows", type=int, help="number of trades to add")
    group.add_argument("--size", help="grow the database to this size, e.g. 500MB or 1GB")
    p.set_defaults(func=cmd_demo_data)

    p = sub.add_parser("maintenance", help="VACUUM ANALYZE with a bloat report")
    p.add_argument("--tables", nargs="*", default=[], help="schema.table names (default: config)")
    p.add_argument("--report-only", action="store_true", help="only print the bloat report")
    p.set_defaults(func=cmd_maintenance)

    p = sub.add_parser("backup", help="take, verify and publish a backup, then apply retention")
    p.add_argument("--slot", help="the backup's timestamp (default: now), e.g. 2026-11-28T02:00:00Z")
    p.add_argument("--force", action="store_true", help="replace a verified backup of the same slot")
    p.add_argument("--dry-run-retention", action="store_true", help="only log what retention would delete")
    p.set_defaults(func=cmd_backup)

    p = sub.add_parser("backups", help="list backups, or verify one end to end")
    backups = p.add_subparsers(dest="action", required=True)
    q = backups.add_parser("list", help="every backup with its age, size, format and state")
    q.add_argument("--json", action="store_true")
    q = backups.add_parser("verify", help="re-check one backup against its manifest")
    q.add_argument("key")
    p.set_defaults(func=cmd_backups)

    p = sub.add_parser("dr-test", help="restore a backup into a scratch server and verify it")
    p.add_argument("--backup", default="latest", help="'latest', an S3 key, or a local path")
    p.add_argument("--json", action="store_true", help="print the JSON report")
    p.add_argument("--keep-scratch", action="store_true", help="keep the scratch server if the restore fails")
    p.set_defaults(func=cmd_dr_test)

    p = sub.add_parser("airflow-settings", help="turn airflow_settings.yaml into `airflow ... import` files")
    p.add_argument("file", help="airflow_settings.yaml")
    p.add_argument("--out", required=True, help="directory for connections/variables/pools.json")
    p.set_defaults(func=cmd_airflow_settings)
    return parser


def cmd_airflow_settings(args: argparse.Namespace) -> int:
    from stellar_ops.airflow_settings import write_import_files

    for name, path in write_import_files(Path(args.file), Path(args.out)).items():
        _say(f"{name}: {path}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
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
        print(f"stellar-ops: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("stellar-ops: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
