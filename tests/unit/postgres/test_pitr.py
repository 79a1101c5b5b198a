"""The archive_command line for barman-cloud-wal-archive: what it names, what it never holds."""

from __future__ import annotations

import shlex

from stellar_ops.postgres.pitr import barman_archive_command, conf_string


def test_the_archive_command_names_endpoint_compression_encryption_destination_and_server():
    command = barman_archive_command(
        "/srv/pitr venv/bin/barman-cloud-wal-archive",
        "s3://stellar-backups/pitr",
        "stellar",
        endpoint_url="http://127.0.0.1:58333",
    )
    assert shlex.split(command) == [
        "/srv/pitr venv/bin/barman-cloud-wal-archive",
        "--endpoint-url",
        "http://127.0.0.1:58333",
        "--zstd",
        "-e",
        "AES256",
        "s3://stellar-backups/pitr",
        "stellar",
        "%p",
    ]
    assert command.endswith(" stellar %p")  # PostgreSQL's placeholder stays bare


def test_an_archive_command_without_endpoint_compression_or_encryption():
    command = barman_archive_command(
        "barman-cloud-wal-archive", "s3://b/p", "db", compression=None, encryption=None
    )
    assert command == "barman-cloud-wal-archive s3://b/p db %p"


def test_a_conf_string_doubles_single_quotes():
    assert conf_string("cp %p /archive/%f") == "'cp %p /archive/%f'"
    assert conf_string("'/a b/x' %p") == "'''/a b/x'' %p'"
