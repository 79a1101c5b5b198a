"""The fix that lets Clear move a queued-at deadline: its decoding, its probe, and when it applies."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import airflow
import airflow.models.taskinstance as taskinstance
import pytest
from airflow.models.deadline_alert import DeadlineAlert as DeadlineAlertModel
from airflow.sdk.definitions.callback import AsyncCallback
from airflow.sdk.definitions.deadline import DeadlineAlert, DeadlineReference, VariableInterval
from airflow.serialization.encoders import encode_deadline_alert

from stellar_ops.adapters.common import queued_at_deadlines as fix
from stellar_ops.adapters.common.deadlines import missed_deadline

BUGGY = taskinstance._recalculate_dagrun_queued_at_deadlines


@pytest.fixture
def airflow_function(monkeypatch):
    """Airflow's function as installed, put back after the test whatever the test installs."""
    monkeypatch.setattr(taskinstance, fix.AIRFLOW_FUNCTION, BUGGY)
    return BUGGY


def alert_row(interval: timedelta | VariableInterval) -> DeadlineAlertModel:
    """A ``deadline_alert`` row as the DAG processor writes it for a procedure's deadline."""
    encoded = encode_deadline_alert(
        DeadlineAlert(
            reference=DeadlineReference.DAGRUN_QUEUED_AT,
            interval=interval,
            callback=AsyncCallback(missed_deadline, kwargs={"dag_id": "db_maintenance", "minutes": 180}),
        )
    )
    return DeadlineAlertModel(
        reference=encoded["reference"], interval=encoded["interval"], callback_def=encoded["callback"]
    )


def test_the_interval_is_stored_as_json_and_decoded_to_the_procedures_time():
    row = alert_row(timedelta(minutes=180))
    assert row.interval == {"__classname__": "datetime.timedelta", "__version__": 2, "__data__": 10800.0}
    assert fix.deadline_interval(row) == timedelta(minutes=180)


def test_an_interval_stored_as_seconds_before_3_3_is_read_too():
    row = alert_row(timedelta(minutes=30))
    row.interval = 1800.0
    assert fix.deadline_interval(row) == timedelta(minutes=30)


def test_an_interval_kept_in_a_variable_is_resolved(monkeypatch):
    monkeypatch.setenv("AIRFLOW_VAR_DB_MAINTENANCE_DEADLINE_SECONDS", "5400")
    row = alert_row(VariableInterval("db_maintenance_deadline_seconds"))
    assert fix.deadline_interval(row) == timedelta(minutes=90)


def test_an_interval_kept_in_a_variable_that_is_not_a_number_is_refused_by_name(monkeypatch):
    monkeypatch.setenv("AIRFLOW_VAR_DB_MAINTENANCE_DEADLINE_SECONDS", "three hours")
    row = alert_row(VariableInterval("db_maintenance_deadline_seconds"))
    with pytest.raises(ValueError, match="db_maintenance_deadline_seconds.*'three hours'"):
        fix.deadline_interval(row)


def test_the_fixed_recalculation_moves_the_deadline_to_the_new_queued_at_plus_the_interval():
    deadline = SimpleNamespace(deadline_time=datetime(2026, 1, 1, tzinfo=UTC))
    queued_again = datetime(2026, 3, 7, 3, 15, tzinfo=UTC)
    session = fix._OneRow(deadline, alert_row(timedelta(minutes=180)))
    fix.recalculate_queued_at_deadlines(SimpleNamespace(id=1, dag_id="d", run_id="r"), queued_again, session)
    assert deadline.deadline_time == queued_again + timedelta(minutes=180)


def test_a_deadline_whose_interval_cannot_be_read_keeps_its_time_and_the_clear_goes_on(monkeypatch, caplog):
    monkeypatch.setenv("AIRFLOW_VAR_DB_BACKUP_DEADLINE_SECONDS", "three hours")
    before = datetime(2026, 1, 1, tzinfo=UTC)
    deadline = SimpleNamespace(deadline_time=before)
    fix.recalculate_queued_at_deadlines(
        SimpleNamespace(id=1, dag_id="db_backup", run_id="manual__1"),
        datetime(2026, 3, 7, tzinfo=UTC),
        fix._OneRow(deadline, alert_row(VariableInterval("db_backup_deadline_seconds"))),
    )
    assert deadline.deadline_time == before
    assert "db_backup run manual__1 keeps its time" in caplog.text


def test_the_installed_airflow_still_has_the_bug_so_the_plugin_applies():
    assert fix.has_interval_bug(BUGGY) is True, (
        f"Airflow {airflow.__version__} clears runs with queued-at deadlines itself: the fix no longer "
        "applies; delete stellar_ops.adapters.common.queued_at_deadlines (and its install in adapters/common/plugin.py) "
        "and this test"
    )


def test_the_probe_tells_a_fixed_function_and_a_changed_one_from_the_bug():
    assert fix.has_interval_bug(fix.recalculate_queued_at_deadlines) is False

    def changed(dagrun, new_queued_at, session):
        raise RuntimeError("a signature of a later Airflow")

    assert fix.has_interval_bug(changed) is None


def test_install_replaces_airflows_function_once(airflow_function):
    assert fix.install() is True
    assert taskinstance._recalculate_dagrun_queued_at_deadlines is fix.recalculate_queued_at_deadlines
    assert fix.install() is True
    assert taskinstance._recalculate_dagrun_queued_at_deadlines is fix.recalculate_queued_at_deadlines


def test_install_leaves_a_fixed_airflow_alone(monkeypatch):
    def fixed_upstream(dagrun, new_queued_at, session):
        fix.recalculate_queued_at_deadlines(dagrun, new_queued_at, session)

    monkeypatch.setattr(taskinstance, fix.AIRFLOW_FUNCTION, fixed_upstream)
    assert fix.install() is False
    assert taskinstance._recalculate_dagrun_queued_at_deadlines is fixed_upstream


def test_airflows_plugin_manager_loads_the_plugin_and_it_installs_the_fix(airflow_function):
    from airflow import plugins_manager

    plugins_manager._get_plugins.cache_clear()
    try:
        plugins, errors = plugins_manager._get_plugins()
    finally:
        plugins_manager._get_plugins.cache_clear()
    assert errors == {}
    assert "stellar_ops" in {plugin.name for plugin in plugins}
    assert taskinstance._recalculate_dagrun_queued_at_deadlines is fix.recalculate_queued_at_deadlines
