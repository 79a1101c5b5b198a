"""The Prometheus alert rules of the batch-job metrics, rendered from the procedures' taxonomy.

A rules file is static, yet two things in it belong elsewhere: where a deployment publishes
``docs/runbooks.md`` (the ``runbook_url`` annotations must be absolute links, or no Alertmanager
receiver can open them) and the procedures' schedules (a silence threshold typed by hand would
stay behind when a schedule changes). So the file is rendered by :func:`render`, from the
catalogue's :class:`~stellar_ops.core.taxonomy.DagEntry` and a runbook base URL, through
``stellar-ops monitoring rules``; ``monitoring/prometheus/stellar_ops_rules.yml`` is its rendering
with :data:`EXAMPLE_RUNBOOK_BASE_URL`, and a test keeps the two equal.

Every scheduled DAG gets a silence rule (a dead man's switch), unless :data:`UNWATCHED` says why
not: ``<Name>Silent`` fires when the DAG's last push is older than its schedule allows
(:func:`silence_after`), and ``<Name>NeverPushed`` when no push of it has been seen for that long
(a DAG left paused since its deployment never pushes, so it has no old push to be late). Pure: no
Airflow, no YAML library (the runtime does not ship one).
"""

from __future__ import annotations

import functools
import json
import re
import textwrap
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from urllib.parse import urlsplit

from stellar_ops.core.errors import ConfigError
from stellar_ops.core.runbooks import runbook_link
from stellar_ops.core.taxonomy import DagEntry, Severity

DEFAULT_JOB = "stellar_ops"
# The base URL of the rendering kept in the repository; a deployment renders its own.
EXAMPLE_RUNBOOK_BASE_URL = "https://runbooks.stellarescrow.example/"
# Beyond the longest gap between two slots and the run's deadline: the scheduler's own delay
# (a restart, a queue), without waiting a whole extra period.
GRACE = timedelta(hours=1)

# The silence alert of each scheduled DAG. db_backup keeps BackupStale (and BackupNeverSucceeded),
# which read its last *successful* backup and so are stricter than any push; a DAG missing here
# gets ``<CamelCase dag_id>Silent``, so a new scheduled DAG is watched from its first rendering.
SILENCE_ALERTS: dict[str, str] = {
    "db_backup": "BackupStale",
    "dr_restore_test": "DrTestSilent",
    "tls_cert_check": "TLSCheckSilent",
    "perf_analysis": "PerfAnalysisSilent",
    "morning_health_check": "HealthCheckSilent",
    "db_maintenance": "MaintenanceSilent",
    "secrets_rotation_audit": "SecretsAuditSilent",
}
# Scheduled DAGs deliberately without a silence rule, and why.
UNWATCHED: dict[str, str] = {
    "api_key_rotation": "quarterly, and it pushes no metrics: secrets_rotation_audit alerts "
    "(SecretRotationOverdue) when API_KEYS or ADMIN_KEYS go a quarter without a rotation",
    "secret_rotation": "it rotates only what is due and pushes no metrics: secrets_rotation_audit alerts "
    "when a secret goes past its period (SecretRotationOverdue) or a rotation waits too long for its "
    "removal (SecretRotationStuck)",
}


@dataclass(frozen=True)
class Rule:
    alert: str
    expr: str
    severity: Severity
    runbook: str
    summary: str
    hold: timedelta | None = None  # the rule's ``for``
    description: str | None = None
    comment: str | None = None  # rendered above the rule: why it is as it is


@dataclass(frozen=True)
class Group:
    name: str
    rules: tuple[Rule, ...]
    comment: str | None = None


# --- cron: the longest gap between two slots of a schedule ---------------------------------------

_FIELDS = (
    ("minute", 0, 59),
    ("hour", 0, 23),
    ("day of month", 1, 31),
    ("month", 1, 12),
    ("day of week", 0, 7),
)
_NAMES = {
    3: {
        m: i
        for i, m in enumerate(
            ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"], 1
        )
    },
    4: {d: i for i, d in enumerate(["sun", "mon", "tue", "wed", "thu", "fri", "sat"])},
}
_MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
# 28 years: the days of the week and leap years come round in the same order again.
_CYCLE_START = date(2001, 1, 1)
_CYCLE_DAYS = (date(2029, 1, 1) - _CYCLE_START).days


