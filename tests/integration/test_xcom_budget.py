"""XCom carries references, not documents: the DAGs whose documents grow with the data, run against
a database of many tables, hand each other nothing over 4 KiB.

Every ``run_dag`` of the suite already checks its run's XComs against
:data:`~tests.support.dagrun.XCOM_LIMIT_BYTES` (so the other DAGs' own tests measure theirs); the
runs here are the ones whose documents grow with the tables: the backup's manifest (a schema and a
row count per table; also kept out of its Asset event), the DR test's and the restore's observation of the restored database, and
maintenance's per-table bloat and timings; and the two DAGs no other test runs under dag.test()
because of their approvals: db_restore (approved at once here) and api_key_rotation (a dry run).
The old dump_to_s3, which returned the draft manifest, fails here with
``dump_to_s3.return_value 218599 bytes``.
"""

from __future__ import annotations

import json

import pytest

from stellar_ops.catalogue.keys import INCOMING_DIR
from stellar_ops.postgres.target import connect
from tests.support.dagrun import XCOM_LIMIT_BYTES, assert_xcoms_small, run_dag

pytestmark = pytest.mark.integration

TABLES = 300  # a manifest of this many tables' schema is ~100 KiB: far over the limit if it travelled


@pytest.fixture(scope="module")
def wide_database(stack):
    """A throwaway database of ``TABLES`` tables (with the DR test's key tables), owned by the
    application role."""
    owner = stack.db
    with connect(stack.superuser.with_dbname("postgres")) as conn:
        conn.execute("DROP DATABASE IF EXISTS wide WITH (FORCE)")
        conn.execute(f'CREATE DATABASE wide OWNER "{owner.user}"')
    target = owner.with_dbname("wide")
    with connect(target) as conn:
        conn.execute("CREATE TABLE trades (id bigint PRIMARY KEY, amount numeric NOT NULL)")
        conn.execute("CREATE TABLE events (id bigint PRIMARY KEY, created_at timestamptz NOT NULL)")
        conn.execute("CREATE TABLE escrows (id bigint PRIMARY KEY, status text NOT NULL)")
        conn.execute("INSERT INTO trades VALUES (1, 10), (2, 20)")
        conn.execute("INSERT INTO events VALUES (1, now())")
        conn.execute("INSERT INTO escrows VALUES (1, 'open')")
        for n in range(TABLES):
            conn.execute(
                f"CREATE TABLE ledger_partition_{n:04d} (id bigserial PRIMARY KEY, account_id bigint NOT NULL, "
                "amount numeric(20, 7) NOT NULL, memo text, created_at timestamptz NOT NULL DEFAULT now())"
            )
            conn.execute(f"INSERT INTO ledger_partition_{n:04d} (account_id, amount) VALUES ({n}, 1)")
    yield target
    with connect(stack.superuser.with_dbname("postgres")) as conn:
        conn.execute("DROP DATABASE IF EXISTS wide WITH (FORCE)")


@pytest.fixture
def on_wide_database(stack, wide_database, monkeypatch):
    """The DAGs' ``stellar_db`` connection points at the wide database for one test."""
    connection = dict(stack.airflow_connections()["stellar_db"], schema=wide_database.dbname)
    monkeypatch.setenv("AIRFLOW_CONN_STELLAR_DB", json.dumps(connection))
    return wide_database


