"""Recovery to a moment, its pure parts: the target, the choice of base backup and the window, a
hole in the archive, what the server's log says, the settings, and the checked download."""

from __future__ import annotations

import hashlib
import io
import tarfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest
import zstandard

from stellar_ops.core.errors import BackupNotFoundError, ConfigError, RestoreError, VerificationError
from stellar_ops.pitr import layout, recovery
from stellar_ops.pitr.layout import BaseBackupRecord, WalFile
from stellar_ops.pitr.recovery import WalArchive

T0 = datetime(2026, 12, 1, 2, 0, tzinfo=UTC)


def record(backup_id: str, stop: datetime, start_wal: str = "000000010000000000000004") -> BaseBackupRecord:
    return BaseBackupRecord(
        backup_id=backup_id,
        server="stellar",
        system_identifier="7300000000000000001",
        timeline=1,
        pg_version_num=150018,
        start_lsn="0/4000028",
        start_wal=start_wal,
        start_time=stop - timedelta(minutes=1),
        stop_lsn="0/4000100",
        stop_wal=start_wal,
        stop_time=stop,
        raw_bytes=1,
        stored_bytes=1,
        sha256="0" * 64,
    )


def segment(name: str, modified: datetime) -> WalFile:
    wal = layout.parse_wal_key(f"pitr/stellar/wals/{name[:16]}/{name}.zst", 10, modified)
    assert wal is not None
    return wal


class FakeStore:
    bucket = "stellar-backups"

    def __init__(self, objects: dict[str, bytes]) -> None:
        self.objects = objects

    def url(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"

    def iter_chunks(self, key: str):
        data = self.objects[key]
        for start in range(0, len(data), 1000):
            yield data[start : start + 1000]


# -- the target ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("latest", None),
        (" LATEST ", None),
        ("2026-12-01T02:30:00Z", datetime(2026, 12, 1, 2, 30, tzinfo=UTC)),
        ("2026-12-01 02:30:00.250000", datetime(2026, 12, 1, 2, 30, 0, 250000, tzinfo=UTC)),
        ("2026-12-01T03:30:00+01:00", datetime(2026, 12, 1, 2, 30, tzinfo=UTC)),
    ],
)
def test_the_target_is_latest_or_an_iso_time_read_as_utc(text, expected):
    assert recovery.parse_target_time(text) == expected


@pytest.mark.parametrize("text", ["", "yesterday", "2026-13-01"])
def test_a_target_that_is_no_time_is_refused_naming_the_value(text):
    with pytest.raises(ConfigError, match="target_time"):
        recovery.parse_target_time(text)


# -- the base backup and the window --------------------------------------------------------------


def test_the_newest_base_backup_ending_before_the_target_is_chosen():
    records = [record("20261201T020000Z", T0), record("20261202T020000Z", T0 + timedelta(days=1))]
    newest = T0 + timedelta(days=2)
    assert recovery.choose_base_backup(records, T0 + timedelta(hours=5), newest, where="x").backup_id == (
        "20261201T020000Z"
    )
    assert recovery.choose_base_backup(records, T0 + timedelta(days=1), newest, where="x").backup_id == (
        "20261202T020000Z"
    )
    assert recovery.choose_base_backup(records, None, newest, where="x").backup_id == "20261202T020000Z"


def test_a_target_outside_the_window_is_refused_naming_the_window():
    records = [record("20261201T020000Z", T0)]
    newest = T0 + timedelta(hours=3)
    window = "the recoverable window is 2026-12-01T02:00:00Z to 2026-12-01T05:00:00Z"
    with pytest.raises(ConfigError, match=f"before the oldest base backup ends .*{window}"):
        recovery.choose_base_backup(records, T0 - timedelta(seconds=1), newest, where="x")
    with pytest.raises(ConfigError, match=f"after the newest archived WAL .*{window}"):
        recovery.choose_base_backup(records, newest + timedelta(seconds=1), newest, where="x")


def test_no_base_backup_or_no_wal_says_what_to_do():
    with pytest.raises(
        BackupNotFoundError, match="no complete base backup under s3://b/p/s/: run db_base_backup"
    ):
        recovery.choose_base_backup([], None, T0, where="s3://b/p/s/")
    with pytest.raises(BackupNotFoundError, match="no archived WAL"):
        recovery.choose_base_backup([record("20261201T020000Z", T0)], None, None, where="x")


# -- a hole in the archive -----------------------------------------------------------------------


def test_next_segment_crosses_into_the_next_log_file():
    assert recovery.next_segment("000000010000000000000004") == "000000010000000000000005"
    assert recovery.next_segment("0000000100000000000000FF") == "000000010000000100000000"


