"""The performance review's steps, defined once: ``perf_analysis``'s tasks and ``stellar-ops perf``.

A source that is not configured or does not answer makes its check ``unknown``: the analysis
found that it could not look. Anything else that goes wrong (a bad config, the bucket refusing
the report) is the analysis failing to run, and fails its step.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, Protocol

from stellar_ops.catalogue.keys import INCOMING_DIR
from stellar_ops.catalogue.location import BackupLocation
from stellar_ops.core.alerts import info_message
from stellar_ops.core.errors import ConfigError, MissingConnectionError, StellarOpsError
from stellar_ops.perf import database, report, sources
from stellar_ops.perf.checks import CheckResult, unknown
from stellar_ops.perf.compare import compare
from stellar_ops.perf.config import CHECKS, PerfConfig
from stellar_ops.runtime import Runtime, RuntimeConfig

DAG_ID = report.DAG_ID
SLACK_TEXT_LIMIT = 2900  # a Slack section block holds 3000 characters


class PerfSections(RuntimeConfig, Protocol):
    """The sections perf_analysis's steps read: ``backup`` (where), ``perf``, and the runtime's own."""

    @property
    def backup(self) -> BackupLocation: ...
    @property
    def perf(self) -> PerfConfig: ...


def select_checks(rt: Runtime[PerfSections], chosen: list[str] | None) -> list[str]:
    """The checks asked for (in the canonical order), else ``perf.checks``."""
    names = list(chosen) if chosen else list(rt.config.perf.checks)
    unknown_names = [n for n in names if n not in CHECKS]
    if unknown_names:
        raise ConfigError(
            f"checks: unknown check {', '.join(unknown_names)}; the checks are {', '.join(CHECKS)}"
        )
    if not names:
        raise ConfigError("checks: no check is selected (perf.checks is empty)")
    return [n for n in CHECKS if n in names]


def run_check(rt: Runtime[PerfSections], name: str) -> CheckResult:
    settings = rt.config.perf
    if name in database.DATABASE_CHECKS:
        result = _database_check(rt, name)
    elif name == "api_latency":
        result = sources.api_latency(rt.resources.endpoint("api"), settings)
    elif name == "redis_hit_rate":
        result = sources.redis_hit_rate(rt.resources.redis(), settings)
    elif name == "containers":
        result = _containers(rt)
    elif name == "disk":
        result = sources.disk(settings)
    else:
        raise ConfigError(f"check: unknown check {name!r}; the checks are {', '.join(CHECKS)}")
    say = rt.say if result.state in ("ok", "unknown") else rt.warn
    say(f"{name}: {result.state}: {result.summary}")
    for finding in result.findings:
        rt.say(f"  {finding}")
    return result


def _containers(rt: Runtime[PerfSections]) -> CheckResult:
    try:
        # the client asks the daemon its API version as it is made
        client = rt.resources.docker()
    except ConfigError:
        raise
    except Exception as exc:  # noqa: BLE001 - docker-py wraps every transport error differently
        return unknown("containers", f"the Docker daemon did not answer ({type(exc).__name__}: {_line(exc)})")
    return sources.containers(client, rt.config.perf)


def _line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:200]


def _database_check(rt: Runtime[PerfSections], name: str) -> CheckResult:
    try:
        target = rt.database()
    except MissingConnectionError as exc:
        return unknown(name, str(exc))
    try:
        with database.read_only_session(target, rt.config.perf) as session:
            return database.DATABASE_CHECKS[name](session, rt.config.perf)
    except database.SourceUnavailable as exc:
        return unknown(name, str(exc))


@dataclass(frozen=True)
class Previous:
    key: str | None
    document: dict[str, Any] | None
    reason: str | None = None


def find_previous(rt: Runtime[PerfSections], day: date, compare_to: str | None) -> Previous:
    """The report named by ``compare_to``; else last week's, else the newest one before ``day``."""
    store = rt.store()
    prefix = rt.config.perf.report_prefix
    if compare_to:
        if not store.exists(compare_to):
            raise ConfigError(f"compare_to: no report at {store.url(compare_to)}")
        return Previous(compare_to, store.get_json(compare_to))
    wanted = report.last_week_key(prefix, day)
    if store.exists(wanted):
        return Previous(wanted, store.get_json(wanted))
    this = report.report_key(prefix, day)
    earlier = sorted(
        o.key for o in store.list_objects(f"{prefix}perf/") if o.key.endswith(".json") and o.key < this
    )
    if earlier:
        rt.say(f"no report of last week at {wanted}: comparing to the newest earlier one, {earlier[-1]}")
        return Previous(earlier[-1], store.get_json(earlier[-1]))
    return Previous(None, None, f"no earlier report under {prefix}perf/ (last week's would be {wanted})")


