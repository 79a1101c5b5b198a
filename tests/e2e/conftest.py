"""The e2e harness: one Airflow per session on the repository's DAGs and the stack.

Its auth manager is the deployment's (FAB users and roles): ``api`` is the REST client of
``admin`` (Admin); ``api_as(name)`` is another user's, among :data:`TEST_USERS` (``oncall`` and
``oncall2``, on-call engineers; ``lead`` and ``lead2``, platform leads; each one's password is the
username).
The browser modules share ``ui_as(name)`` (a logged-in Chromium session per user), ``ui`` (admin's)
and ``configure(**sections)`` (the config Variable: the test's prefix plus the sections given).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.airflow_server import TEST_USERS, AirflowClient, AirflowStandalone

HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="session")
def airflow(stack, tmp_path_factory) -> Iterator[AirflowStandalone]:
    server = AirflowStandalone(
        tmp_path_factory.mktemp("airflow-e2e"), stack.env(), extra_dag_folders=[HERE / "dags"]
    )
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def api_as(airflow) -> Callable[[str], AirflowClient]:
    """The REST client of one of the test users, logged in when first asked for."""
    clients: dict[str, AirflowClient] = {}

    def client(user: str) -> AirflowClient:
        if user not in TEST_USERS:
            raise ValueError(f"no test user {user!r}; there are {sorted(TEST_USERS)}")
        if user not in clients:
            clients[user] = AirflowClient(airflow.base_url, user, user, scheduler_log=airflow.log_path)
        return clients[user]

    return client


@pytest.fixture(scope="session")
def api(api_as) -> AirflowClient:
    return api_as("admin")


@pytest.fixture
def e2e_prefix(api, stack, request) -> str:
    """A private S3 prefix for one test, set in the stellar_ops_config Variable through REST."""
    name = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:50]
    prefix = f"e2e/{name}/"
    document = {
        "backup": {
            "bucket": "stellar-backups",
            "prefix": prefix,
            "local_dir": f"{stack.data_dir}/e2e-local/{name}",
        },
        # the drill's point-in-time rehearsal: on only where a test asks for it (test_operator_paths)
        "dr": {"work_dir": f"{stack.data_dir}/scratch", "pitr_rehearsal": "off"},
        "pitr": stack.ops_config()["pitr"],  # the stack's archive and its barman-cloud
    }
    api.set_variable("stellar_ops_config", document)
    return prefix


# -- the browser: shared by the modules that drive the UI as operators --------------------------


@pytest.fixture(scope="module")
def ui_as(airflow, tmp_path_factory):
    """One logged-in browser session per person (password = name), opened when first asked for;
    one Chromium per module."""
    from tests.support.operator_ui import browser_sessions  # Playwright: only where a module drives the UI

    with browser_sessions(
        airflow.base_url, lambda user: tmp_path_factory.mktemp(f"operator-ui-{user}")
    ) as session:
        yield session


@pytest.fixture(scope="module")
def ui(ui_as):
    return ui_as("admin")


@pytest.fixture
def configure(api, stack, e2e_prefix):
    """Set the config Variable: the test's own prefix, plus the sections given."""

    def apply(**sections):
        document = {
            "backup": {
                "bucket": "stellar-backups",
                "prefix": e2e_prefix,
                "local_dir": f"{stack.data_dir}/e2e-local/{e2e_prefix.strip('/').replace('/', '-')}",
            },
            "dr": {"work_dir": f"{stack.data_dir}/scratch", "pitr_rehearsal": "off"},
            "alerts": {"alertmanager_severities": ["P1", "P2"]},  # as the stack's own config
            "pitr": stack.ops_config()["pitr"],
        }
        for name, values in sections.items():
            document[name] = {**document.get(name, {}), **values}
        api.set_variable("stellar_ops_config", document)
        return document

    return apply
