"""PostgreSQL targets and connections.

A :class:`PgTarget` carries every libpq connection setting of its source (an Airflow connection's
extras, ``DATABASE_URL``'s query string) to both kinds of client: psycopg gets them as keyword
arguments (:meth:`PgTarget.connect_kwargs`), and the client programs (pg_dump, pg_restore, psql)
as their environment variables, with the settings that have none (``sslpassword``,
``keepalives_idle``...) in a libpq service file written 0600 in a private directory and removed
when the program is done (:meth:`PgTarget.client_session`). Secrets (the password and
``sslpassword``) never reach argv, and ``PgTarget``'s repr hides them.

Every session names its procedure and run in ``application_name`` (``stellar-ops/db_backup/<run
id>``, see :func:`session_name`), so ``pg_stat_activity`` tells whose it is.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from stellar_ops.core.errors import ConfigError, PrerequisiteError, StellarOpsError

# The libpq connection settings a target carries besides host, port, user, dbname, password and
# passfile (https://www.postgresql.org/docs/current/libpq-connect.html#LIBPQ-PARAMKEYWORDS), each
# with its environment variable (libpq-envars.html); None: libpq has none, so client programs read
# it from a service file. ``service`` and ``replication`` are left out on purpose: a target names
# its server itself, and a dump never runs over a replication connection.
LIBPQ_SETTINGS: dict[str, str | None] = {
    "hostaddr": "PGHOSTADDR",
    "channel_binding": "PGCHANNELBINDING",
    "require_auth": "PGREQUIREAUTH",
    "connect_timeout": "PGCONNECT_TIMEOUT",
    "client_encoding": "PGCLIENTENCODING",
    "options": "PGOPTIONS",
    "application_name": "PGAPPNAME",
    "fallback_application_name": None,
    "keepalives": None,
    "keepalives_idle": None,
    "keepalives_interval": None,
    "keepalives_count": None,
    "tcp_user_timeout": None,
    "gssencmode": "PGGSSENCMODE",
    "sslmode": "PGSSLMODE",
    "sslnegotiation": "PGSSLNEGOTIATION",
    "sslcompression": "PGSSLCOMPRESSION",
    "sslcert": "PGSSLCERT",
    "sslkey": "PGSSLKEY",
    "sslpassword": None,
    "sslcertmode": "PGSSLCERTMODE",
    "sslrootcert": "PGSSLROOTCERT",
    "sslcrl": "PGSSLCRL",
    "sslcrldir": "PGSSLCRLDIR",
    "sslsni": "PGSSLSNI",
    "requirepeer": "PGREQUIREPEER",
    "ssl_min_protocol_version": "PGSSLMINPROTOCOLVERSION",
    "ssl_max_protocol_version": "PGSSLMAXPROTOCOLVERSION",
    "min_protocol_version": "PGMINPROTOCOLVERSION",
    "max_protocol_version": "PGMAXPROTOCOLVERSION",
    "krbsrvname": "PGKRBSRVNAME",
    "gsslib": "PGGSSLIB",
    "gssdelegation": "PGGSSDELEGATION",
    "target_session_attrs": "PGTARGETSESSIONATTRS",
    "load_balance_hosts": "PGLOADBALANCEHOSTS",
}
SECRET_SETTINGS = frozenset({"sslpassword"})
# Extras PostgresHook reads itself and never hands the driver (its ``ignored_extra_options``).
HOOK_EXTRAS = frozenset(
    {
        "iam",
        "redshift",
        "redshift-serverless",
        "cursor",
        "cluster-identifier",
        "workgroup-name",
        "aws_conn_id",
        "sqlalchemy_scheme",
        "sqlalchemy_query",
        "azure_conn_id",
    }
)
# Set by the connection's own fields (or the URL's parts), never by an extra.
_FIELDS = {"host": "host", "port": "port", "user": "login", "dbname": "schema", "password": "password"}
# Files libpq reads: checked before connecting, so a wrong path is named rather than ignored
# (libpq goes on without a client certificate whose file is missing).
_FILE_SETTINGS = ("sslrootcert", "sslcert", "sslkey", "sslcrl", "sslcrldir")
DEFAULT_APPLICATION_NAME = "stellar-ops"
APPLICATION_NAME_BYTES = 63  # NAMEDATALEN - 1: the server keeps no more
SERVICE_NAME = "stellar-ops"


def libpq_settings(raw: Mapping[str, Any], *, source: str) -> dict[str, str]:
    """The libpq settings among ``raw`` (connection extras, URL query parameters) as strings.

    PostgresHook's own extras are dropped, as the hook drops them; anything else that is not a
    libpq setting is refused, as psycopg would refuse it (a misspelt ``sslrootcert`` must not turn
    into an unverified connection). ``source`` names where ``raw`` came from, for the message.
    """
    settings: dict[str, str] = {}
    for name, value in raw.items():
        if name in HOOK_EXTRAS or value is None:
            continue
        if name in _FIELDS:
            raise ConfigError(
                f"{source}: {name!r} is not a setting: give it as the connection's {_FIELDS[name]} "
                "(in a URL, its own part)"
            )
        if name not in LIBPQ_SETTINGS and name != "passfile":
            raise ConfigError(
                f"{source}: {name!r} is not a libpq connection setting; supported: "
                f"{', '.join(sorted([*LIBPQ_SETTINGS, 'passfile']))}"
            )
        if isinstance(value, bool):
            text = "1" if value else "0"
        elif isinstance(value, int | float | str):
            text = str(value)
        else:
            raise ConfigError(f"{source}: {name} must be a string or a number, got {type(value).__name__}")
        settings[name] = text
    return settings


def session_name(prefix: str | None, procedure: str, run_id: str | None) -> str:
    """``<prefix>/<procedure>/<run id>`` as the server shows it: printable ASCII, at most 63 bytes.

    ``prefix`` is the connection's own ``application_name``, or ``stellar-ops``.
    """
    parts = [prefix or DEFAULT_APPLICATION_NAME, procedure, *([run_id] if run_id else [])]
    return _server_visible("/".join(parts))


def _server_visible(name: str) -> str:
    # The server replaces what is not printable ASCII and cuts at NAMEDATALEN - 1 bytes: do the same,
    # so what is asked for is what pg_stat_activity shows.
    return re.sub(r"[^\x20-\x7e]", "?", name)[:APPLICATION_NAME_BYTES]


@dataclass(frozen=True)
class PgTarget:
    """Where a database is and how to log in to it."""

    host: str
    port: int
    user: str
    dbname: str
    password: str | None = field(default=None, repr=False)
    sslmode: str | None = None
    passfile: str | None = None  # a libpq password file, when the password is not given
    # every other libpq setting (LIBPQ_SETTINGS), as (keyword, value) pairs sorted by keyword
    settings: tuple[tuple[str, str], ...] = ()
    # the procedure and run whose sessions these are: ``<procedure>/<run id>`` (see session_name)
    session: str | None = None

    def __post_init__(self) -> None:
        for name, _ in self.settings:
            if name not in LIBPQ_SETTINGS or name == "sslmode":
                raise ValueError(f"PgTarget.settings holds {name!r}, which is not one of LIBPQ_SETTINGS")

    def __repr__(self) -> str:
        shown = {k: ("***" if k in SECRET_SETTINGS else v) for k, v in self.settings}
        return (
            f"PgTarget(host={self.host!r}, port={self.port!r}, user={self.user!r}, dbname={self.dbname!r}, "
            f"sslmode={self.sslmode!r}, passfile={self.passfile!r}, settings={shown!r}, session={self.session!r})"
        )

    @classmethod
    def build(
        cls,
        *,
        host: str,
        port: int,
        user: str,
        dbname: str,
        password: str | None = None,
        settings: Mapping[str, str] | None = None,
    ) -> PgTarget:
        """A target from its fields and settings as :func:`libpq_settings` returns them."""
        rest = dict(settings or {})
        sslmode = rest.pop("sslmode", None)
        passfile = rest.pop("passfile", None)
        return cls(host, port, user, dbname, password, sslmode, passfile, tuple(sorted(rest.items())))

    @classmethod
    def from_url(cls, url: str, *, source: str = "DATABASE_URL") -> PgTarget:
        """``postgresql://user:password@host:port/db?sslmode=verify-full&sslrootcert=...``: the query
        string takes every libpq setting (``ssl=true`` is libpq's alias for ``sslmode=require``)."""
        parts = urlsplit(url)
        if parts.scheme.split("+")[0] not in ("postgres", "postgresql"):
            raise ConfigError(f"{source} must be a postgresql:// URL, got scheme {parts.scheme!r}")
        dbname = unquote(parts.path.lstrip("/"))
        if not parts.hostname or not dbname or not parts.username:
            raise ConfigError(f"{source} must name a host, a user and a database (postgresql://user@host/db)")
        try:
            port = 5432 if parts.port is None else parts.port
        except ValueError:
            raise ConfigError(f"{source} has an invalid port") from None
        if not 0 < port < 65536:
            raise ConfigError(f"{source} has an invalid port: {port}")
        query: dict[str, str] = {}
        for name, value in parse_qsl(parts.query, keep_blank_values=True):
            if name in query:
                raise ConfigError(f"{source} gives {name!r} twice in its query string")
            query[name] = value
        if "ssl" in query:
            if query.pop("ssl").lower() not in ("true", "1"):
                raise ConfigError(f"{source}: ssl accepts only true (libpq's alias for sslmode=require)")
            query.setdefault("sslmode", "require")
        return cls.build(
            host=parts.hostname,
            port=port,
            user=unquote(parts.username),
            dbname=dbname,
            password=unquote(parts.password) if parts.password is not None else None,
            settings=libpq_settings(query, source=f"{source}'s query string"),
        )

    def setting(self, name: str) -> str | None:
        if name == "sslmode":
            return self.sslmode
        return dict(self.settings).get(name)

    def with_settings(self, **changes: str | None) -> PgTarget:
        """A copy with these settings changed (None removes one)."""
        settings = dict(self.settings)
        sslmode = self.sslmode
        for name, value in changes.items():
            if name == "sslmode":
                sslmode = value
            elif value is None:
                settings.pop(name, None)
            else:
                settings[name] = value
        return replace(self, sslmode=sslmode, settings=tuple(sorted(settings.items())))

    def with_options(self, options: str) -> PgTarget:
        """A copy whose server options (``-c name=value ...``) are the connection's, then these."""
        own = self.setting("options")
        return self.with_settings(options=f"{own} {options}" if own else options)

    def bounded(self, seconds: float) -> PgTarget:
        """A copy whose connecting and each statement give up after ``seconds`` (a probe's session)."""
        probe = self.with_settings(connect_timeout=str(max(1, int(seconds))))
        return probe.with_options(f"-c statement_timeout={int(seconds * 1000)}")

    def with_dbname(self, dbname: str) -> PgTarget:
        return replace(self, dbname=dbname)

    def for_session(self, procedure: str, run_id: str | None) -> PgTarget:
        """A copy whose sessions say they belong to ``procedure``'s run ``run_id``."""
        return replace(self, session="/".join([procedure, *([run_id] if run_id else [])]))

    @property
    def application_name(self) -> str:
        """What ``pg_stat_activity.application_name`` shows for this target's sessions."""
        prefix = self.setting("application_name") or DEFAULT_APPLICATION_NAME
        return _server_visible(f"{prefix}/{self.session}" if self.session else prefix)

    def describe(self) -> str:
        """Where, without the secret: safe for logs and error messages."""
        return f"{self.user}@{self.host}:{self.port}/{self.dbname}"

    def _all_settings(self) -> dict[str, str]:
        settings = {"connect_timeout": "10", **dict(self.settings)}
        settings["application_name"] = self.application_name
        if self.sslmode:
            settings["sslmode"] = self.sslmode
        return settings

    def check_files(self) -> None:
        """Refuse at once a TLS file setting whose file is missing or unreadable, naming it."""
        if self.sslmode == "disable":
            return
        for name in _FILE_SETTINGS:
            path = self.setting(name)
            if not path or (name == "sslrootcert" and path == "system"):
                continue
            resolved = Path(path).expanduser()
            if name == "sslcrldir":
                ok = resolved.is_dir() and os.access(resolved, os.R_OK | os.X_OK)
            else:
                ok = resolved.is_file() and os.access(resolved, os.R_OK)
            if not ok:
                why = "does not exist" if not resolved.exists() else "cannot be read"
                raise ConfigError(f"{name}={path} {why} (PostgreSQL {self.describe()})")

    def client_env(self, base: dict[str, str] | None = None) -> dict[str, str]:
        """Environment for libpq programs: the password travels here, not in argv.

        Only for a target whose settings all have an environment variable; otherwise use
        :meth:`client_session`, which also writes the service file the others need.
        """
        needs_file = self._service_settings()
        if needs_file:
            raise ValueError(
                f"{', '.join(sorted(needs_file))} reach client programs only through a service file: "
                "use PgTarget.client_session()"
            )
        return self._env(base)

    def _service_settings(self) -> dict[str, str]:
        return {k: v for k, v in self._all_settings().items() if LIBPQ_SETTINGS.get(k, "") is None}

    def _env(self, base: dict[str, str] | None) -> dict[str, str]:
        env = dict(os.environ if base is None else base)
        for name in ("PGPASSWORD", "PGSERVICE", "PGSERVICEFILE", "PGPASSFILE", "PGDATABASE", "PGOPTIONS"):
            env.pop(name, None)
        env.update({"PGHOST": self.host, "PGPORT": str(self.port), "PGUSER": self.user})
        env["PGDATABASE"] = self.dbname
        settings = self._all_settings()
        if "PGCONNECT_TIMEOUT" in env and self.setting("connect_timeout") is None:
            del settings["connect_timeout"]  # the environment's own, when the target sets none
        for name, value in settings.items():
            variable = LIBPQ_SETTINGS.get(name)
            if variable is not None:
                env[variable] = value
        if self.password is not None:
            env["PGPASSWORD"] = self.password
        elif self.passfile:
            env["PGPASSFILE"] = self.passfile
        return env

    @contextmanager
    def client_session(self, base: dict[str, str] | None = None) -> Iterator[dict[str, str]]:
        """The environment for libpq programs run inside this block.

        Settings without an environment variable go in a service file (``PGSERVICEFILE`` and
        ``PGSERVICE``) written 0600 in a private directory, removed when the block ends: argv and
        ``/proc/<pid>/environ`` never hold ``sslpassword``.
        """
        self.check_files()
        env = self._env(base)
        service = self._service_settings()
        if not service:
            yield env
            return
        lines = [f"[{SERVICE_NAME}]"]
        for name, value in sorted(service.items()):
            # libpq reads a service file line by line and drops the spaces that end one
            if "\n" in value or "\r" in value or value != value.strip():
                raise ConfigError(
                    f"{name} cannot reach the client programs: a service file value must be one line "
                    "without leading or trailing spaces"
                )
            lines.append(f"{name}={value}")
        directory = tempfile.mkdtemp(prefix="stellar-ops-pgservice-")  # 0700, ours alone
        try:
            path = os.path.join(directory, "pg_service.conf")
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write("\n".join(lines) + "\n")
            env["PGSERVICEFILE"] = path
            env["PGSERVICE"] = SERVICE_NAME
            yield env
        finally:
            shutil.rmtree(directory, ignore_errors=True)

    def connect_kwargs(self) -> dict[str, Any]:
        """psycopg's keyword arguments: every setting, the secrets included (never log them)."""
        kwargs: dict[str, Any] = {
            "host": self.host,
            "port": self.port,
            "user": self.user,
            "dbname": self.dbname,
            **self._all_settings(),
        }
        if self.setting("connect_timeout") is None:
            kwargs["connect_timeout"] = 10
        if self.password is not None:
            kwargs["password"] = self.password
        elif self.passfile:
            kwargs["passfile"] = self.passfile
        return kwargs

    def secrets(self) -> list[str]:
        """The secret values of this target, to scrub from any text shown."""
        found = [self.password] if self.password else []
        return found + [v for k, v in self.settings if k in SECRET_SETTINGS and v]


def clean_error(text: str, target: PgTarget) -> str:
    """One line of a driver's or a program's error text, without the target's secrets."""
    text = " ".join(str(text).split())
    for secret in target.secrets():
        text = text.replace(secret, "***")
    return text


def tls_problem(text: str, target: PgTarget) -> str | None:
    """What a TLS setting of ``target`` has wrong, judged from libpq's (or the server's) error
    text; None when the failure is no TLS misconfiguration (a server down, a network problem)."""
    lowered = text.lower()
    root = target.setting("sslrootcert")
    root_text = f"sslrootcert={root}" if root else "sslrootcert (libpq's default ~/.postgresql/root.crt)"
    cert, key = target.setting("sslcert"), target.setting("sslkey")
    if "does not match host name" in lowered:
        return (
            f"the server's certificate does not name the host {target.host!r} we connect to, which "
            f"sslmode={target.sslmode or 'verify-full'} requires: connect by a name the certificate holds, "
            "or fix its subjectAltName"
        )
    if "certificate verify failed" in lowered or "root certificate file" in lowered:
        return f"the server's certificate is not signed by a CA in {root_text}: point sslrootcert at its CA"
    if "certificate revoked" in lowered or "certificate revocation list" in lowered:
        return f"a certificate is revoked or the CRL cannot be read (sslcrl={target.setting('sslcrl')})"
    if "bad decrypt" in lowered or ("private key file" in lowered and "password" in lowered):
        return f"the private key sslkey={key} cannot be decrypted: check sslpassword"
    if "private key" in lowered or "does not match private key" in lowered:
        return f"the private key sslkey={key} cannot be used: {text[:300]}"
    if "certificate file" in lowered:
        return f"the client certificate sslcert={cert} cannot be used: {text[:300]}"
    if (
        "unknown ca" in lowered
        or "bad certificate" in lowered
        or "certificate required" in lowered
        or "requires a valid client certificate" in lowered
        or "certificate authentication failed" in lowered
    ):
        return (
            f"the server refused the client certificate sslcert={cert} (missing, not signed by a CA it "
            f"trusts, or its CN is not the user {target.user!r})"
        )
    if "server does not support ssl" in lowered:
        return f"the server does not offer TLS, which sslmode={target.sslmode} requires"
    return None


def connection_error(text: str, target: PgTarget) -> StellarOpsError:
    """A failure to connect as an error: a TLS misconfiguration is a :class:`ConfigError`, which a
    retry cannot fix; anything else is the ordinary :class:`PrerequisiteError`."""
    cleaned = clean_error(text, target)
    problem = tls_problem(cleaned, target)
    if problem is not None:
        return ConfigError(
            f"cannot connect to PostgreSQL {target.describe()} over TLS: {problem} ({cleaned})"
        )
    return PrerequisiteError(f"cannot connect to PostgreSQL {target.describe()}: {cleaned}")


def tls_failure(stderr: str, target: PgTarget) -> ConfigError | None:
    """For a client program (pg_dump, pg_restore, psql) that failed: a :class:`ConfigError` naming
    the TLS setting when it could not connect for one; None when it failed for anything else."""
    cleaned = clean_error(stderr, target)
    if "connection to server" not in cleaned:
        return None
    problem = tls_problem(cleaned, target)
    if problem is None:
        return None
    return ConfigError(
        f"cannot connect to PostgreSQL {target.describe()} over TLS: {problem} ({cleaned[:500]})"
    )


@contextmanager
def connect(target: PgTarget, *, autocommit: bool = True) -> Iterator[Any]:
    """A psycopg connection; connection failures become one clear line naming the target."""
    import psycopg

    target.check_files()
    try:
        conn = psycopg.connect(autocommit=autocommit, **target.connect_kwargs())
    except psycopg.OperationalError as exc:
        raise connection_error(str(exc), target) from None
    try:
        yield conn
    finally:
        conn.close()


def acting_role(target: PgTarget) -> str:
    """The role a session of ``target`` acts as (``current_user``): its login, or the group a twin
    login role sets at login (``ALTER ROLE twin SET role``), which owns what the application makes."""
    with connect(target) as conn:
        return str(conn.execute("SELECT current_user").fetchone()[0])


def server_version_num(conn: Any) -> int:
    """``server_version_num``, for example 150018."""
    return int(conn.info.server_version)


def major_of(version_num: int) -> int:
    return version_num // 10000


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def qualified(schema: str, table: str) -> str:
    return f"{quote_ident(schema)}.{quote_ident(table)}"
