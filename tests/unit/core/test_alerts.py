"""stellar_ops.alerts: Slack payloads an on-call engineer can act on, and human_bytes."""

from __future__ import annotations

import dataclasses

import pytest

from stellar_ops.core.alerts import (
    MAX_ERROR_CHARS,
    FailureAlert,
    failure_message,
    human_bytes,
    info_message,
    recovery_message,
)
from stellar_ops.core.taxonomy import SEVERITY_MEANING

ALERT = FailureAlert(
    dag_id="db_backup",
    task_id="take_backup",
    run_id="scheduled__2025-03-01T02:00:00+00:00",
    try_number=2,
    max_tries=3,
    severity="P2",
    alert_name="BackupFailed",
    runbook_url="https://runbooks.example.org/db_backup",
    error="pg_dump: error: connection to server failed",
    log_url="https://airflow.example.org/dags/db_backup/runs/x/tasks/take_backup",
    mention="<!here>",
    runbook="RB-002",
    runbook_link="https://ops.example.org/runbooks#rb-002",
)


def _text(alert: FailureAlert) -> str:
    payload = failure_message(alert)
    # The text and the single mrkdwn block carry the same message.
    assert payload["blocks"] == [{"type": "section", "text": {"type": "mrkdwn", "text": payload["text"]}}]
    return str(payload["text"])


def test_failure_message_names_everything_needed() -> None:
    lines = _text(ALERT).split("\n")

    assert lines[0] == ":red_circle: [P2] BackupFailed: db_backup.take_backup failed"
    assert "*DAG:* db_backup   *Task:* take_backup" in lines
    assert (
        "*Run:* scheduled__2025-03-01T02:00:00+00:00   *Try:* 2 of 3 (not retried: a retry cannot fix this error)"
        in lines
    )
    assert f"*Severity:* P2 ({SEVERITY_MEANING['P2']}); respond within 1 hour" in lines
    assert "*Error:* pg_dump: error: connection to server failed" in lines
    assert (
        "*Runbook:* <https://ops.example.org/runbooks#rb-002|RB-002 Backup failed or stale>"
        " · <https://runbooks.example.org/db_backup|DAG runbook>"
    ) in lines
    assert (
        lines[-1] == "*Log:* <https://airflow.example.org/dags/db_backup/runs/x/tasks/take_backup|task log>"
    )


def test_a_runbook_without_a_web_address_is_named_with_its_path() -> None:
    text = _text(dataclasses.replace(ALERT, runbook_link="docs/runbooks.md#rb-002", runbook_url="docs/x"))
    assert "*Runbook:* RB-002 Backup failed or stale: docs/runbooks.md#rb-002 · DAG runbook: docs/x" in text


def test_an_error_cannot_become_a_link_or_a_mention() -> None:
    text = _text(dataclasses.replace(ALERT, error="<!channel> a & b <http://x|y>"))
    assert "*Error:* &lt;!channel&gt; a &amp; b &lt;http://x|y&gt;" in text


@pytest.mark.parametrize("severity", ["P1", "P2", "P3"])
def test_every_severity_is_explained(severity: str) -> None:
    text = _text(dataclasses.replace(ALERT, severity=severity))
    assert f"*Severity:* {severity} ({SEVERITY_MEANING[severity]})" in text  # type: ignore[index]
    assert f"[{severity}] BackupFailed" in text


def test_try_number_reads_n_of_m() -> None:
    assert "*Try:* 1 of 1" in _text(dataclasses.replace(ALERT, try_number=1, max_tries=1))


def test_mention_prefixes_only_p1_alerts() -> None:
    p1 = _text(dataclasses.replace(ALERT, severity="P1"))
    p2 = _text(ALERT)
    p3 = _text(dataclasses.replace(ALERT, severity="P3"))

    assert p1.startswith("<!here> :rotating_light: [P1] BackupFailed")
    assert "<!here>" not in p2
    assert "<!here>" not in p3
    assert p3.startswith(":large_orange_circle: [P3]")


def test_p1_without_a_mention_has_no_prefix() -> None:
    assert _text(dataclasses.replace(ALERT, severity="P1", mention=None)).startswith(":rotating_light: [P1]")


def test_no_log_url_means_no_log_line() -> None:
    text = _text(dataclasses.replace(ALERT, log_url=None))
    assert "*Log:*" not in text
    assert text.split("\n")[-1].startswith("*Runbook:*")


def test_long_error_is_shortened_to_the_maximum() -> None:
    error = "E" * 5000

    text = _text(dataclasses.replace(ALERT, error=error))

    shown = next(line for line in text.split("\n") if line.startswith("*Error:* "))[len("*Error:* ") :]
    assert len(shown) == MAX_ERROR_CHARS
    assert shown.endswith("…")
    assert shown[:-1] == "E" * (MAX_ERROR_CHARS - 1)


def test_error_at_the_limit_is_not_shortened() -> None:
    error = "x" * MAX_ERROR_CHARS
    assert f"*Error:* {error}\n" in _text(dataclasses.replace(ALERT, error=error))


def test_multiline_error_becomes_one_line() -> None:
    error = "Traceback:\n   line one\n\tline two   \n"

    text = _text(dataclasses.replace(ALERT, error=error))

    assert "*Error:* Traceback: line one line two\n" in text
    assert len(text.split("\n")) == 7


@pytest.mark.parametrize("error", ["", "  \n "])
def test_empty_error_says_so(error: str) -> None:
    assert "*Error:* no error message" in _text(dataclasses.replace(ALERT, error=error))


def test_recovery_message() -> None:
    payload = recovery_message(
        dag_id="db_backup",
        run_id="scheduled__2025-03-02",
        failed_run_id="scheduled__2025-03-01",
        alert_name="BackupFailed",
        runbook_url="https://runbooks.example.org/db_backup",
    )

    assert payload["text"] == (
        ":large_green_circle: RESOLVED BackupFailed: db_backup succeeded again in run scheduled__2025-03-02"
        " (failing since run scheduled__2025-03-01)\n*Runbook:* <https://runbooks.example.org/db_backup|DAG runbook>"
    )
    assert payload["blocks"][0]["text"]["text"] == payload["text"]


def test_recovery_message_without_the_failed_run() -> None:
    payload = recovery_message(
        dag_id="db_backup", run_id="r2", failed_run_id=None, alert_name="BackupFailed", runbook_url="u"
    )
    assert "failing since" not in payload["text"]
    assert payload["text"].startswith(
        ":large_green_circle: RESOLVED BackupFailed: db_backup succeeded again in run r2\n"
    )


def test_info_message() -> None:
    assert info_message("hello") == {
        "text": "hello",
        "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "hello"}}],
    }


@pytest.mark.parametrize(
    ("count", "expected"),
    [
        (0, "0 B"),
        (1, "1 B"),
        (1023, "1023 B"),
        (1024, "1.0 KiB"),
        (1536, "1.5 KiB"),
        (1024**2, "1.0 MiB"),
        (5 * 1024**3 + 1024**3 // 2, "5.5 GiB"),
        (1024**4, "1.0 TiB"),
        (3 * 1024**5, "3,072.0 TiB"),
        (1500 * 1024**2, "1.5 GiB"),
    ],
)
def test_human_bytes(count: int, expected: str) -> None:
    assert human_bytes(count) == expected


def test_human_bytes_of_negative_sizes() -> None:
    assert human_bytes(-2048) == "-2.0 KiB"
    assert human_bytes(-5) == "-5 B"
