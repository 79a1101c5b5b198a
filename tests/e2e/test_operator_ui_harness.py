"""The operator UI harness, proven on the probe DAGs in a real Chromium against a live Airflow.

Every action goes through the UI (tests/support/operator_ui.py); REST only reads state and sets
the Variable a probe task waits for.
"""

from __future__ import annotations

import re
import shutil

import pytest

from tests.support.operator_ui import OperatorUI

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="module")
def browser_page(airflow):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        page = context.new_page()
        page.set_default_timeout(30_000)
        yield page
        browser.close()


@pytest.fixture(scope="module")
def logged_in(browser_page, airflow, tmp_path_factory) -> OperatorUI:
    ui = OperatorUI(browser_page, airflow.base_url, tmp_path_factory.mktemp("operator-ui"))
    ui.login("admin", "admin")
    return ui


@pytest.fixture
def ui(logged_in, tmp_path) -> OperatorUI:
    """The logged-in harness; a failing test leaves its screenshots in its own tmp dir."""
    logged_in.screenshot_dir = tmp_path
    return logged_in


def test_trigger_with_defaults_runs_to_success(ui, api):
    api.wait_for_dag("e2e_params_probe")
    run_id = ui.trigger_with_defaults("e2e_params_probe")
    assert ui.wait_for_state("e2e_params_probe", run_id, timeout=180) == "success"
    assert api.run_state("e2e_params_probe", run_id) == "success"
    assert api.xcom("e2e_params_probe", run_id, "echo") == {
        "dry_run": False,
        "label": "nightly",
        "batch_size": 10,
        "mode": "fast",
        "note": None,
    }


def test_trigger_sets_each_kind_of_param(ui, api):
    params = {"dry_run": True, "label": "weekly", "batch_size": 25, "mode": "thorough", "note": "from the UI"}
    run_id = ui.trigger("e2e_params_probe", params=params)
    assert api.request("GET", f"/dags/e2e_params_probe/dagRuns/{run_id}")["conf"] == params
    assert ui.wait_for_state("e2e_params_probe", run_id, timeout=180) == "success"
    assert api.xcom("e2e_params_probe", run_id, "echo") == params


def test_a_blocked_trigger_button_names_the_fields_in_error(ui, api):
    before = len(api.dag_runs("e2e_params_probe"))
    with pytest.raises(
        AssertionError, match=r"disabled; fields in error: \{'label': 'This field is required'\}"
    ):
        ui.trigger("e2e_params_probe", params={"label": ""})
    assert len(api.dag_runs("e2e_params_probe")) == before


def test_clear_a_failed_task_in_the_ui_reruns_it(ui, api):
    api.wait_for_dag("e2e_clear_probe")
    api.set_variable("e2e_clear_probe_gate", "closed")
    run_id = ui.trigger_with_defaults("e2e_clear_probe")
    assert ui.wait_for_state("e2e_clear_probe", run_id, timeout=180) == "failed"
    assert ui.task_state("e2e_clear_probe", run_id, "gated") == "failed"
    assert api.task_states("e2e_clear_probe", run_id) == {"gated": "failed", "after_gate": "upstream_failed"}

    api.set_variable("e2e_clear_probe_gate", "open")
    affected = ui.clear_task("e2e_clear_probe", run_id, "gated", options={"downstream", "only_failed"})
    assert sorted(affected) == ["after_gate", "gated"]
    assert ui.wait_for_state("e2e_clear_probe", run_id, timeout=180) == "success"
    assert api.task_states("e2e_clear_probe", run_id) == {"gated": "success", "after_gate": "success"}
    assert api.task_tries("e2e_clear_probe", run_id)["gated"] == 2


def test_approve_in_required_actions(ui, api):
    api.wait_for_dag("e2e_approval_probe")
    run_id = ui.trigger_with_defaults("e2e_approval_probe")
    # the scheduler must have seen the task pause before anyone answers (see wait_for_approval)
    api.wait_for_approval("e2e_approval_probe", run_id, "approve_change")
    answer = ui.approve("e2e_approval_probe", run_id, "approve_change")
    assert answer["chosen_options"] == ["Approve"]
    assert answer["responded_by"]["name"] == "admin"
    assert ui.wait_for_state("e2e_approval_probe", run_id, timeout=180) == "success"
    assert api.task_states("e2e_approval_probe", run_id) == {
        "approve_change": "success",
        "after_approval": "success",
    }


def test_reject_in_required_actions_skips_what_follows(ui, api):
    run_id = ui.trigger_with_defaults("e2e_approval_probe")
    api.wait_for_approval("e2e_approval_probe", run_id, "approve_change")
    assert ui.reject("e2e_approval_probe", run_id, "approve_change")["chosen_options"] == ["Reject"]
    ui.wait_for_state("e2e_approval_probe", run_id, timeout=180)
    assert api.task_states("e2e_approval_probe", run_id) == {
        "approve_change": "success",
        "after_approval": "skipped",
    }


def test_backfill_from_the_dialog_creates_one_run_per_day(ui, api):
    api.wait_for_dag("e2e_backfill_probe")
    backfill_id = ui.backfill(
        "e2e_backfill_probe",
        "2026-03-01",
        "2026-03-03",
        reprocess_behavior="failed",
        max_active_runs=2,
        expect_runs=3,
    )
    (backfill,) = api.backfills("e2e_backfill_probe")
    assert backfill["id"] == backfill_id
    assert backfill["reprocess_behavior"] == "failed"
    assert backfill["max_active_runs"] == 2
    assert api.request("GET", "/dags/e2e_backfill_probe")["is_paused"] is False  # the dialog's "Unpause"
    runs = {}
    for _ in range(90):
        runs = {r["logical_date"][:10]: r for r in api.dag_runs("e2e_backfill_probe")}
        if len(runs) == 3 and all(r["state"] in ("success", "failed") for r in runs.values()):
            break
        ui.page.wait_for_timeout(2000)
    assert sorted(runs) == ["2026-03-01", "2026-03-02", "2026-03-03"]
    assert {r["run_type"] for r in runs.values()} == {"backfill"}
    for run in runs.values():
        assert ui.wait_for_state("e2e_backfill_probe", run["dag_run_id"], "success", timeout=60) == "success"
    assert re.match(r"backfill__2026-03-0[123]", next(iter(runs.values()))["dag_run_id"])
