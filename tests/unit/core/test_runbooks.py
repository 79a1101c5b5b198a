"""stellar_ops.core.runbooks and the findings' messages: every runbook exists and is linked."""

from __future__ import annotations

from pathlib import Path

import pytest

from stellar_ops.core.alerts import Finding, finding_message
from stellar_ops.core.config import AlertsConfig
from stellar_ops.core.runbooks import RUNBOOKS, runbook_link

DOCUMENT = Path(__file__).resolve().parents[3] / "docs" / "runbooks.md"


@pytest.mark.parametrize("book_id", sorted(RUNBOOKS))
def test_every_runbook_has_its_section_in_the_document(book_id: str) -> None:
    text = DOCUMENT.read_text()
    book = RUNBOOKS[book_id]
    assert f'<a id="{book.anchor}"></a>\n## {book.id} {book.title}\n' in text


def test_links_go_to_the_published_document_or_name_it() -> None:
    assert (
        runbook_link("RB-004", "https://ops.example.org/runbooks/")
        == "https://ops.example.org/runbooks#rb-004"
    )
    assert runbook_link("RB-004", None) == "docs/runbooks.md#rb-004"
    with pytest.raises(KeyError, match="'RB-999' is not one of RB-001"):
        runbook_link("RB-999", None)


def test_a_findings_message_states_severity_summary_details_and_runbook() -> None:
    finding = Finding(
        "TLSCertExpiringSoon",
        "P2",
        "escrow.example.org expires in 9 days",
        "RB-004",
        "tls_cert_check",
        details=("not after 2026-12-11T00:00:00Z", "issuer Pebble Intermediate CA"),
    )
    text = finding_message(finding, AlertsConfig(runbook_base_url="https://ops.example.org/runbooks"))["text"]
    assert text.splitlines() == [
        ":red_circle: [P2] TLSCertExpiringSoon: escrow.example.org expires in 9 days",
        "*Severity:* P2 (fix today: a safety net (backup, DR, certificates) is down); respond within 1 hour",
        "• not after 2026-12-11T00:00:00Z",
        "• issuer Pebble Intermediate CA",
        "*Found by:* tls_cert_check",
        "*Runbook:* <https://ops.example.org/runbooks#rb-004|RB-004 TLS certificate expiring, expired or invalid>",
    ]
    paging = Finding("DatabaseDown", "P1", "db down", "RB-001", "morning_health_check")
    assert finding_message(paging, AlertsConfig(mention="<!here>"))["text"].startswith(
        "<!here> :rotating_light: [P1]"
    )