def _number(token: str, index: int, cron: str) -> int:
    name, low, high = _FIELDS[index]
    value = _NAMES.get(index, {}).get(token.lower())
    if value is None:
        if not token.isdigit():
            raise ValueError(f"cron {cron!r}: {token!r} is not a {name}")
        value = int(token)
    if not low <= value <= high:
        raise ValueError(f"cron {cron!r}: {name} {value} is outside {low}-{high}")
    return value


def _values(text: str, index: int, cron: str) -> set[int]:
    """The values one field of ``cron`` matches: ``*``, ``5``, ``1-5``, ``*/15``, ``0-30/10``,
    ``mon``, lists of these."""
    name, low, high = _FIELDS[index]
    found: set[int] = set()
    for part in text.split(","):
        spec, slash, step_text = part.partition("/")
        if slash and (not step_text.isdigit() or int(step_text) == 0):
            raise ValueError(f"cron {cron!r}: the step {step_text!r} of the {name} is not a positive number")
        if spec == "*":
            first, last = low, high
        elif "-" in spec:
            start, _, end = spec.partition("-")
            first, last = _number(start, index, cron), _number(end, index, cron)
        else:
            first = _number(spec, index, cron)
            last = high if slash else first
        if first > last:
            raise ValueError(f"cron {cron!r}: the {name} range {spec!r} runs backwards")
        found.update(range(first, last + 1, int(step_text) if slash else 1))
    if index == 4 and 7 in found:  # Sunday is 0 or 7
        found = (found - {7}) | {0}
    return found


@functools.cache  # pure, and each rendering asks for each schedule several times
def longest_gap(cron: str) -> timedelta:
    """The longest time between two consecutive slots of a five-field cron expression (UTC).

    When both the day of the month and the day of the week are restricted, a day matches either
    (cron's own rule)."""
    fields = _MACROS.get(cron.strip(), cron).split()
    if len(fields) != 5:
        raise ValueError(f"cron {cron!r} does not have five fields (minute hour day month weekday)")
    minutes, hours, days, months, weekdays = (_values(text, i, cron) for i, text in enumerate(fields))
    either = not fields[2].startswith("*") and not fields[4].startswith("*")
    times = sorted(h * 60 + m for h in hours for m in minutes)
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    previous: int | None = None
    for offset in range(_CYCLE_DAYS):
        day = _CYCLE_START + timedelta(days=offset)
        by_month, by_weekday = day.day in days, day.isoweekday() % 7 in weekdays
        if day.month in months and ((by_month or by_weekday) if either else (by_month and by_weekday)):
            if previous is not None:
                gaps.append((offset - previous) * 1440 + times[0] - times[-1])
            previous = offset
    if previous is None:
        raise ValueError(f"cron {cron!r} never fires")
    if not gaps:
        raise ValueError(f"cron {cron!r} fires once in 28 years: it has no period to watch")
    return timedelta(minutes=max(gaps))


def silence_after(entry: DagEntry) -> timedelta:
    """How long after its last push a scheduled DAG is silent: the longest gap between two slots,
    plus its deadline (a run pushes at its end, up to ``expected_minutes`` after its slot), plus
    :data:`GRACE`."""
    if entry.schedule is None:
        raise ValueError(f"{entry.dag_id} has no schedule: it cannot fall silent")
    return longest_gap(entry.schedule) + timedelta(minutes=entry.expected_minutes) + GRACE


def silence_alert(dag_id: str) -> str:
    """The alert that fires when ``dag_id``'s last push is too old."""
    return SILENCE_ALERTS.get(dag_id) or "".join(part.capitalize() for part in dag_id.split("_")) + "Silent"


def never_pushed_alert(dag_id: str) -> str:
    """Its twin, when no push of ``dag_id`` has been seen at all for as long."""
    if dag_id == "db_backup":
        return "BackupNeverSucceeded"
    return silence_alert(dag_id).removesuffix("Silent") + "NeverPushed"


