"""An on-call engineer's path through the Airflow UI, in a real Chromium."""

from __future__ import annotations

import json
import re
import shutil
from urllib.parse import unquote

import pytest

from tests.support.faults import gauge

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
def page(airflow):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        page = context.new_page()
        page.set_default_timeout(30_000)
        page.goto(airflow.base_url + "/")
        page.wait_for_url(re.compile(r".*/auth/login.*"))
        page.get_by_label("Username").fill("admin")
        page.get_by_label("Password").fill("admin")
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url(re.compile(r"^(?!.*auth/login).*$"))
        yield page
        browser.close()


def test_an_operator_triggers_a_forced_backup_from_the_trigger_form(
    page, airflow, api, stack, receiver, e2e_prefix
):
    api.unpause("db_backup")
    page.goto(f"{airflow.base_url}/dags/db_backup")
    page.get_by_role("button", name="Trigger Dag").click()
    dialog = page.get_by_role("dialog")
    dialog.locator('label[data-part="root"]:has(input[name="element_force"])').click()
    dialog.get_by_role("button", name="Trigger").click()
    page.wait_for_url(re.compile(r".*/dags/db_backup/runs/[^/]+$"))
    run_id = unquote(page.url.rsplit("/runs/", 1)[1])
    assert api.wait_run("db_backup", run_id) == "success", api.task_states("db_backup", run_id)
    run = api.request("GET", f"/dags/db_backup/dagRuns/{run_id}")
    assert run["conf"]["force"] is True
    published = api.xcom("db_backup", run_id, "publish_backup")
    assert published["key"].startswith(e2e_prefix)
    # what the operator then finds: the backup and its manifest, the metrics, the message
    client = stack.s3_client()
    manifest = json.loads(
        client.get_object(Bucket="stellar-backups", Key=published["manifest_key"])["Body"].read()
    )
    assert manifest["sha256"] == published["sha256"]
    labels = {"job": "stellar_ops", "procedure": "db_backup"}
    assert gauge(stack.url("pushgateway"), "stellar_backup_size_bytes", **labels) == published["size_bytes"]
    assert any(published["key"] in text for text in receiver.texts())
    page.reload()
    badge = page.locator("[data-testid='state-badge']").first
    badge.wait_for()
    assert "success" in badge.inner_text().lower()
