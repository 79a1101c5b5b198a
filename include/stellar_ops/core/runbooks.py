"""The runbooks alerts point to: RB-001 to RB-006 of the operations manual, and the sections of
the procedures that have no RB of their own, in ``docs/runbooks.md``.

An alert names its runbook by id; :func:`runbook_link` turns the id into a link
(``alerts.runbook_base_url`` with the id's anchor), or into the document's own path when no
base URL is configured.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Runbook:
    id: str
    title: str

    @property
    def anchor(self) -> str:
        return self.id.lower()


RUNBOOKS: dict[str, Runbook] = {
    book.id: book
    for book in (
        Runbook("RB-001", "Database or API unavailable"),
        Runbook("RB-002", "Backup failed or stale"),
        Runbook("RB-003", "Disaster-recovery test failed"),
        Runbook("RB-004", "TLS certificate expiring, expired or invalid"),
        Runbook("RB-005", "Redis hit rate low"),
        Runbook("RB-006", "Database query latency high"),
        Runbook("CHG-MIGRATION", "Database migration failed"),
        Runbook("CHG-CONFIG", "Config change failed or reverted"),
        Runbook("PITR-ARCHIVE", "WAL archiving failing or lagging"),
        Runbook("PITR-BASE", "Base backup failed"),
        Runbook("SEC-1.1", "Morning health check"),
        Runbook("SEC-3.2", "API key rotation"),
        Runbook("SEC-3.3", "Secrets rotation schedule"),
        Runbook("SEC-3.4", "Secret rotation (database, Redis, Grafana, S3)"),
        Runbook("UNDELIVERED", "An alert was not delivered"),
    )
}
DOCUMENT = "docs/runbooks.md"


def runbook(book_id: str) -> Runbook:
    try:
        return RUNBOOKS[book_id]
    except KeyError:
        raise KeyError(f"runbook {book_id!r} is not one of {', '.join(RUNBOOKS)}") from None


def runbook_link(book_id: str, base_url: str | None) -> str:
    """Where runbook ``book_id`` is read: under ``base_url``, else in the project's document."""
    book = runbook(book_id)
    where = base_url.rstrip("/") if base_url else DOCUMENT
    return f"{where}#{book.anchor}"