def span(value: timedelta) -> str:
    """Every unit, so a threshold reads exactly: ``26 hours``, ``13 hours 30 minutes``,
    ``7 days 1 hour 30 minutes``; whole days only from two days on."""
    seconds = int(value.total_seconds())
    days, rest = divmod(seconds, 86400) if seconds >= 2 * 86400 else (0, seconds)
    hours, rest = divmod(rest, 3600)
    minutes, rest = divmod(rest, 60)
    units = ((days, "day"), (hours, "hour"), (minutes, "minute"), (rest, "second"))
    return " ".join(f"{n} {unit}{'s' if n != 1 else ''}" for n, unit in units if n) or "0 seconds"


def watched(entries: Iterable[DagEntry]) -> list[DagEntry]:
    """The scheduled DAGs that get a silence rule, in catalogue order."""
    return [e for e in entries if e.schedule is not None and e.dag_id not in UNWATCHED]


# --- the rules --------------------------------------------------------------------------------


def _seconds(value: timedelta) -> int:
    return int(value.total_seconds())


def _threshold_words(entry: DagEntry, after: timedelta) -> str:
    assert entry.schedule is not None
    return (
        f'{entry.dag_id} runs "{entry.schedule}" (UTC): at most {span(longest_gap(entry.schedule))} '
        f"between two slots, + its deadline of {span(timedelta(minutes=entry.expected_minutes))}, + "
        f"{span(GRACE)} of grace = {span(after)} ({_seconds(after)} s)."
    )


def _backup_rules(backup: DagEntry) -> tuple[Rule, ...]:
    stale = silence_after(backup)
    return (
        Rule(
            "BackupFailed",
            "stellar_backup_success == 0",
            backup.severity,
            backup.runbook,
            "The last backup failed ({{ $labels.procedure }})",
        ),
        Rule(
            "BackupStale",
            f"time() - max(stellar_backup_last_success_timestamp_seconds) > {_seconds(stale)}",
            backup.severity,
            backup.runbook,
            "No successful backup for {{ $value | humanizeDuration }}",
            comment="db_backup's silence, from its last successful backup: "
            + _threshold_words(backup, stale),
        ),
        Rule(
            "BackupNeverSucceeded",
            "absent(stellar_backup_last_success_timestamp_seconds)",
            backup.severity,
            backup.runbook,
            f"No successful backup has been recorded for {span(stale)}",
            hold=stale,
        ),
        Rule(
            "DisasterRecoveryTestFailed",
            "stellar_dr_test_success == 0",
            "P2",
            "RB-003",
            "The last disaster-recovery drill failed",
        ),
    )


CERTIFICATE_RULES = (
    Rule(
        "TLSCertExpiringSoon",
        "stellar_tls_cert_expiry_days < 14",
        "P2",
        "RB-004",
        'The certificate of {{ $labels.domain }} expires in {{ $value | printf "%.1f" }} days',
    ),
    Rule(
        "TLSCertUnusable",
        'stellar_tls_cert_state{state=~"expired|invalid"} == 1',
        "P2",
        "RB-004",
        "{{ $labels.domain }} is {{ $labels.state }}",
    ),
    Rule(
        "TLSEndpointUnreachable",
        'stellar_tls_cert_state{state="unreachable"} == 1',
        "P2",
        "RB-004",
        "{{ $labels.domain }} is unreachable over TLS",
        comment="A host that is down is not a certificate problem: its own alert, never TLSCertUnusable.",
    ),
)
CHECK_RULES = (
    Rule(
        "PerformanceCheckCritical",
        "stellar_perf_check_status == 2",
        "P3",
        "RB-006",
        "perf_analysis: {{ $labels.check }} is critical",
    ),
    Rule(
        "PerformanceCheckUnknown",
        "stellar_perf_check_status == 3",
        "P3",
        "RB-006",
        "perf_analysis: {{ $labels.check }} has not been measurable for a week",
        hold=timedelta(days=7),
    ),
    Rule(
        "HealthCheckCritical",
        "stellar_health_check_status == 2",
        "P2",
        "SEC-1.1",
        "morning_health_check: {{ $labels.check }} is critical",
    ),
    Rule(
        "HealthCheckWarning",
        "stellar_health_check_status == 1",
        "P3",
        "SEC-1.1",
        "morning_health_check: {{ $labels.check }} needs a look",
    ),
    Rule(
        "WalArchiveFailing",
        "stellar_pitr_archive_failing == 1",
        "P1",
        "PITR-ARCHIVE",
        "WAL archiving fails: point-in-time recovery stops at the last archived segment",
        comment="Pushed by morning_health_check while archive_mode is on. Its lagging twin, "
        "WalArchiveLagging, is the check's own verdict against pitr.max_archive_lag_seconds (a "
        'setting of the config, not of this file): HealthCheckCritical{check="wal_archive"}.',
    ),
)