def test_backup_and_dr_test_of_a_wide_database_pass_keys_and_summaries_not_the_manifest(
    airflow_db, ops, on_wide_database
):
    backup = run_dag("db_backup")  # run_dag fails on any XCom over the limit, naming the task
    assert backup.state == "success", backup.tasks
    sizes = assert_xcoms_small(backup)
    assert "dump_to_s3.return_value" in sizes, sizes
    reference = backup.xcom("dump_to_s3")
    key = backup.xcom("publish_backup")["key"]
    assert reference["key"] == key
    assert reference["draft_key"].startswith(ops.prefix + INCOMING_DIR)
    manifest = ops.store().get_json(key + ".manifest.json")
    assert len(manifest["row_counts"]) > TABLES, "the manifest, in S3, still describes every table"
    assert len(json.dumps(manifest["schema"])) > 10 * XCOM_LIMIT_BYTES
    # the draft travelled through S3 and is gone once the manifest is written
    assert not [k for k in ops.objects() if INCOMING_DIR in k]
    # the Asset event db_backup emits is stored for every run too: a reference and a summary
    from airflow.models.asset import AssetEvent
    from airflow.utils.session import create_session

    with create_session() as session:
        (extra,) = [e.extra for e in session.query(AssetEvent).all() if e.extra.get("key") == key]
    assert extra["tables"] > TABLES and len(json.dumps(extra)) <= XCOM_LIMIT_BYTES, len(json.dumps(extra))

    drill = run_dag("dr_restore_test", conf={"backup": key})
    assert drill.state == "success", drill.tasks
    assert_xcoms_small(drill)
    restored = drill.xcom("restore_backup")
    assert restored["tables"] > TABLES and "observation" not in restored
    assert not [k for k in ops.objects() if INCOMING_DIR in k], (
        "the observation goes once the report is written"
    )


def approve_at_once(monkeypatch) -> None:
    """dag.test() cannot answer an approval: every Approval of the run approves as it opens (the
    second one is still skipped when its param is off)."""
    from airflow.sdk.exceptions import AirflowSkipException

    from stellar_ops.adapters.common.approvals import Approval

    def approve(self, context):
        if self.ask_only_if and not context["params"].get(self.ask_only_if):
            raise AirflowSkipException(f"not asked: the run's {self.ask_only_if} is off")
        return {"chosen_options": ["Approve"], "params_input": {}}

    monkeypatch.setattr(Approval, "execute", approve)


def test_a_restore_of_a_wide_backup_passes_small_xcoms(airflow_db, stack, ops, on_wide_database, monkeypatch):
    backup = run_dag("db_backup")
    assert backup.state == "success", backup.tasks
    key = backup.xcom("publish_backup")["key"]
    approve_at_once(monkeypatch)
    outcome = run_dag("db_restore", conf={"backup": key})
    database = (outcome.xcom("check_target") or {}).get("database")
    try:
        assert outcome.state == "success", outcome.tasks
        assert_xcoms_small(outcome)
        assert outcome.xcom("restore_backup")["tables"] > TABLES
        assert not [k for k in ops.objects() if INCOMING_DIR in k]
    finally:
        if database:
            with connect(stack.superuser.with_dbname("postgres")) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


def test_maintenance_of_a_wide_database_passes_summaries(airflow_db, ops, receiver, on_wide_database):
    ops.update(maintenance={"tables": []})  # every table
    outcome = run_dag("db_maintenance")
    assert outcome.state == "success", outcome.tasks
    assert_xcoms_small(outcome)
    assert outcome.xcom("measure_bloat")["tables"] > TABLES
    vacuumed = outcome.xcom("vacuum_analyze")
    assert vacuumed["tables"] > TABLES and vacuumed["slowest"]
    # the message still counts every table and names the slowest, from the summary alone
    (text,) = [m["json"]["text"] for m in receiver.messages() if "text" in (m.get("json") or {})]
    assert f"VACUUM ANALYZE of {vacuumed['tables']} tables in " in text
    assert f"(longest: {vacuumed['slowest']}, " in text
    assert outcome.xcom("send_summary")["tables"] == vacuumed["tables"]


def test_a_dry_run_of_the_key_rotation_passes_small_xcoms(airflow_db, ops):
    """dag.test() cannot answer approvals: a dry run measures the steps it runs (the rotation's other
    steps return fingerprints, at most 50, and the audit record's key)."""
    outcome = run_dag("api_key_rotation", conf={"dry_run": True})
    assert outcome.state == "success", outcome.tasks
    assert outcome.tasks["check_rotation_due"] == "skipped"
    assert_xcoms_small(outcome)
    assert outcome.xcom("record_audit") == {"outcome": "nothing rotated"}
