"""The roles a restore needs before any object is created.

A backup carries its globals (``pg_dumpall --globals-only``: roles, their attributes, settings and
memberships) as a sidecar; :func:`apply_globals` creates those roles in the target server, so
GRANTs, default privileges and ownership restore as they were. Whatever role the archive still
names that the server lacks (a backup made without globals: an older manifest, a legacy dump) is
created ``NOLOGIN`` by :func:`ensure_roles`, and named in a warning by the caller.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from stellar_ops.core.errors import RestoreError
from stellar_ops.postgres.target import quote_ident

_NAME = r'(?:"(?:[^"]|"")+"|[^\s;,"]+)'
_CREATE_ROLE = re.compile(rf"^CREATE ROLE ({_NAME});$")
_ALTER_ROLE = re.compile(rf"^ALTER ROLE ({_NAME}) ")
_TABLESPACE = re.compile(r"^(CREATE|ALTER|COMMENT ON|GRANT .* ON) TABLESPACE ", re.IGNORECASE)
_OWNER = re.compile(rf"\bOWNER TO ({_NAME});", re.MULTILINE)
_GRANTEES = re.compile(
    rf"^(?:GRANT|REVOKE)\b[^;]*?\b(?:TO|FROM) ({_NAME}(?:\s*,\s*{_NAME})*)"
    rf"(?: WITH (?:GRANT|ADMIN|INHERIT|SET) OPTION| WITH \w+ (?:TRUE|FALSE)| GRANTED BY {_NAME}| CASCADE)*;$",
    re.MULTILINE,
)
_FOR_ROLE = re.compile(rf"\bFOR ROLE ({_NAME}(?:\s*,\s*{_NAME})*)")
_NOT_ROLES = {"PUBLIC", "CURRENT_USER", "SESSION_USER", "CURRENT_ROLE", "-"}


def unquote(name: str) -> str:
    return name[1:-1].replace('""', '"') if name.startswith('"') else name


def _names(listed: str) -> set[str]:
    return {unquote(part.strip()) for part in re.findall(_NAME, listed)}


def referenced_roles(sql: str) -> set[str]:
    """The roles a schema script names: owners, grantees and default-privilege roles."""
    roles = {unquote(name) for name in _OWNER.findall(sql)}
    for listed in _GRANTEES.findall(sql) + _FOR_ROLE.findall(sql):
        roles |= _names(listed)
    return {role for role in roles if role.upper() not in _NOT_ROLES and not role.startswith("pg_")}


def main_owner(sql: str) -> str | None:
    """The role that owns most of a schema script's objects: the source database's owner, as a rule."""
    owners = [unquote(name) for name in _OWNER.findall(sql)]
    owners = [o for o in owners if o.upper() not in _NOT_ROLES and not o.startswith("pg_")]
    return max(sorted(set(owners)), key=owners.count) if owners else None


@dataclass
class GlobalsOutcome:
    created: list[str] = field(default_factory=list)
    left_alone: list[str] = field(default_factory=list)  # existing roles whose attributes were kept
    skipped: list[str] = field(default_factory=list)  # statements this server cannot take (tablespaces)


def statements(sql: str) -> list[str]:
    """The statements of a ``pg_dumpall --globals-only`` script (comments and meta-commands dropped)."""
    found: list[str] = []
    pending: list[str] = []
    for line in sql.splitlines():
        if not pending and (not line.strip() or line.startswith(("--", "\\"))):
            continue
        pending.append(line)
        if line.rstrip().endswith(";"):
            found.append("\n".join(pending))
            pending = []
    if pending:
        raise RestoreError(f"the backup's roles end inside a statement: {' '.join(pending)[:200]!r}")
    return found


_PRIVILEGED = re.compile(r"\b(SUPERUSER|REPLICATION|BYPASSRLS)\b")


def privileged_roles(sql: str) -> dict[str, list[str]]:
    """The roles of a globals script given attributes only a superuser may grant, with those attributes."""
    found: dict[str, list[str]] = {}
    for statement in statements(sql):
        alter = _ALTER_ROLE.match(statement)
        if alter:
            attributes = _PRIVILEGED.findall(statement.split(" WITH ", 1)[-1])
            if attributes:
                found.setdefault(unquote(alter.group(1)), []).extend(attributes)
    return found


_DEFAULT_PRIVILEGED = re.compile(r" (NOSUPERUSER|NOREPLICATION|NOBYPASSRLS)\b")
_GRANTED_BY = re.compile(rf" GRANTED BY {_NAME}(?=[ ;])")


def for_a_role_without_superuser(statement: str) -> str:
    """A globals statement as a role with CREATEROLE that is no superuser may run it: ``ALTER ROLE``
    without ``NOSUPERUSER``, ``NOREPLICATION`` and ``NOBYPASSRLS`` (a new role has them anyway, and
    only a superuser may name them), and a ``GRANT`` without ``GRANTED BY`` (only a superuser may
    grant in another role's name; the restoring role is the grantor)."""
    if _ALTER_ROLE.match(statement):
        return _DEFAULT_PRIVILEGED.sub("", statement)
    if statement.startswith("GRANT "):
        return _GRANTED_BY.sub("", statement)
    return statement


def apply_globals(conn: Any, sql: str, *, alter_existing: bool) -> GlobalsOutcome:
    """Create the backup's roles in ``conn``'s server, with their attributes, settings and memberships.

    The role ``conn`` is logged in as is never altered. Roles that already exist keep their
    attributes unless ``alter_existing`` (a drill's fresh scratch server; a real recovery into a
    server the operator named leaves its roles as they are). Tablespaces are skipped: their
    directories belong to the source's machine.
    """
    me, superuser = conn.execute(
        "SELECT current_user, usesuper FROM pg_user WHERE usename = current_user"
    ).fetchone()
    existing = {row[0] for row in conn.execute("SELECT rolname FROM pg_roles").fetchall()}
    outcome = GlobalsOutcome()
    for statement in statements(sql):
        create, alter = _CREATE_ROLE.match(statement), _ALTER_ROLE.match(statement)
        if create and unquote(create.group(1)) in existing:
            continue
        if alter:
            role = unquote(alter.group(1))
            if role == me or (role in existing and not alter_existing):
                if role != me and role not in outcome.left_alone:
                    outcome.left_alone.append(role)
                continue
        if _TABLESPACE.match(statement):
            outcome.skipped.append(statement)
            continue
        if not superuser:
            statement = for_a_role_without_superuser(statement)
        try:
            conn.execute(statement)
        except Exception as exc:
            message = " ".join(str(exc).split())
            raise RestoreError(f"creating the backup's roles failed at {statement!r}: {message}") from None
        if create:
            outcome.created.append(unquote(create.group(1)))
    return outcome


def ensure_roles(conn: Any, roles: set[str]) -> list[str]:
    """Create each of ``roles`` the server lacks, ``NOLOGIN``; the names of those created."""
    existing = {row[0] for row in conn.execute("SELECT rolname FROM pg_roles").fetchall()}
    created = []
    for role in sorted(roles - existing):
        conn.execute(f"CREATE ROLE {quote_ident(role)} NOLOGIN")
        created.append(role)
    return created


def join_roles_to_restore_as(conn: Any, referenced: set[str]) -> list[str]:
    """For a restoring role that is no superuser: membership in each role the archive names that it
    is not already in, which ``ALTER ... OWNER TO`` needs (PostgreSQL lets a CREATEROLE role grant
    it); the roles joined. A superuser needs none."""
    me, superuser = conn.execute(
        "SELECT current_user, usesuper FROM pg_user WHERE usename = current_user"
    ).fetchone()
    if superuser:
        return []
    joined = []
    for role in sorted(referenced - {me}):
        member = conn.execute(
            "SELECT pg_has_role(current_user, oid, 'USAGE') FROM pg_roles WHERE rolname = %s", (role,)
        ).fetchone()
        if member is not None and not member[0]:
            conn.execute(f"GRANT {quote_ident(role)} TO {quote_ident(me)}")
            joined.append(role)
    return joined


@dataclass(frozen=True)
class PreparedRoles:
    """What :func:`prepare` did: roles from the globals, roles assumed (created NOLOGIN), warnings."""

    from_globals: list[str]
    assumed: list[str]
    warnings: list[str]


def prepare(
    conn: Any, referenced: set[str], globals_sql: bytes | None, *, alter_existing: bool
) -> PreparedRoles:
    """The backup's globals, then ``NOLOGIN`` roles for whatever the archive names and still lacks."""
    outcome = GlobalsOutcome()
    if globals_sql is not None:
        outcome = apply_globals(conn, globals_sql.decode(), alter_existing=alter_existing)
    assumed = ensure_roles(conn, referenced)
    joined = join_roles_to_restore_as(conn, referenced)
    warnings = []
    if joined:
        warnings.append(
            "the restoring role is no superuser: it was made a member of the roles the backup's objects "
            f"belong to, so it may give them their owners: {', '.join(joined)}"
        )
    if assumed:
        source = "its stored roles lack" if globals_sql is not None else "it stored no roles (no globals)"
        warnings.append(
            f"the backup names roles that {source}; created NOLOGIN for the restore: {', '.join(assumed)}"
        )
    if outcome.skipped:
        warnings.append(
            f"skipped {len(outcome.skipped)} tablespace statement(s) of the backup's roles: tablespaces "
            "belong to the source's machine"
        )
    if outcome.left_alone:
        warnings.append(f"roles that already existed kept their attributes: {', '.join(outcome.left_alone)}")
    return PreparedRoles(outcome.created, assumed, warnings)