def _what_to_check(dag_id: str) -> str:
    return (
        f"Is the scheduler running? Is {dag_id} paused, or failing to import (the UI's DAG import "
        f"errors, `airflow dags list-import-errors`)? Did its runs reach the Pushgateway (their task logs)?"
    )


def silence_rules(entry: DagEntry, job: str) -> tuple[Rule, ...]:
    """``<Name>Silent``: the DAG's last push is older than :func:`silence_after`;
    ``<Name>NeverPushed``: no push of it has been seen for as long (never pushed, for example a DAG
    still paused since it was deployed, or the Pushgateway lost its groups)."""
    after = silence_after(entry)
    series = f'push_time_seconds{{job="{job}",procedure="{entry.dag_id}"}}'
    return (
        Rule(
            silence_alert(entry.dag_id),
            f"time() - max by (job, procedure) ({series}) > {_seconds(after)}",
            entry.severity,
            entry.runbook,
            f"{entry.dag_id} has pushed nothing for {{{{ $value | humanizeDuration }}}}, over the "
            f"{span(after)} its schedule ({entry.schedule} UTC) allows",
            description=_what_to_check(entry.dag_id),
            comment=_threshold_words(entry, after),
        ),
        Rule(
            never_pushed_alert(entry.dag_id),
            f"absent({series})",
            entry.severity,
            entry.runbook,
            f"No push of {entry.dag_id} seen in {span(after)}, the most its schedule "
            f"({entry.schedule} UTC) allows",
            hold=after,
            description=_what_to_check(entry.dag_id),
        ),
    )


# Comments are paragraphs, one a line, wrapped when rendered.
SILENCE_COMMENT = (
    "A dead man's switch per scheduled DAG. <Name>Silent fires when the DAG's last push is older "
    "than its schedule allows: the longest gap between two of its slots, plus its deadline (a run "
    "pushes at its end), plus an hour's grace, computed from the schedule of its taxonomy entry, so "
    "that a changed schedule moves its threshold at the next rendering. <Name>NeverPushed fires when "
    "no push of it has been seen for as long: a DAG left paused since it was deployed never pushes, "
    "so it has no old push to be late.\n"
    "Both read push_time_seconds, which the Pushgateway itself sets on every successful push into a "
    "group (job, procedure, and domain for tls_cert_check, whose freshest domain counts), rather than "
    "a metric of each procedure's own: the procedures already push their verdict or report in every "
    "run, no new step can forget to set it, and its clock is the gateway's, not a worker's. A push "
    "that fails counts as silence, rightly: the other rules then read stale values. The two that had "
    "nothing to push push stellar_procedure_last_run_timestamp_seconds: secrets_rotation_audit at "
    "the end of every audit, whatever its outcome; db_maintenance with its summary, the end of a run "
    "that vacuumed (a failed run also alerts MaintenanceFailed)."
)


def groups(entries: Sequence[DagEntry], *, job: str = DEFAULT_JOB) -> tuple[Group, ...]:
    by_id = {entry.dag_id: entry for entry in entries}
    if "db_backup" not in by_id:
        raise ValueError("the rules need db_backup's taxonomy entry (the threshold of BackupStale)")
    silent = [e for e in watched(entries) if e.dag_id != "db_backup"]
    notes = ["db_backup's are BackupStale and BackupNeverSucceeded, from its last successful backup."]
    notes += [f"{dag_id} has none: {why}." for dag_id, why in UNWATCHED.items() if dag_id in by_id]
    return (
        Group("stellar_ops_backups", _backup_rules(by_id["db_backup"])),
        Group("stellar_ops_certificates", CERTIFICATE_RULES),
        Group("stellar_ops_checks", CHECK_RULES),
        Group(
            "stellar_ops_silence",
            tuple(rule for entry in silent for rule in silence_rules(entry, job)),
            "\n".join([SILENCE_COMMENT, *notes]),
        ),
    )


# --- rendering --------------------------------------------------------------------------------

