"""Every DAG triggers from the UI's form with its defaults.

The UI validates the form's values as JSON Schema and treats an empty string as no value: a
``type="string"`` param defaulting to ``""`` blocks the Trigger button with no message. So each
default is validated here the way the form validates it; optional params are typed to allow null.
"""

from __future__ import annotations

from pathlib import Path

import jsonschema
import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def dags():
    from airflow.dag_processing.dagbag import DagBag

    return list(DagBag(str(REPO / "dags")).dags.values())


def form_errors(params) -> list[str]:
    """What the trigger form would flag with every field left at its default."""
    errors = []
    for name in params:
        param = params.get_param(name)
        value = None if param.value == "" else param.value
        try:
            jsonschema.validate(value, param.schema)
        except jsonschema.ValidationError as exc:
            errors.append(f"{name}: {exc.message}")
    return errors


def test_every_dag_triggers_with_its_defaults(dags):
    for dag in dags:
        assert form_errors(dag.params) == [], dag.dag_id
        dag.params.validate()  # Airflow's own validation of the run's conf


def test_the_check_catches_an_empty_string_default():
    from airflow.sdk import Param
    from airflow.sdk.definitions.param import ParamsDict

    params = ParamsDict(
        {
            "compare_to": Param("", type="string", description="empty compares with last week's"),
            "backup": Param(None, type=["null", "string"], description="optional"),
        }
    )
    assert form_errors(params) == ["compare_to: None is not of type 'string'"]
