"""Exceptions with messages an on-call engineer can act on.

Every message names the thing that was wrong (a config field, a connection, an S3 key, a table)
and, where there is one, the fix. None of them ever carries a secret.
"""

from __future__ import annotations


class StellarOpsError(Exception):
    """Base class: a failure whose message is fit to show as a single line."""


class ConfigError(StellarOpsError):
    """The configuration (Variable ``stellar_ops_config``, a connection or a param) is invalid."""


class MissingConnectionError(ConfigError):
    """An Airflow connection (or its CLI equivalent) is not defined."""


class PrerequisiteError(StellarOpsError):
    """Something the procedure needs before it starts is missing or unusable."""


class TargetRefusedError(PrerequisiteError):
    """The server to restore into cannot take this restore as it is (a privilege, an extension, its
    version, a name, its free space): a retry cannot change that, a person must."""


class ChangeFailed(StellarOpsError):
    """A change (a migration, a config change) failed on its own terms: refused, failed in its
    rehearsal or in production, or reverted. A retry would do the same; a person decides."""


class BackupError(StellarOpsError):
    """Taking, uploading or publishing a backup failed."""


class VerificationError(StellarOpsError):
    """A backup or a restored database does not match what its manifest promises."""


class RestoreError(StellarOpsError):
    """Restoring a backup into the scratch server failed."""


class ScratchServerError(StellarOpsError):
    """The scratch PostgreSQL server could not be created or removed."""


class BackupNotFoundError(StellarOpsError):
    """A named backup does not exist."""
