"""stellar_ops.dr.recovery and ``stellar-ops restore``'s target: names, the plan, no password in argv."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from stellar_ops.catalogue.source import ResolvedBackup
from stellar_ops.cli.restore import target_from
from stellar_ops.core.errors import ConfigError
from stellar_ops.dr.flow import Resolved
from stellar_ops.dr.recovery import MAX_IDENTIFIER, RestorePlan, aside_name, default_database


def test_a_new_database_is_named_after_the_backups_time():
    backup = ResolvedBackup(
        "s3",
        "backups/stellar_escrow_20261124T020000Z.dump.zst",
        "custom",
        "2026-11-24T02:00:00+00:00",
        "verified",
    )
    assert default_database(Resolved(backup, datetime.now(UTC))) == "stellar_escrow_20261124_020000"


def test_the_name_aside_fits_postgresqls_limit():
    moment = datetime(2026, 12, 2, 10, 30, 0, tzinfo=UTC)
    assert aside_name("stellar_escrow", moment) == "stellar_escrow_before_20261202T103000"
    long = aside_name("x" * 63, moment)
    assert len(long) == MAX_IDENTIFIER and long.endswith("_before_20261202T103000")


def test_the_plan_says_what_is_renamed_and_kept():
    plan = RestorePlan(
        backup="s3://stellar-backups/backups/stellar_escrow_20261124T020000Z.dump.zst",
        backup_taken_at="2026-11-24T02:00:00+00:00",
        backup_age_hours=8.5,
        backup_size_bytes=5 << 20,
        target="dba@10.0.0.5:5432",
        database="stellar_escrow",
        rename_existing_to="stellar_escrow_before_20261124T103000",
        target_server_version="15.18",
    )
    text = plan.summary()
    assert "(5.0 MiB, taken 2026-11-24T02:00:00+00:00, 8.5 hours old)" in text
    assert "into database 'stellar_escrow' on dba@10.0.0.5:5432 (PostgreSQL 15.18)" in text
    assert "renamed to 'stellar_escrow_before_20261124T103000' first" in text and "never dropped" in text
    assert RestorePlan.from_dict(plan.as_dict()) == plan


def test_the_targets_password_comes_from_the_environment_never_from_argv():
    with pytest.raises(ConfigError, match="--target must not carry a password"):
        target_from("postgresql://dba:secret@db:5432/postgres", {})
    from_env = target_from("postgresql://dba@db:5432/postgres", {"PGPASSWORD": "p@ss:w/rd"})
    assert from_env.password == "p@ss:w/rd" and "p@ss" not in repr(from_env)
    assert from_env.client_env({})["PGPASSWORD"] == "p@ss:w/rd"
    from_file = target_from("postgresql://dba@db:5432/postgres", {"PGPASSFILE": "/secure/pgpass"})
    assert from_file.password is None and from_file.client_env({})["PGPASSFILE"] == "/secure/pgpass"
    assert from_file.connect_kwargs()["passfile"] == "/secure/pgpass"


def test_the_roles_a_backup_names_come_from_owners_grants_and_default_privileges():
    from stellar_ops.dr.recovery import roles_named

    schema = {
        "acls": {
            "public.trades": [
                "r",
                "stellar",
                ["stellar=arwdDxt/stellar", "reporting=r/stellar", "=r/stellar"],
            ],
            "public.trades_id_seq": ["S", "stellar", None],
            "public.audit": ["r", '"Auditors"', ["pg_read_all_data=r/stellar"]],
        },
        "default_acls": {"stellar.public.r": ["app=r/stellar"]},
    }
    assert roles_named(schema) == {"stellar", "reporting", "Auditors"}


def test_a_restore_role_that_is_no_superuser_leaves_out_what_only_a_superuser_may_name():
    from stellar_ops.dr.engine.roles import for_a_role_without_superuser, privileged_roles

    globals_sql = (
        "CREATE ROLE postgres;\n"
        "ALTER ROLE postgres WITH SUPERUSER INHERIT CREATEROLE CREATEDB LOGIN REPLICATION BYPASSRLS;\n"
        "CREATE ROLE stellar;\n"
        "ALTER ROLE stellar WITH NOSUPERUSER INHERIT NOCREATEROLE NOCREATEDB LOGIN NOREPLICATION NOBYPASSRLS;\n"
    )
    assert privileged_roles(globals_sql) == {"postgres": ["SUPERUSER", "REPLICATION", "BYPASSRLS"]}
    assert (
        for_a_role_without_superuser(
            "ALTER ROLE stellar WITH NOSUPERUSER INHERIT NOCREATEROLE NOCREATEDB LOGIN NOREPLICATION NOBYPASSRLS;"
        )
        == "ALTER ROLE stellar WITH INHERIT NOCREATEROLE NOCREATEDB LOGIN;"
    )
    assert (
        for_a_role_without_superuser("GRANT pg_read_all_stats TO stellar GRANTED BY postgres;")
        == "GRANT pg_read_all_stats TO stellar;"
    )
    assert for_a_role_without_superuser("CREATE ROLE stellar;") == "CREATE ROLE stellar;"
