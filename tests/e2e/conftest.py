"""The e2e harness: one ``airflow standalone`` per session on the repository's DAGs and the stack."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.airflow_server import AirflowClient, AirflowStandalone

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
def api(airflow) -> AirflowClient:
    return AirflowClient(airflow.base_url, scheduler_log=airflow.log_path)


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
        "dr": {"work_dir": f"{stack.data_dir}/scratch"},
    }
    api.set_variable("stellar_ops_config", document)
    return prefix
