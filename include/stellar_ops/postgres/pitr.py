"""The ``pitr`` section: what point-in-time recovery needs of the database server, WAL archiving.

Whatever archives the WAL (barman-cloud, pgBackRest, WAL-G, a plain ``cp``), the server's own
``pg_stat_archiver`` tells whether it works; the morning health check reads it over the ordinary
connection (``health``'s ``wal_archive`` check).
"""

from __future__ import annotations

from pydantic import Field

from stellar_ops.core.config import Section


class PitrConfig(Section):
    required: bool = Field(
        False,
        description="Whether WAL must be archived: true makes archive_mode off a P2 (no point-in-time "
        "recovery); false reports it and stays green.",
    )
    max_archive_lag_seconds: float = Field(
        300.0,
        gt=0,
        description="A complete WAL segment waiting to be archived with no success for longer than this "
        "is P2 WalArchiveLagging (an idle server with nothing to archive is not lagging).",
    )