def test_a_missing_segment_between_the_base_backup_and_the_target_is_found():
    base = record("20261201T020000Z", T0)
    wals = [
        segment("000000010000000000000003", T0 - timedelta(minutes=5)),  # before the backup: unused
        segment("000000010000000000000004", T0),
        segment("000000010000000000000006", T0 + timedelta(minutes=2)),
        segment("000000010000000000000007", T0 + timedelta(minutes=3)),
    ]
    assert recovery.first_gap(wals, base, None) == ("000000010000000000000005", "000000010000000000000007")
    assert recovery.first_gap(wals, base, T0 + timedelta(minutes=1)) == (
        "000000010000000000000005",
        "000000010000000000000006",
    )
    # a target whose WAL is in the base backup's own segment needs nothing after it
    assert recovery.first_gap(wals, base, T0 - timedelta(seconds=1)) is None
    whole = [*wals, segment("000000010000000000000005", T0 + timedelta(minutes=1))]
    assert recovery.first_gap(whole, base, None) is None


def test_the_base_backups_own_first_segment_missing_is_named():
    base = record("20261201T020000Z", T0)
    assert recovery.first_gap([segment("000000010000000000000005", T0)], base, None) == (
        "000000010000000000000004",
        "000000010000000000000005",
    )


# -- the server's log ----------------------------------------------------------------------------

LOG = """\
2026-12-01 02:10:00.000 UTC [10] LOG:  starting point-in-time recovery to 2026-12-01 02:05:00+00
2026-12-01 02:10:00.100 UTC [10] LOG:  restored log file "000000010000000000000004" from archive
2026-12-01 02:10:00.200 UTC [10] LOG:  redo starts at 0/4000028
2026-12-01 02:10:00.300 UTC [10] LOG:  consistent recovery state reached at 0/4000100
2026-12-01 02:10:01.100 UTC [10] LOG:  restored log file "000000010000000000000005" from archive
"""


def test_the_restored_segments_and_the_stop_are_read_from_the_log():
    text = LOG + (
        "2026-12-01 02:10:01.200 UTC [10] LOG:  recovery stopping before commit of transaction 812, "
        "time 2026-12-01 02:05:00.5+00\n"
    )
    assert recovery.restored_segments(text + LOG) == ["000000010000000000000004", "000000010000000000000005"]
    assert recovery.stop_reason(text) == (
        "recovery stopping before commit of transaction 812, time 2026-12-01 02:05:00.5+00"
    )


def archive() -> WalArchive:
    return WalArchive(
        FakeStore({}), "pitr", "stellar", restore_program="/opt/barman/bin/barman-cloud-wal-restore"
    )  # type: ignore[arg-type]


def test_a_recovery_that_ended_before_its_target_names_the_segment_after_the_last_restored():
    text = LOG + (
        "2026-12-01 02:10:01.300 UTC [10] LOG:  redo done at 0/5FFFFD8\n"
        "2026-12-01 02:10:01.400 UTC [10] FATAL:  recovery ended before configured recovery target was reached\n"
    )
    message = recovery.failure(text, record("20261201T020000Z", T0), T0 + timedelta(minutes=5), archive())
    assert message.startswith(
        "recovery to 2026-12-01T02:05:00Z failed: WAL segment 000000010000000000000006 (after "
        "000000010000000000000005) is missing from s3://stellar-backups/pitr/stellar/wals/"
    )


def test_a_base_backup_whose_first_segment_cannot_be_read_names_it():
    text = "LOG:  starting point-in-time recovery\nFATAL:  could not locate required checkpoint record\n"
    message = recovery.failure(text, record("20261201T020000Z", T0), None, archive())
    assert "first WAL segment 000000010000000000000004 cannot be read" in message


def test_any_other_stop_quotes_the_fatal_lines():
    text = LOG + "2026-12-01 02:10:02 UTC [10] FATAL:  could not write lock file: No space left on device\n"
    message = recovery.failure(text, record("20261201T020000Z", T0), None, archive())
    assert "000000010000000000000006 is the next one" in message
    assert "No space left on device" in message


# -- the settings --------------------------------------------------------------------------------


def test_the_restore_command_names_no_credential_and_quotes_what_it_must():
    wal_archive = WalArchive(
        FakeStore({}),  # type: ignore[arg-type]
        "pitr",
        "stellar",
        restore_program="/opt/barman tools/bin/barman-cloud-wal-restore",
        endpoint_url="http://127.0.0.1:58333",
        environment={"AWS_SECRET_ACCESS_KEY": "s3cr3t"},
    )
    command = wal_archive.restore_command()
    assert command == (
        "'/opt/barman tools/bin/barman-cloud-wal-restore' --endpoint-url http://127.0.0.1:58333 "
        "s3://stellar-backups/pitr stellar %f %p"
    )
    settings = recovery.recovery_settings(
        wal_archive, datetime(2026, 12, 1, 2, 5, tzinfo=UTC), port=5999, socket_dir=Path("/tmp/sock")
    )
    assert "s3cr3t" not in str(settings)
    assert settings["restore_command"] == "'" + command.replace("'", "''") + "'"
    assert settings["recovery_target_time"] == "'2026-12-01T02:05:00+00:00'"
    assert settings["recovery_target_action"] == "'promote'"
    assert settings["archive_mode"] == "'off'"
    assert settings["listen_addresses"] == "''" and settings["unix_socket_directories"] == "'/tmp/sock'"
    latest = recovery.recovery_settings(wal_archive, None, port=5999, socket_dir=Path("/tmp/sock"))
    assert "recovery_target_time" not in latest


