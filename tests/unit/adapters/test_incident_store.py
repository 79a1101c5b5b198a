"""The incident store: one Variable per event, read back in time order, closed key by key.

``FakeVariables`` stands in for ``airflow.sdk.Variable`` (get, set, delete, keys by prefix), as the
metadata DB answers them: one ``set`` is one atomic write.
"""

from __future__ import annotations

import json
import threading
from dataclasses import asdict, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from stellar_ops.adapters.common import alerting, incident_store
from stellar_ops.core.incidents import MAX_EVENTS, Event, Incident, event_key_prefix, legacy_key
from stellar_ops.registry import procedure_for

T0 = datetime(2026, 12, 7, 0, 30, tzinfo=UTC)
BACKUP = procedure_for("db_backup")


def at(seconds: float) -> str:
    return (T0 + timedelta(seconds=seconds)).isoformat()


class FakeVariables:
    def __init__(self) -> None:
        self.values: dict[str, str] = {}
        self.lock = threading.Lock()
        self.listed: list[str] = []

    def get(self, key: str, default: Any = None) -> Any:
        with self.lock:
            return self.values.get(key, default)

    def set(self, key: str, value: Any) -> None:
        with self.lock:
            self.values[key] = value

    def delete(self, key: str) -> None:
        with self.lock:
            self.values.pop(key, None)

    def keys(self, prefix: str | None = None) -> list[str]:
        self.listed.append(prefix or "")
        with self.lock:
            return sorted(k for k in self.values if k.startswith(prefix or ""))


@pytest.fixture
def variables(monkeypatch) -> FakeVariables:
    fake = FakeVariables()
    monkeypatch.setattr(incident_store, "_sdk_variables", lambda: fake)
    return fake


def failure(seconds: float, index: int, run: str = "manual__1") -> Event:
    return Event(at(seconds), "failure", run, "probe_certificate", 1, "RuntimeError: boom", map_index=index)