def assemble_report(
    rt: Runtime[PerfSections],
    results: list[dict[str, Any]],
    *,
    day: date,
    run_id: str,
    compare_to: str | None = None,
    store: bool = True,
) -> dict[str, Any]:
    """Compare with the previous report, build the report, store its JSON and Markdown in S3."""
    settings = rt.config.perf
    checks = sorted((CheckResult.from_dict(r) for r in results), key=lambda r: CHECKS.index(r.check))
    key = report.report_key(settings.report_prefix, day)
    previous = (
        find_previous(rt, day, compare_to) if store or compare_to else Previous(None, None, "not stored")
    )
    by_name = {r.check: r for r in checks}
    current = report.snapshot_of(by_name.get("slow_queries"))
    comparison: dict[str, Any]
    if current is None:
        comparison = {
            "compared_to": previous.key,
            "available": False,
            "reason": "slow_queries was not measured in this run",
            "reset": None,
            "regressions": [],
            "new_in_top": [],
        }
    else:
        old = previous.document or {}
        old_slow = (old.get("checks") or {}).get("slow_queries") or {}
        comparison = compare(
            old.get("snapshot") if previous.document else None,
            current,
            regression_share=settings.regression_share,
            min_mean_ms=settings.regression_min_mean_ms,
            top=by_name["slow_queries"].values["top"],
            previous_top=(old_slow.get("values") or {}).get("top")
            if old_slow.get("state") != "unknown"
            else None,
            compared_key=previous.key,
        )
        if previous.document is not None and old.get("snapshot") is None:
            comparison.update(available=False, reason=f"{previous.key} holds no pg_stat_statements snapshot")
        elif previous.reason:
            comparison["reason"] = previous.reason
    if comparison.get("reset"):
        rt.warn(comparison["reset"])
    document = report.build(
        checks,
        day=day,
        run_id=run_id,
        generated_at=datetime.now(UTC).isoformat(timespec="seconds"),
        key=key,
        comparison=comparison,
    )
    text = report.markdown(document)
    rt.say(text)
    markdown_key = report.report_key(settings.report_prefix, day, "md")
    if store:
        bucket = rt.store()
        bucket.put_json(key, document)
        bucket.put_bytes(markdown_key, text.encode(), "text/markdown; charset=utf-8")
        rt.say(f"report stored at {bucket.url(key)} and {bucket.url(markdown_key)}")
    return {
        "key": key if store else None,
        "markdown_key": markdown_key if store else None,
        "states": {name: check["state"] for name, check in document["checks"].items()},
        "regressions": [r["queryid"] for r in comparison["regressions"]],
        "reset": comparison.get("reset"),
        "document": document,
        "markdown": text,
    }


def publish_report(
    rt: Runtime[PerfSections], document: dict[str, Any], *, where: str | None = None
) -> dict[str, Any]:
    """States to the Pushgateway, the summary to Slack, and an alert per kind of critical finding.

    ``where`` is the JSON report's URL; the Markdown report sits beside it (:func:`report.report_key`).
    """
    rt.publish_metrics(DAG_ID, report.metrics(document))
    location = (
        f"{where.removesuffix('.json')}.md (JSON: {where})" if where and where.endswith(".json") else where
    )
    text = report.slack_summary(document, where=location)
    if len(text) > SLACK_TEXT_LIMIT:
        text = (
            text[:SLACK_TEXT_LIMIT].rsplit("\n", 1)[0]
            + f"\n… the full report is at {location or 'the report key'}"
        )
    rt.notify(info_message(text))
    alerts = report.findings(document)
    for finding in alerts:
        rt.alert(finding)
    return {
        "states": {name: check["state"] for name, check in document["checks"].items()},
        "alerts": [f.alert_name for f in alerts],
    }


def result_key(rt: Runtime[PerfSections], run_id: str, name: str) -> str:
    """Where one run's check result waits for ``assemble_report``: under the bucket's
    ``<backup.prefix>.incoming/`` (retention removes what is older than ``backup.stale_upload_hours``)."""
    run = re.sub(r"[^A-Za-z0-9._-]", "_", run_id)
    return f"{rt.config.backup.prefix}{INCOMING_DIR}perf/{run}/{name}.json"


def stage_result(rt: Runtime[PerfSections], result: CheckResult, run_id: str) -> dict[str, Any]:
    """Put a check's result (its values and findings grow with the database) in the bucket; its
    state and one line, and where the rest is."""
    key = result_key(rt, run_id, result.check)
    rt.store().put_json(key, result.as_dict())
    return {
        "check": result.check,
        "state": result.state,
        "summary": result.summary[:500],
        "findings": len(result.findings),
        "result_key": key,
    }


def load_results(rt: Runtime[PerfSections], staged: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The check results :func:`stage_result` put aside (a whole result is taken as it is)."""
    store = rt.store()
    return [store.get_json(item["result_key"]) if "result_key" in item else item for item in staged]


def discard_results(rt: Runtime[PerfSections], staged: list[dict[str, Any]]) -> None:
    """Remove the staged results once the report holds them; a leftover goes with retention."""
    for item in staged:
        if "result_key" in item:
            try:
                rt.store().delete(item["result_key"])
            except StellarOpsError as exc:
                rt.warn(f"{item['result_key']} stays until retention removes it: {exc}")


def load_report(rt: Runtime[PerfSections], key: str) -> dict[str, Any]:
    return rt.store().get_json(key)  # type: ignore[no-any-return]


def today() -> date:
    return datetime.now(UTC).date()
