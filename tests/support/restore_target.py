"""A PostgreSQL server to restore into, registered as an Airflow connection for one module's tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from stellar_ops.core.processes import unprivileged_user
from stellar_ops.postgres.server import LocalPgServer
from stellar_ops.postgres.target import connect

# with characters a URL or a log line would have to escape: none of them may leak
PASSWORD = "e2e:p@ss/w?rd"


def serve_restore_target(api: Any, base: Path, conn_id: str) -> Iterator[LocalPgServer]:
    """A server whose superuser ``dba`` is the connection ``conn_id``'s login, removed afterwards."""
    server = LocalPgServer(
        base / "pg", run_as=unprivileged_user("postgres"), superuser="dba", password=PASSWORD
    )
    server.init()
    server.start()
    api.request(
        "POST",
        "/connections",
        json={
            "connection_id": conn_id,
            "conn_type": "postgres",
            "host": "127.0.0.1",
            "port": server.port,
            "login": "dba",
            "password": PASSWORD,
            "schema": "postgres",
        },
    )
    try:
        yield server
    finally:
        api.request("DELETE", f"/connections/{conn_id}")
        server.remove()


def databases(server: LocalPgServer) -> set[str]:
    with connect(server.target()) as conn:
        return {row[0] for row in conn.execute("SELECT datname FROM pg_database")}
