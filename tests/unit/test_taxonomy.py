"""stellar_ops.taxonomy: the closed vocabulary of tags, owners and severities."""

from __future__ import annotations

import pytest

from stellar_ops import taxonomy


@pytest.mark.parametrize("dag_id", sorted(taxonomy.CATALOGUE))
def test_catalogue_tags_are_allowed(dag_id: str) -> None:
    procedure = taxonomy.CATALOGUE[dag_id]

    assert procedure.dag_id == dag_id
    assert set(procedure.tags) <= taxonomy.allowed_tags()
    assert procedure.tags == [
        f"procedure:{procedure.procedure}",
        f"severity:{procedure.severity}",
        f"owner:{procedure.owner}",
    ]
    assert procedure.severity in taxonomy.SEVERITY_MEANING


def test_every_procedure_has_a_dag() -> None:
    assert {p.procedure for p in taxonomy.CATALOGUE.values()} == set(taxonomy.PROCEDURES)


def test_allowed_tags() -> None:
    tags = taxonomy.allowed_tags()
    assert "severity:P1" in tags
    assert "owner:platform" in tags
    assert "procedure:backup" in tags
    assert "procedure:unknown" not in tags
    assert len(tags) == len(taxonomy.PROCEDURES) + len(taxonomy.SEVERITIES) + len(taxonomy.OWNERS)


def test_procedure_for_known_dag() -> None:
    procedure = taxonomy.procedure_for("db_backup")
    assert (procedure.procedure, procedure.severity, procedure.alert_name) == ("backup", "P2", "BackupFailed")


def test_procedure_for_unknown_dag_names_it() -> None:
    with pytest.raises(KeyError) as info:
        taxonomy.procedure_for("db_bakcup")
    assert "'db_bakcup'" in str(info.value)
    assert "stellar_ops.taxonomy.CATALOGUE" in str(info.value)
