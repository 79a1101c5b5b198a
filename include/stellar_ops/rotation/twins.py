"""PostgreSQL's password rotated with no failed login: two twin login roles under one group role.

PostgreSQL holds one password per role, so a role's password cannot change without a moment when
some consumer holds the wrong one. The proven pattern (AWS Secrets Manager's multi-user rotation,
Vault's static roles): the application's role (``stellar``, which owns the objects and holds the
grants) becomes a group, and two login roles ``stellar_blue`` and ``stellar_green`` are its
members. Each twin INHERITs the group's privileges and logs in with ``role`` set to the group
(``ALTER ROLE twin SET role = 'stellar'``), so what it creates belongs to the group and the two are
interchangeable; the group's REPLICATION attribute, which is not inherited, is copied to them.

A rotation sets a new password on the idle twin (:func:`idle_twin`), tests it (:func:`accepts`),
switches the consumers to it, waits until the other twin has no sessions (:func:`sessions`), then
disables the other twin (:func:`disable`). Until that last step both log in: that is the rollback.
The first rotation switches the consumers off the group's own login, which
:func:`retire_group_login` then ends.

A password reaches the server only as a SCRAM verifier computed here, inside a transaction that
keeps even the verifier out of the statement log and pg_stat_statements. Every function is
idempotent: a rotation resumed after a crash between any two steps runs the step again.
Secrets appear nowhere but in the verifier: messages name a secret by its fingerprint.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from stellar_ops.core.errors import StellarOpsError
from stellar_ops.postgres.target import PgTarget, clean_error, connect, server_version_num
from stellar_ops.rotation.credentials import Acceptance, Credential, CredentialError, generate_secret

Say = Callable[[str], None]
COLOURS = ("blue", "green")


class TwinError(StellarOpsError):
    """The twin login roles cannot be set up or changed as asked; the message names the role."""


@dataclass(frozen=True)
class Twin:
    """One login twin as the server sees it."""

    name: str
    exists: bool
    can_login: bool
    sessions: int
    valid_until: datetime | None  # rolvaliduntil: None is no expiry


@dataclass(frozen=True)
class TwinState:
    """The group role and its two twins: who can log in and who is logged in."""

    app_role: str
    group_can_login: bool
    group_sessions: int
    twins: tuple[Twin, Twin]  # blue, green

    def twin(self, name: str) -> Twin:
        for twin in self.twins:
            if twin.name == name:
                return twin
        raise TwinError(f"{name!r} is not a twin of {self.app_role!r} ({', '.join(self.names)})")

    @property
    def names(self) -> tuple[str, str]:
        return (self.twins[0].name, self.twins[1].name)

    @property
    def ready(self) -> bool:
        return all(t.exists for t in self.twins)

    @property
    def logins(self) -> list[str]:
        """The roles a consumer can log in as now: the group (until retired), then the twins."""
        found = [self.app_role] if self.group_can_login else []
        return found + [t.name for t in self.twins if t.can_login]


def twin_names(app_role: str) -> tuple[str, str]:
    """``<app>_blue`` and ``<app>_green``."""
    return (f"{app_role}_{COLOURS[0]}", f"{app_role}_{COLOURS[1]}")


def idle_twin(state: TwinState) -> str:
    """The twin to give the next password: the one no consumer can be using.

    Right after setup both twins are disabled and the consumers use the group's own login: blue.
    Between rotations exactly one role logs in (one twin): the other twin. While two roles log in
    a rotation is under way, and only its own record knows which twin it set, so this refuses
    rather than guess: a resumed rotation uses the twin it recorded, never this.
    """
    if not state.ready:
        raise TwinError(
            f"the twins of {state.app_role!r} are not set up: run `stellar-ops secrets setup-twins`"
        )
    logins = state.logins
    if len(logins) > 1:
        raise TwinError(
            f"{' and '.join(logins)} can all log in: a rotation of {state.app_role!r} is under way; finish it "
            "(disable the old twin, or retire the group's login) or resume it with the twin it recorded"
        )
    if not logins:
        blue, green = state.names
        raise TwinError(
            f"neither {blue}, {green} nor {state.app_role} can log in: no consumer can connect; "
            "set a password on one twin (set_password) before anything else"
        )
    blue, green = state.names
    return green if logins == [blue] else blue


def _twin_of(app_role: str, twin: str) -> None:
    if twin not in twin_names(app_role):
        raise TwinError(f"{twin!r} is not a twin of {app_role!r} ({', '.join(twin_names(app_role))})")


def _ident(name: str) -> Any:
    from psycopg import sql

    return sql.Identifier(name)


def _role(conn: Any, name: str) -> dict[str, Any] | None:
    row = conn.execute(
        "SELECT oid, rolcanlogin, rolinherit, rolreplication, rolsuper, rolvaliduntil "
        "FROM pg_roles WHERE rolname = %s",
        (name,),
    ).fetchone()
    if row is None:
        return None
    keys = ("oid", "login", "inherit", "replication", "super", "valid_until")
    return dict(zip(keys, row, strict=True))


def _sessions(conn: Any, role: str) -> int:
    row = conn.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE usename = %s AND pid <> pg_backend_pid()", (role,)
    ).fetchone()
    return int(row[0])


def _set_verifier(conn: Any, role: str, password: str, *, login: bool) -> None:
    """``ALTER ROLE role [NO]LOGIN PASSWORD '<SCRAM verifier>'``, in a transaction whose statement
    is in no log: the plaintext never leaves this process, and the verifier stays off the server."""
    from psycopg import sql

    verifier = conn.pgconn.encrypt_password(password.encode(), role.encode(), b"scram-sha-256").decode()
    with conn.transaction():
        # every way a statement's text reaches the server log or a view, for this transaction only
        conn.execute("SET LOCAL log_statement = 'none'")
        conn.execute("SET LOCAL log_min_duration_statement = -1")
        conn.execute("SET LOCAL log_min_error_statement = 'panic'")
        if conn.execute(
            "SELECT 1 FROM pg_settings WHERE name = 'pg_stat_statements.track_utility'"
        ).fetchone():
            conn.execute("SET LOCAL pg_stat_statements.track_utility = off")
        conn.execute(
            sql.SQL("ALTER ROLE {} {} PASSWORD {}").format(
                _ident(role), sql.SQL("LOGIN" if login else "NOLOGIN"), sql.Literal(verifier)
            )
        )


def _admin(conn: Any, admin: PgTarget) -> None:
    row = conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user").fetchone()
    if not row or not row[0]:
        raise TwinError(f"{admin.describe()} is not a superuser: the twin roles need one to manage them")


def _load_state(conn: Any, app_role: str) -> TwinState:
    group = _role(conn, app_role)
    if group is None:
        raise TwinError(f"the application role {app_role!r} does not exist")
    twins = []
    for name in twin_names(app_role):
        role = _role(conn, name)
        twins.append(
            Twin(
                name=name,
                exists=role is not None,
                can_login=bool(role and role["login"]),
                sessions=_sessions(conn, name) if role else 0,
                valid_until=role["valid_until"] if role else None,
            )
        )
    return TwinState(app_role, bool(group["login"]), _sessions(conn, app_role), (twins[0], twins[1]))


def state(admin: PgTarget, app_role: str) -> TwinState:
    """The group role and its twins now."""
    with connect(admin) as conn:
        return _load_state(conn, app_role)


def sessions(admin: PgTarget, role: str) -> int:
    """The sessions logged in as ``role`` (``pg_stat_activity.usename``, every database, replication
    connections included), not counting this one."""
    with connect(admin) as conn:
        return _sessions(conn, role)


def setup_twins(admin: PgTarget, app_role: str, say: Say) -> TwinState:
    """Make ``app_role`` the group of two disabled login twins; safe to run again at any time.

    Creates ``<app>_blue`` and ``<app>_green`` NOLOGIN with random passwords, members of the group
    (INHERIT) with ``role`` set to it and its REPLICATION attribute. A twin that already exists
    keeps its LOGIN and password (a rerun never disables the twin in use); what was granted to it
    directly (memberships, privileges, objects it owns, in every database) moves to the group, so
    the twins stay interchangeable. The group keeps its LOGIN: :func:`retire_group_login` ends it
    once the first rotation has switched the consumers off it.
    """
    with connect(admin) as conn:
        _admin(conn, admin)
        group = _role(conn, app_role)
        if group is None:
            raise TwinError(
                f"the application role {app_role!r} does not exist: name the role that owns the objects"
            )
        if group["super"]:
            raise TwinError(
                f"{app_role!r} is a superuser: its twins would be too (a SET ROLE to it); give the "
                "application a role of its own first"
            )
        if app_role == admin.user:
            raise TwinError(
                f"{app_role!r} is the admin connection's own role: use another superuser to manage it"
            )
        for name in twin_names(app_role):
            _setup_one(conn, admin, app_role, name, bool(group["replication"]), say)
        _warn_about_hba(conn, app_role, say)
        return _load_state(conn, app_role)


def _setup_one(conn: Any, admin: PgTarget, app_role: str, name: str, replication: bool, say: Say) -> None:
    from psycopg import sql

    role = _role(conn, name)
    if role is None:
        conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN INHERIT").format(_ident(name)))
        _set_verifier(conn, name, generate_secret(), login=False)
        say(f"created {name} (NOLOGIN, a random password)")
        role = _role(conn, name)
        assert role is not None
    if not role["inherit"]:
        conn.execute(sql.SQL("ALTER ROLE {} INHERIT").format(_ident(name)))
        say(f"{name}: now INHERIT")
    if role["replication"] != replication:
        attribute = "REPLICATION" if replication else "NOREPLICATION"
        conn.execute(sql.SQL("ALTER ROLE {} {}").format(_ident(name), sql.SQL(attribute)))
        say(f"{name}: now {attribute}, as {app_role}")
    member = conn.execute("SELECT pg_has_role(%s, %s, 'MEMBER')", (name, app_role)).fetchone()[0]
    if not member:
        inherit = " WITH INHERIT TRUE" if server_version_num(conn) >= 160000 else ""
        conn.execute(sql.SQL("GRANT {} TO {}" + inherit).format(_ident(app_role), _ident(name)))
        say(f"{name}: now a member of {app_role}")
    setting = conn.execute(
        "SELECT 1 FROM pg_db_role_setting s, unnest(s.setconfig) c "
        "WHERE s.setrole = %s AND s.setdatabase = 0 AND c = %s",
        (role["oid"], f"role={app_role}"),
    ).fetchone()
    if not setting:
        conn.execute(sql.SQL("ALTER ROLE {} SET role = {}").format(_ident(name), sql.Literal(app_role)))
        say(f"{name}: its sessions now act as {app_role} (SET role), so what it creates is {app_role}'s")
    _move_memberships(conn, app_role, name, say)
    _move_objects(conn, admin, app_role, name, say)


def _move_memberships(conn: Any, app_role: str, name: str, say: Say) -> None:
    from psycopg import sql

    rows = conn.execute(
        "SELECT g.rolname, m.admin_option FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid "
        "WHERE m.member = (SELECT oid FROM pg_roles WHERE rolname = %s) AND g.rolname <> %s",
        (name, app_role),
    ).fetchall()
    for granted, admin_option in rows:
        held = conn.execute("SELECT pg_has_role(%s, %s, 'MEMBER')", (app_role, granted)).fetchone()[0]
        if not held:
            suffix = " WITH ADMIN OPTION" if admin_option else ""
            conn.execute(sql.SQL("GRANT {} TO {}" + suffix).format(_ident(granted), _ident(app_role)))
        conn.execute(sql.SQL("REVOKE {} FROM {}").format(_ident(granted), _ident(name)))
        say(f"{name}: membership in {granted} moved to {app_role}" + ("" if not held else " (it had it)"))


# pg_shdepend's classes whose privileges move; anything else granted to a twin is refused by name
_ACL_QUERIES = {
    "pg_class": (
        "SELECT CASE c.relkind WHEN 'S' THEN 'SEQUENCE' ELSE 'TABLE' END, c.oid::regclass::text, "
        "a.privilege_type, a.is_grantable FROM pg_class c, aclexplode(c.relacl) a "
        "WHERE c.oid = %(objid)s AND a.grantee = %(role)s"
    ),
    "pg_attribute": (
        "SELECT 'COLUMN', format('%%s (%%I)', c.oid::regclass, att.attname), a.privilege_type, a.is_grantable "
        "FROM pg_class c JOIN pg_attribute att ON att.attrelid = c.oid, aclexplode(att.attacl) a "
        "WHERE c.oid = %(objid)s AND att.attnum = %(subid)s AND a.grantee = %(role)s"
    ),
    "pg_namespace": (
        "SELECT 'SCHEMA', quote_ident(n.nspname), a.privilege_type, a.is_grantable "
        "FROM pg_namespace n, aclexplode(n.nspacl) a WHERE n.oid = %(objid)s AND a.grantee = %(role)s"
    ),
    "pg_proc": (
        "SELECT 'ROUTINE', p.oid::regprocedure::text, a.privilege_type, a.is_grantable "
        "FROM pg_proc p, aclexplode(p.proacl) a WHERE p.oid = %(objid)s AND a.grantee = %(role)s"
    ),
    "pg_database": (
        "SELECT 'DATABASE', quote_ident(d.datname), a.privilege_type, a.is_grantable "
        "FROM pg_database d, aclexplode(d.datacl) a WHERE d.oid = %(objid)s AND a.grantee = %(role)s"
    ),
}


def _move_objects(conn: Any, admin: PgTarget, app_role: str, name: str, say: Say) -> None:
    """Privileges granted to the twin and objects it owns, in every database, move to the group."""
    where = (
        "FROM pg_shdepend sd LEFT JOIN pg_database d ON d.oid = sd.dbid "
        "WHERE sd.refclassid = 'pg_authid'::regclass AND sd.refobjid = (SELECT oid FROM pg_roles WHERE rolname = %s)"
    )
    policies = conn.execute(f"SELECT DISTINCT d.datname {where} AND sd.deptype = 'r'", (name,)).fetchall()
    if policies:
        # DROP OWNED would silently take the twin out of those policies: a person moves them
        raise TwinError(
            f"{name} is named in row-level security policies in database(s) "
            f"{', '.join(sorted(str(r[0]) for r in policies))}: name {app_role} in them instead, then run setup again"
        )
    rows = conn.execute(
        f"SELECT DISTINCT coalesce(d.datname, ''), sd.dbid {where} AND sd.deptype IN ('o', 'a')", (name,)
    ).fetchall()
    databases = sorted({db for db, dbid in rows if dbid != 0})
    if any(dbid == 0 for _, dbid in rows):
        # shared objects (a database's ACL or owner) are seen from any database: handle them here
        databases = [admin.dbname, *[d for d in databases if d != admin.dbname]]
    for dbname in databases:
        with connect(admin.with_dbname(dbname)) as db:
            _move_in_database(db, dbname, app_role, name, say)


def _move_in_database(conn: Any, dbname: str, app_role: str, name: str, say: Say) -> None:
    from psycopg import sql

    role_oid = conn.execute("SELECT oid FROM pg_roles WHERE rolname = %s", (name,)).fetchone()[0]
    deps = conn.execute(
        "SELECT sd.classid::regclass::text, sd.objid, sd.objsubid FROM pg_shdepend sd "
        "WHERE sd.refobjid = %s AND sd.deptype = 'a' "
        "AND sd.dbid IN (0, (SELECT oid FROM pg_database WHERE datname = current_database()))",
        (role_oid,),
    ).fetchall()
    grants: list[tuple[str, str, str, bool]] = []
    for classname, objid, subid in deps:
        kind = "pg_attribute" if classname == "pg_class" and subid else classname
        query = _ACL_QUERIES.get(kind)
        if query is None:
            raise TwinError(
                f"{name} holds privileges on a {classname} object (oid {objid}) in database {dbname}: "
                f"grant them to {app_role} and revoke them from {name} by hand, then run setup again"
            )
        grants += conn.execute(query, {"objid": objid, "subid": subid, "role": role_oid}).fetchall()
    for kind, obj, privilege, grantable in grants:
        option = " WITH GRANT OPTION" if grantable else ""
        if kind == "COLUMN":
            table, column = obj.split(" ", 1)
            statement = f"GRANT {privilege} {column} ON TABLE {table} TO {{}}{option}"
        else:
            statement = f"GRANT {privilege} ON {kind} {obj} TO {{}}{option}"
        conn.execute(sql.SQL(statement).format(_ident(app_role)))  # type: ignore[arg-type]
        say(f"{name}: {privilege} on {kind.lower()} {obj} (database {dbname}) moved to {app_role}")
    owned = conn.execute(
        "SELECT count(*) FROM pg_shdepend WHERE refobjid = %s AND deptype = 'o' "
        "AND dbid IN (0, (SELECT oid FROM pg_database WHERE datname = current_database()))",
        (role_oid,),
    ).fetchone()[0]
    if owned:
        conn.execute(sql.SQL("REASSIGN OWNED BY {} TO {}").format(_ident(name), _ident(app_role)))
        say(f"{name}: {owned} object(s) it owned in database {dbname} now belong to {app_role}")
    if grants:
        # every privilege left is one just granted to the group (no owned objects remain to drop)
        conn.execute(sql.SQL("DROP OWNED BY {}").format(_ident(name)))


def _warn_about_hba(conn: Any, app_role: str, say: Say) -> None:
    """A pg_hba.conf rule naming the app role alone admits neither twin: say so (``+group`` does)."""
    try:
        rows = conn.execute(
            "SELECT line_number, user_name FROM pg_hba_file_rules WHERE error IS NULL AND %s = ANY(user_name)",
            (app_role,),
        ).fetchall()
    except Exception:  # noqa: BLE001 - the view is unreadable on managed servers: nothing to check
        return
    for line, users in rows:
        say(
            f"pg_hba.conf line {line} names {app_role} ({', '.join(users)}): its twins log in only through "
            f"a rule for +{app_role} or their own names; add one before the first rotation"
        )


def set_password(admin: PgTarget, twin: str, password: str) -> bool:
    """Give ``twin`` LOGIN and ``password``, sent only as a SCRAM verifier computed here.

    Idempotent: when ``twin`` already logs in with ``password`` nothing changes (False; True when
    it set it). Never rotates the twin in use: a twin that logs in with another password is
    refused by name (the rollback of an abandoned rotation disables it first).
    """
    app_role = _app_of(twin)
    with connect(admin) as conn:
        _admin(conn, admin)
        role = _role(conn, twin)
        if role is None:
            raise TwinError(f"the twin role {twin!r} does not exist: run `stellar-ops secrets setup-twins`")
        _twin_of(app_role, twin)
        holds = _holds(conn, twin, password)
        if role["login"] and holds:
            return False
        if role["login"]:
            raise TwinError(
                f"{twin} logs in with another password ({_sessions(conn, twin)} session(s)): it is the twin "
                f"in use, or a rotation left it enabled; rotate the other twin, or disable {twin} first"
            )
        _set_verifier(conn, twin, password, login=True)
        return True


def holds_password(admin: PgTarget, role: str, password: str) -> bool:
    """Whether ``role``'s SCRAM verifier is ``password``'s, checked here without a login (so also
    for a NOLOGIN role): how a resumed step knows it was done."""
    with connect(admin) as conn:
        _admin(conn, admin)
        return _holds(conn, role, password)


def _holds(conn: Any, role: str, password: str) -> bool:
    row = conn.execute("SELECT rolpassword FROM pg_authid WHERE rolname = %s", (role,)).fetchone()
    return bool(row and row[0] and scram_matches(row[0], password))


def scram_matches(verifier: str, password: str) -> bool:
    """Whether ``SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`` (RFC 5802, RFC 7677)
    is ``password``'s. The passwords made here are ASCII, which SASLprep leaves as they are."""
    match = re.fullmatch(r"SCRAM-SHA-256\$(\d+):([^$]+)\$([^:]+):(.+)", verifier)
    if match is None:
        return False
    iterations, salt, stored_key, server_key = match.groups()
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), base64.b64decode(salt), int(iterations))
    client_key = hmac.new(salted, b"Client Key", "sha256").digest()
    ours_stored = base64.b64encode(hashlib.sha256(client_key).digest()).decode()
    ours_server = base64.b64encode(hmac.new(salted, b"Server Key", "sha256").digest()).decode()
    return hmac.compare_digest(ours_stored, stored_key) and hmac.compare_digest(ours_server, server_key)


