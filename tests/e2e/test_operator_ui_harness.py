"""The operator UI harness, proven on the probe DAGs in a real Chromium against a live Airflow: the
trigger form's kinds of input and its refusals, and a rejected approval. Clear, approvals and the
backfill dialog are proven on the product's own DAGs (test_operator_paths.py).

Every action goes through the UI (tests/support/operator_ui.py); REST only reads state.
"""

from __future__ import annotations

import pytest

from tests.support.operator_ui import CHROMIUM, CHROMIUM_ARGS, OperatorUI

pytestmark = [pytest.mark.e2e, pytest.mark.browser]


@pytest.fixture(scope="module")
def browser_page(airflow):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
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


def test_reject_in_required_actions_skips_what_follows(ui, api):
    run_id = ui.trigger_with_defaults("e2e_approval_probe")
    api.wait_for_approval("e2e_approval_probe", run_id, "approve_change")
    assert ui.reject("e2e_approval_probe", run_id, "approve_change")["chosen_options"] == ["Reject"]
    ui.wait_for_state("e2e_approval_probe", run_id, timeout=180)
    assert api.task_states("e2e_approval_probe", run_id) == {
        "approve_change": "success",
        "after_approval": "skipped",
    }
