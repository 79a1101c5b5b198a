"""pg_target: an Airflow postgres connection's extras become the target's libpq settings, with
sslpassword masked as the password is; the runtime names its sessions after the run."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from stellar_ops.adapters.common import connections
from stellar_ops.core.errors import ConfigError
from stellar_ops.registry import StellarOpsConfig
from stellar_ops.runtime import Runtime


def connection(**extra: Any) -> SimpleNamespace:
    return SimpleNamespace(
        host="db.internal",
        port=5433,
        login="stellar",
        schema="stellar_escrow",
        password="pw",
        extra_dejson=extra,
    )


@pytest.fixture
def masked(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    seen: list[str] = []
    monkeypatch.setattr("airflow.sdk.log.mask_secret", seen.append)
    return seen


def test_extras_reach_the_target_and_sslpassword_is_masked(monkeypatch, masked) -> None:
    conn = connection(
        sslmode="verify-full",
        sslrootcert="/ca.pem",
        sslcert="/c.pem",
        sslkey="/k.pem",
        sslpassword="key-secret",
        keepalives_idle=30,
        application_name="escrow-ops",
        cursor="dictcursor",
        iam=False,
    )
    monkeypatch.setattr(connections, "_connection", lambda conn_id, purpose: conn)

    target = connections.pg_target("stellar_db")

    assert target.sslmode == "verify-full"
    assert dict(target.settings) == {
        "sslrootcert": "/ca.pem",
        "sslcert": "/c.pem",
        "sslkey": "/k.pem",
        "sslpassword": "key-secret",
        "keepalives_idle": "30",
        "application_name": "escrow-ops",
    }
    assert "key-secret" in masked
    assert "key-secret" not in repr(target)


def test_an_unknown_extra_fails_naming_the_connection(monkeypatch, masked) -> None:
    monkeypatch.setattr(connections, "_connection", lambda conn_id, purpose: connection(sslrootcrt="/ca.pem"))
    with pytest.raises(ConfigError, match=r"^connection 'stellar_db''s extra: 'sslrootcrt' is not a libpq"):
        connections.pg_target("stellar_db")


class Resources:
    def __init__(self, target: Any) -> None:
        self.target = target

    def database(self) -> Any:
        return self.target


def test_the_runtime_names_its_sessions_after_the_procedure_and_run(monkeypatch, masked) -> None:
    monkeypatch.setattr(connections, "_connection", lambda conn_id, purpose: connection())
    target = connections.pg_target("stellar_db")
    rt = Runtime(StellarOpsConfig(), Resources(target), procedure="db_backup", run_id="manual__1")  # type: ignore[arg-type]

    assert rt.database().application_name == "stellar-ops/db_backup/manual__1"
    assert rt.labelled(target.with_dbname("other")).connect_kwargs()["application_name"] == (
        "stellar-ops/db_backup/manual__1"
    )
    bare = Runtime(StellarOpsConfig(), Resources(target))  # type: ignore[arg-type]
    assert bare.database().application_name == "stellar-ops"


def test_outside_a_task_the_run_is_unknown() -> None:
    from stellar_ops.adapters.common.runtime import _current_run

    assert _current_run() == (None, None)
