"""Where the backups are, as the procedures that read them (or keep their state beside them) see it.

The ``backup`` section (:class:`stellar_ops.backup.config.BackupConfig`) is the backup
procedure's, but the bucket, its prefixes and the client programs it names are where every
procedure that touches backups looks. They read it through this protocol, which the section
satisfies structurally, so no procedure's package imports the backup procedure's.
"""

from __future__ import annotations

from typing import Protocol

from stellar_ops.postgres.binaries import BinariesSetting


class BackupLocation(BinariesSetting, Protocol):
    """The bucket, the prefix of backups and that of the old scripts' (``backup.*``)."""

    @property
    def bucket(self) -> str: ...
    @property
    def prefix(self) -> str: ...
    @property
    def legacy_prefix(self) -> str: ...
