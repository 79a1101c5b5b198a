"""Session-wide test setup: the Airflow environment, the local stack of real servers, helpers.

The environment is set here, before anything imports Airflow, so every DAG parsed in the test
process (DagBag, ``dag.test()``) sees a private AIRFLOW_HOME and fast retries.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
_AIRFLOW_HOME = Path(tempfile.mkdtemp(prefix="stellar-tests-airflow-"))
os.environ["AIRFLOW_HOME"] = str(_AIRFLOW_HOME)
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(REPO / "dags")
os.environ["AIRFLOW__CORE__PLUGINS_FOLDER"] = str(REPO / "plugins")
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["STELLAR_OPS_RETRY_DELAY_SECONDS"] = "1"
# dag.test() cannot run a DAG that has a deadline: the deadlines are tested under a live scheduler
os.environ["STELLAR_OPS_DEADLINES"] = '{"enabled": false}'

pytest_plugins = ["tests.support.fixtures"]


def pytest_unconfigure(config) -> None:
    """The session's private AIRFLOW_HOME (its SQLite metadata DB and logs) goes with the session."""
    shutil.rmtree(_AIRFLOW_HOME, ignore_errors=True)