HEADER = (
    "Alert rules for the batch-job metrics stellar-ops pushes to the Pushgateway (job {job}). "
    "Scrape the Pushgateway with honor_labels: true. Severities are the procedures' (P1 pages, P2 "
    "and P3 go to ops).\n"
    "Rendered by `stellar-ops monitoring rules` (stellar_ops.core.alert_rules) from the procedures' "
    "taxonomy: do not edit it by hand, change the module and render again. Runbook links go to "
    "{base} (where docs/runbooks.md is published). `make docs` renders the copy in the repository, "
    "with the example base URL {example}; a deployment renders its own (the default base URL is the "
    "config's alerts.runbook_base_url):\n"
    "  stellar-ops monitoring rules --runbook-base-url https://... > stellar_ops_rules.yml"
)
WIDTH = 100

_RESERVED = re.compile(r"^(?:true|false|yes|no|on|off|y|n|null|~|[-+.]?[0-9].*|\.inf|\.nan)$", re.I)


def _scalar(value: str) -> str:
    """``value`` as a YAML scalar: plain when that reads back as the same string, else quoted."""
    if "\n" in value:
        raise ValueError(f"a rule's text must be one line: {value!r}")
    plain = (
        value
        and value == value.strip()
        and value[0] not in "-?:,[]{}#&*!|>'\"%@`"
        and ": " not in value
        and " #" not in value
        and not value.endswith(":")
        and "{{" not in value
        and not _RESERVED.match(value)
    )
    if plain:
        return value
    if "'" not in value:
        return f"'{value}'"
    return json.dumps(value)


def _duration(value: timedelta) -> str:
    """A Prometheus duration: ``26h``, ``13h30m``, ``7d4h``, ``31d3h``."""
    seconds = _seconds(value)
    if seconds <= 0 or value != timedelta(seconds=seconds):
        raise ValueError(f"a rule's hold must be a positive whole number of seconds, got {value}")
    days, rest = divmod(seconds, 86400) if seconds >= 2 * 86400 else (0, seconds)
    hours, rest = divmod(rest, 3600)
    minutes, rest = divmod(rest, 60)
    parts = ((days, "d"), (hours, "h"), (minutes, "m"), (rest, "s"))
    return "".join(f"{count}{unit}" for count, unit in parts if count)


def _comment(text: str, indent: str) -> list[str]:
    """``text`` as comment lines; a line longer than the width is wrapped, an indented one kept."""
    lines: list[str] = []
    for line in text.splitlines():
        wrapped = [line] if line.startswith(" ") else textwrap.wrap(line, WIDTH - len(indent) - 2)
        lines += [f"{indent}# {part}".rstrip() for part in wrapped or [""]]
    return lines


def check_base_url(url: str) -> str:
    """``url`` if it is absolute (http or https, a host, no fragment), else a ConfigError."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.fragment:
        raise ConfigError(
            f"the runbook base URL must be an absolute http(s) URL without a #fragment (where "
            f"docs/runbooks.md is published), got {url!r}"
        )
    return url


def render(entries: Iterable[DagEntry], *, runbook_base_url: str, job: str = DEFAULT_JOB) -> str:
    """The whole rules file, its runbook links under ``runbook_base_url``."""
    base = check_base_url(runbook_base_url)
    lines = _comment(HEADER.format(job=job, base=base, example=EXAMPLE_RUNBOOK_BASE_URL), "")
    lines.append("groups:")
    for group in groups(list(entries), job=job):
        if group.comment:
            lines += _comment(group.comment, "  ")
        lines += [f"  - name: {_scalar(group.name)}", "    rules:"]
        for rule in group.rules:
            if rule.comment:
                lines += _comment(rule.comment, "      ")
            lines += [f"      - alert: {_scalar(rule.alert)}", f"        expr: {_scalar(rule.expr)}"]
            if rule.hold is not None:
                lines.append(f"        for: {_duration(rule.hold)}")
            lines += [
                "        labels:",
                f"          severity: {_scalar(rule.severity)}",
                "        annotations:",
            ]
            annotations = {
                "summary": rule.summary,
                "description": rule.description,
                "runbook": rule.runbook,
                "runbook_url": runbook_link(rule.runbook, base),
            }
            lines += [f"          {key}: {_scalar(text)}" for key, text in annotations.items() if text]
    return "\n".join(lines) + "\n"