def test_events_written_at_the_same_moment_are_all_kept(variables):
    barrier = threading.Barrier(20)

    def fail(index: int) -> None:
        barrier.wait()
        alerting.record("db_backup", failure(0, index))  # the same moment, to the microsecond

    threads = [threading.Thread(target=fail, args=(i,)) for i in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(variables.values) == 20
    assert all(key.startswith(event_key_prefix("db_backup")) for key in variables.values)
    incident = alerting.open_incident("db_backup")
    assert incident is not None and sorted(e.map_index for e in incident.events) == list(range(20))
    assert (incident.dag_id, incident.alert_name, incident.severity) == ("db_backup", "BackupFailed", "P2")


def test_an_incident_is_read_in_time_order_and_only_from_its_own_dags_keys(variables):
    for seconds in (30, 10, 20):
        incident_store.add("db_backup", failure(seconds, int(seconds)))
    other = replace(BACKUP, dag_id="db_backup__copy")  # its keys start with db_backup's prefix
    incident_store.add(other.dag_id, failure(5, 99))
    variables.set("stellar_ops_incident__db_backup__notes", "not an event")
    stored = incident_store.read(BACKUP)
    assert stored is not None
    assert [e.map_index for e in stored.incident.events] == [10, 20, 30]
    assert variables.listed == ["stellar_ops_incident__db_backup__"]
    assert len(stored.keys) == 3 and not any("copy" in k or "notes" in k for k in stored.keys)
    (theirs,) = incident_store.read(other).incident.events
    assert theirs.map_index == 99


def test_closing_deletes_exactly_the_events_it_read(variables):
    incident_store.add("db_backup", failure(0, 0))
    incident_store.add("db_backup", Event(at(1), "alert", "manual__1", detail="P2 BackupFailed to ops"))
    stored = incident_store.read(BACKUP)
    assert stored is not None and len(stored.incident.events) == 2
    later = incident_store.add("db_backup", failure(5, 0, run="manual__2"))  # after the read
    incident_store.close(stored)
    assert list(variables.values) == [later]
    (event,) = incident_store.read(BACKUP).incident.events
    assert event.run_id == "manual__2"  # it opens the next incident


def test_an_incident_of_the_one_variable_format_is_read_merged_and_closed(variables):
    legacy = Incident(
        "db_backup",
        "BackupFailed",
        "P2",
        [
            Event(at(0), "retry", "scheduled__1", "dump_to_s3", 1, "S3 down"),
            Event(at(60), "failure", "scheduled__1", "dump_to_s3", 2, "S3 down"),
        ],
    )
    variables.set(legacy_key("db_backup"), json.dumps(legacy.as_dict()))
    incident_store.add("db_backup", Event(at(61), "alert", "scheduled__1", detail="P2 to ops"))
    stored = incident_store.read(BACKUP)
    assert stored is not None
    assert [e.kind for e in stored.incident.events] == ["retry", "failure", "alert"]
    assert stored.incident.failing_task == "dump_to_s3" and stored.incident.alerted
    assert legacy_key("db_backup") in stored.keys
    incident_store.close(stored)
    assert variables.values == {}


def test_an_unreadable_one_variable_incident_is_ignored_and_still_closed(variables):
    variables.set(legacy_key("db_backup"), "{not json")
    stored = incident_store.read(BACKUP)
    assert stored is not None and stored.incident.events == []
    incident_store.close(stored)
    assert variables.values == {}
    assert incident_store.read(BACKUP) is None


def test_a_long_incident_reads_its_first_and_latest_events_and_closes_them_all(variables):
    for second in range(MAX_EVENTS + 50):
        variables.set(
            incident_store.event_key("db_backup", failure(second, second), "salt"),
            json.dumps(asdict(failure(second, second))),
        )
    stored = incident_store.read(BACKUP)
    assert stored is not None
    indexes = [e.map_index for e in stored.incident.events]
    assert indexes[: MAX_EVENTS // 2] == list(range(MAX_EVENTS // 2))
    assert indexes[MAX_EVENTS // 2 :] == list(range(50 + MAX_EVENTS // 2, MAX_EVENTS + 50))
    assert len(stored.keys) == MAX_EVENTS + 50
    incident_store.close(stored)
    assert variables.values == {}


def test_a_recovery_closes_the_events_it_read_and_not_one_recorded_while_it_announced(variables, monkeypatch):
    alerting.record("db_backup", failure(0, 3))
    alerting.record("db_backup", Event(at(1), "alert", "manual__1", detail="P2 BackupFailed to ops"))
    sent: list[dict[str, Any]] = []

    def route(config, entry, payload):
        sent.append(payload)
        # a newer run fails while the recovery is being announced
        alerting.record("db_backup", failure(120, 7, run="manual__3"))
        return "ops"

    monkeypatch.setattr(alerting, "route", route)
    monkeypatch.setattr(alerting, "tell_alertmanager", lambda *a, **k: None)
    monkeypatch.setattr(alerting, "write_review", lambda *a, **k: None)
    monkeypatch.setattr(alerting, "config_or_defaults", alerting.StellarOpsConfig)
    monkeypatch.setattr(alerting, "_task_state", lambda dag_id, run_id, task_id: "success")

    class Run:
        dag_id, run_id, end_date = "db_backup", "manual__2", T0 + timedelta(seconds=60)

    alerting.announce_recovery({"dag_run": Run(), "run_id": "manual__2"})
    assert len(sent) == 1 and "manual__2" in json.dumps(sent[0])
    (left,) = alerting.open_incident("db_backup").events
    assert (left.run_id, left.map_index) == ("manual__3", 7)


def test_a_mapped_tasks_state_is_its_instances_when_they_agree(monkeypatch):
    from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance

    answers = {
        "r1": {"probe_0": "success", "probe_1": "success"},
        "r2": {"probe_0": "success", "probe_1": "skipped"},
        "r3": {"probe": "success"},
        "r4": {},
    }
    monkeypatch.setattr(
        RuntimeTaskInstance,
        "get_task_states",
        staticmethod(lambda dag_id, run_ids, task_ids: {run_ids[0]: answers[run_ids[0]]}),
    )
    assert alerting._task_state("tls_cert_check", "r1", "probe") == "success"
    assert alerting._task_state("tls_cert_check", "r2", "probe") is None
    assert alerting._task_state("tls_cert_check", "r3", "probe") == "success"
    assert alerting._task_state("tls_cert_check", "r4", "probe") is None