def test_the_credentials_and_endpoint_come_from_the_s3_client():
    frozen = SimpleNamespace(access_key="AKIA", secret_key="s3cr3t", token=None)
    client = SimpleNamespace(
        meta=SimpleNamespace(endpoint_url="http://127.0.0.1:58333", region_name="us-east-1"),
        _request_signer=SimpleNamespace(_credentials=SimpleNamespace(get_frozen_credentials=lambda: frozen)),
    )
    endpoint, env = recovery.s3_access(client)
    assert endpoint == "http://127.0.0.1:58333"
    assert env == {
        "AWS_ACCESS_KEY_ID": "AKIA",
        "AWS_SECRET_ACCESS_KEY": "s3cr3t",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    client.meta.endpoint_url = "https://s3.eu-west-1.amazonaws.com"
    assert recovery.s3_access(client)[0] is None


def test_saved_files_are_put_back_after_the_recovery(tmp_path):
    (tmp_path / "postgresql.auto.conf").write_text("archive_mode = 'on'\n")
    (tmp_path / "pg_hba.conf").write_text("host all all 10.0.0.0/8 scram-sha-256\n")
    recovery.save_and_override(tmp_path, {"archive_mode": "'off'"}, None)
    assert (tmp_path / "postgresql.auto.conf").read_text().endswith("archive_mode = 'off'\n")
    assert (tmp_path / "pg_hba.conf").read_text().endswith("local all all trust\n")
    assert (tmp_path / "recovery.signal").exists()
    recovery.restore_saved(tmp_path)
    assert (tmp_path / "postgresql.auto.conf").read_text() == "archive_mode = 'on'\n"
    assert (tmp_path / "pg_hba.conf").read_text() == "host all all 10.0.0.0/8 scram-sha-256\n"


# -- the download --------------------------------------------------------------------------------


def _base_tar() -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, data in {
            "PG_VERSION": b"15\n",
            "global/pg_control": b"x" * 8192,
            "backup_label": b"START",
        }.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o600
            tar.addfile(info, io.BytesIO(data))
    return zstandard.ZstdCompressor().compress(buffer.getvalue())


def _checked(stored: bytes) -> BaseBackupRecord:
    base = record("20261201T020000Z", T0)
    return BaseBackupRecord(
        **{**base.__dict__, "sha256": hashlib.sha256(stored).hexdigest(), "stored_bytes": len(stored)}
    )


def test_the_base_backup_is_untarred_into_the_data_directory_after_its_checks(tmp_path):
    stored = _base_tar()
    data = tmp_path / "data"
    data.mkdir()
    raw = recovery.fetch_base_backup(FakeStore({"k": stored}), "k", _checked(stored), data, None)  # type: ignore[arg-type]
    assert raw == 3 + 8192 + 5
    assert (data / "PG_VERSION").read_text() == "15\n"
    assert (data / "pg_wal" / "archive_status").is_dir()
    assert oct(data.stat().st_mode & 0o777) == "0o700"


def test_a_base_backup_that_does_not_match_its_record_leaves_nothing(tmp_path):
    stored = _base_tar()
    data = tmp_path / "data"
    data.mkdir()
    wrong = BaseBackupRecord(**{**_checked(stored).__dict__, "sha256": "f" * 64})
    with pytest.raises(
        VerificationError, match="s3://stellar-backups/k does not match its backup.json: sha256"
    ):
        recovery.fetch_base_backup(FakeStore({"k": stored}), "k", wrong, data, None)  # type: ignore[arg-type]
    assert list(data.iterdir()) == []
    with pytest.raises(VerificationError, match="not a valid zstd stream"):
        recovery.fetch_base_backup(FakeStore({"k": b"not zstd at all"}), "k", wrong, data, None)  # type: ignore[arg-type]
    assert list(data.iterdir()) == []


def test_latest_that_stopped_at_a_hole_with_later_segments_beyond_it_fails_naming_the_hole():
    base = record("20261201T020000Z", T0)
    wals = [segment(f"0000000100000000000000{n:02X}", T0) for n in (4, 5, 7, 8)]
    with pytest.raises(
        RestoreError,
        match="stopped at 000000010000000000000005: WAL segment 000000010000000000000006 is missing",
    ):
        recovery._check_reached_the_end(
            ["000000010000000000000004", "000000010000000000000005"], wals, base, archive()
        )
    # the archive's end: nothing later was there when recovery began
    recovery._check_reached_the_end(
        ["000000010000000000000004", "000000010000000000000005"], wals[:2], base, archive()
    )