def disable(admin: PgTarget, twin: str, *, allow_sessions: bool = False) -> None:
    """NOLOGIN and a random password for ``twin``: the end of a rotation, after which only the new
    twin logs in (the rollback before it: leave both). Refuses while ``twin`` has sessions (a
    consumer still on it: wait, or ``allow_sessions`` which leaves them running) and when no other
    login would remain. Idempotent."""
    app_role = _app_of(twin)
    with connect(admin) as conn:
        _admin(conn, admin)
        current = _load_state(conn, app_role)
        if not current.twin(twin).exists:
            raise TwinError(f"the twin role {twin!r} does not exist")
        others = [r for r in current.logins if r != twin]
        if current.twin(twin).can_login and not others:
            raise TwinError(
                f"{twin} is the only role of {app_role!r} that can log in: disabling it would lock every "
                "consumer out; set the other twin's password first"
            )
        count = _sessions(conn, twin)
        if count and not allow_sessions:
            raise TwinError(f"{twin} still has {count} session(s) (pg_stat_activity): a consumer uses it")
        _set_verifier(conn, twin, generate_secret(), login=False)


def retire_group_login(admin: PgTarget, app_role: str, *, allow_sessions: bool = False) -> None:
    """NOLOGIN and a random password for the group itself, once the consumers log in as a twin.

    Refuses while sessions log in as ``app_role`` or no twin can log in. Idempotent."""
    with connect(admin) as conn:
        _admin(conn, admin)
        if app_role == admin.user:
            raise TwinError(f"{app_role!r} is the admin connection's own role: it keeps its login")
        current = _load_state(conn, app_role)
        if not current.ready:
            raise TwinError(f"the twins of {app_role!r} are not set up")
        if not any(t.can_login for t in current.twins):
            raise TwinError(
                f"no twin of {app_role!r} can log in: retiring its own login would lock every consumer out"
            )
        count = _sessions(conn, app_role)
        if count and not allow_sessions:
            raise TwinError(f"{app_role} still has {count} session(s) (pg_stat_activity): a consumer uses it")
        if current.group_can_login:
            _set_verifier(conn, app_role, generate_secret(), login=False)


def accepts(target: PgTarget, credential: Credential) -> Acceptance:
    """A real login to ``target``'s database as ``credential``, and a query: whether it worked and,
    if not, what the server said (without any secret)."""
    import psycopg

    login = replace(target, user=credential.identity, password=credential.secret, passfile=None).bounded(10)
    try:
        with connect(login) as conn:
            row = conn.execute("SELECT session_user, current_user").fetchone()
    except (StellarOpsError, psycopg.Error) as exc:
        text = clean_error(str(exc), login).replace(credential.secret, "***")
        return Acceptance(False, f"{credential} refused: {text}")
    return Acceptance(True, f"{credential} logged in (session {row[0]}, acting as {row[1]})")


def require_accepted(target: PgTarget, credential: Credential) -> None:
    """:func:`accepts`, as an error when the login fails."""
    result = accepts(target, credential)
    if not result:
        raise CredentialError(result.reason)


def _app_of(twin: str) -> str:
    for colour in COLOURS:
        if twin.endswith(f"_{colour}") and len(twin) > len(colour) + 1:
            return twin[: -len(colour) - 1]
    raise TwinError(f"{twin!r} is not a twin role (<app>_blue or <app>_green)")
