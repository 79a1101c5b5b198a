"""stellar_ops.core.alert_rules: schedules' longest gaps, silence thresholds, the rendering as YAML,
and ``stellar-ops monitoring rules``."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
import yaml

from stellar_ops.cli.main import main
from stellar_ops.core import alert_rules
from stellar_ops.core.alert_rules import (
    EXAMPLE_RUNBOOK_BASE_URL,
    Rule,
    groups,
    longest_gap,
    never_pushed_alert,
    render,
    silence_after,
    silence_alert,
    span,
)
from stellar_ops.core.errors import ConfigError
from stellar_ops.core.taxonomy import DagEntry
from stellar_ops.registry import CATALOGUE


@pytest.mark.parametrize(
    ("cron", "gap"),
    [
        ("0 2 * * *", timedelta(days=1)),
        ("0 0,12 * * *", timedelta(hours=12)),
        ("0 4 1 * *", timedelta(days=31)),  # the longest month, not the average one
        ("0 9 1 1,4,7,10 *", timedelta(days=92)),  # July to October
        ("0 3 * * 6", timedelta(days=7)),
        ("*/15 * * * *", timedelta(minutes=15)),
        ("0 9 * * 1-5", timedelta(days=3)),  # Friday to Monday
        ("0 9 * * mon-fri", timedelta(days=3)),
        ("30 6,18 * jan-dec 7", timedelta(days=6, hours=12)),  # Sunday as 7
        ("0 0 1,15 * 1", timedelta(days=7)),  # day of month or day of week, as cron has it
        ("0 0 29 2 *", timedelta(days=4 * 365 + 1)),  # leap days only
        ("0 8-18/5 * * *", timedelta(hours=14)),  # 8, 13, 18, then 8 the next day
        ("@weekly", timedelta(days=7)),
    ],
)
def test_the_longest_gap_between_two_slots(cron: str, gap: timedelta) -> None:
    assert longest_gap(cron) == gap


@pytest.mark.parametrize(
    ("cron", "message"),
    [
        ("0 2 * *", "does not have five fields"),
        ("0 25 * * *", "hour 25 is outside 0-23"),
        ("0 2 * * funday", "'funday' is not a day of week"),
        ("*/0 * * * *", "the step '0' of the minute is not a positive number"),
        ("0 5-1 * * *", "the hour range '5-1' runs backwards"),
        ("0 0 31 2 *", "never fires"),
    ],
)
def test_a_schedule_that_is_no_cron_says_why(cron: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        longest_gap(cron)


def test_each_procedure_s_silence_threshold_is_its_gap_its_deadline_and_an_hour() -> None:
    thresholds = {e.dag_id: silence_after(e) for e in CATALOGUE.values() if e.schedule}
    hours = {dag_id: value / timedelta(hours=1) for dag_id, value in thresholds.items()}
    assert hours["db_backup"] == 26  # BackupStale's 26 hours, as before the rules were rendered
    assert hours["tls_cert_check"] == 13.5
    assert hours["morning_health_check"] == 24 + 10 / 60 + 1
    assert hours["dr_restore_test"] == 31 * 24 + 3
    assert hours["perf_analysis"] == 7 * 24 + 2
    assert hours["db_maintenance"] == 7 * 24 + 4
    assert hours["secrets_rotation_audit"] == 7 * 24 + 1.5
    with pytest.raises(ValueError, match="db_restore has no schedule"):
        silence_after(CATALOGUE["db_restore"])


def test_the_names_of_the_silence_alerts() -> None:
    assert [silence_alert(d) for d in ("tls_cert_check", "db_backup", "db_base_backup")] == [
        "TLSCheckSilent",
        "BackupStale",
        "DbBaseBackupSilent",
    ]
    assert [never_pushed_alert(d) for d in ("tls_cert_check", "db_backup", "db_base_backup")] == [
        "TLSCheckNeverPushed",
        "BackupNeverSucceeded",
        "DbBaseBackupNeverPushed",
    ]


def test_thresholds_read_in_every_unit() -> None:
    assert span(timedelta(hours=26)) == "26 hours"
    assert span(timedelta(hours=13, minutes=30)) == "13 hours 30 minutes"
    assert span(timedelta(days=7, hours=1, minutes=30)) == "7 days 1 hour 30 minutes"
    assert span(timedelta(days=31, hours=3)) == "31 days 3 hours"


def _rendered(**kwargs: str) -> dict:
    text = render(
        CATALOGUE.values(),
        runbook_base_url=kwargs.get("base", EXAMPLE_RUNBOOK_BASE_URL),
        job=kwargs.get("job", "stellar_ops"),
    )
    return yaml.safe_load(text)


def test_the_rendering_reads_back_as_the_rules_with_absolute_runbook_links() -> None:
    document = _rendered(base="https://ops.example.org/runbooks/")
    expected = groups(list(CATALOGUE.values()))
    assert [g["name"] for g in document["groups"]] == [g.name for g in expected]
    for got_group, group in zip(document["groups"], expected, strict=True):
        for got, rule in zip(got_group["rules"], group.rules, strict=True):
            assert got["alert"] == rule.alert
            assert got["expr"] == rule.expr
            assert got["labels"] == {"severity": rule.severity}
            assert got["annotations"]["summary"] == rule.summary
            assert got["annotations"].get("description") == rule.description
            assert (
                got["annotations"]["runbook_url"]
                == f"https://ops.example.org/runbooks#{rule.runbook.lower()}"
            )
            assert ("for" in got) == (rule.hold is not None)


def test_the_job_is_the_one_the_procedures_push_to() -> None:
    document = _rendered(job="escrow_batch")
    exprs = [r["expr"] for g in document["groups"] for r in g["rules"] if "push_time_seconds" in r["expr"]]
    assert exprs and all('job="escrow_batch"' in e and "stellar_ops" not in e for e in exprs)


@pytest.mark.parametrize(
    "url", ["docs/runbooks.md", "runbooks.example.org", "ftp://x.example/rb", "https://x.example/rb#top"]
)
def test_a_runbook_base_url_must_be_an_absolute_link(url: str) -> None:
    with pytest.raises(ConfigError, match="must be an absolute http"):
        render(CATALOGUE.values(), runbook_base_url=url)


def test_a_new_scheduled_dag_is_watched_from_its_first_rendering() -> None:
    weekly = DagEntry(
        dag_id="db_base_backup",
        procedure="backup",
        severity="P2",
        alert_name="BaseBackupFailed",
        schedule="0 1 * * 0",
        runbook="RB-002",
        expected_minutes=120,
    )
    document = yaml.safe_load(
        render([*CATALOGUE.values(), weekly], runbook_base_url=EXAMPLE_RUNBOOK_BASE_URL)
    )
    found = {r["alert"]: r for g in document["groups"] for r in g["rules"] if "db_base_backup" in r["expr"]}
    assert set(found) == {"DbBaseBackupSilent", "DbBaseBackupNeverPushed"}
    assert found["DbBaseBackupSilent"]["expr"].endswith(f"> {7 * 86400 + 3 * 3600}")
    assert found["DbBaseBackupNeverPushed"]["for"] == "7d3h"
    assert found["DbBaseBackupSilent"]["labels"] == {"severity": "P2"}


def test_the_rules_need_the_backup_s_entry() -> None:
    with pytest.raises(ValueError, match="db_backup's taxonomy entry"):
        render([CATALOGUE["tls_cert_check"]], runbook_base_url=EXAMPLE_RUNBOOK_BASE_URL)


@pytest.mark.parametrize(
    "text",
    [
        "plain words",
        "a: colon",
        "it's {{ $labels.domain }}",
        '{{ $value | printf "%.1f" }} days',
        "# not a comment",
        "yes",
        "0.5",
        "- a dash",
        "trailing:",
        "a #hash",
    ],
)
def test_any_annotation_reads_back_as_written(text: str, monkeypatch: pytest.MonkeyPatch) -> None:
    odd = Rule("Odd", "vector(1)", "P3", "RB-006", text, description=text)
    monkeypatch.setattr(alert_rules, "CHECK_RULES", (*alert_rules.CHECK_RULES, odd))
    document = _rendered()
    (rule,) = [r for g in document["groups"] for r in g["rules"] if r["alert"] == "Odd"]
    assert rule["annotations"]["summary"] == text and rule["annotations"]["description"] == text


def test_the_cli_prints_the_rendering(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("STELLAR_OPS_CONFIG", raising=False)
    assert (
        main(["monitoring", "rules", "--runbook-base-url", "https://rb.example/ops", "--job", "stellar_ops"])
        == 0
    )
    assert capsys.readouterr().out == render(CATALOGUE.values(), runbook_base_url="https://rb.example/ops")


def test_the_cli_takes_the_base_url_and_job_from_the_config(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    config = {"alerts": {"runbook_base_url": "https://wiki.example/rb"}, "metrics": {"job": "batch"}}
    monkeypatch.setenv("STELLAR_OPS_CONFIG", json.dumps(config))
    assert main(["monitoring", "rules"]) == 0
    assert capsys.readouterr().out == render(
        CATALOGUE.values(), runbook_base_url="https://wiki.example/rb", job="batch"
    )


def test_the_cli_refuses_to_render_relative_runbook_links(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("STELLAR_OPS_CONFIG", raising=False)
    assert main(["monitoring", "rules"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "no runbook base URL: pass --runbook-base-url or set alerts.runbook_base_url" in captured.err
