"""stellar_ops.registry: the registered procedures, their taxonomy entries and config sections."""

from __future__ import annotations

import pytest

from stellar_ops import registry
from stellar_ops.core import taxonomy


@pytest.mark.parametrize("dag_id", sorted(registry.CATALOGUE))
def test_catalogue_tags_are_allowed(dag_id: str) -> None:
    entry = registry.CATALOGUE[dag_id]

    assert entry.dag_id == dag_id
    assert set(entry.tags) <= registry.allowed_tags()
    assert entry.tags == [
        f"procedure:{entry.procedure}",
        f"severity:{entry.severity}",
        f"owner:{entry.owner}",
    ]
    assert entry.severity in taxonomy.SEVERITY_MEANING
    assert entry.owner in taxonomy.OWNERS


def test_every_procedure_section_is_a_field_of_the_root_config_with_its_model() -> None:
    fields = registry.StellarOpsConfig.model_fields
    for procedure in registry.PROCEDURES:
        assert procedure.section in fields, procedure.name
        assert fields[procedure.section].annotation is procedure.config, procedure.name
        assert procedure.dags, f"{procedure.name} registers no DAG"
    sections = [p.section for p in registry.PROCEDURES]
    assert len(sections) == len(set(sections))


def test_dag_ids_are_unique_across_procedures() -> None:
    dag_ids = [entry.dag_id for p in registry.PROCEDURES for entry in p.dags]
    assert len(dag_ids) == len(set(dag_ids)) == len(registry.CATALOGUE)


def test_allowed_tags() -> None:
    tags = registry.allowed_tags()
    assert "severity:P1" in tags
    assert "owner:platform" in tags
    assert "procedure:backup" in tags
    assert "procedure:unknown" not in tags
    procedures = {entry.procedure for entry in registry.CATALOGUE.values()}
    assert len(tags) == len(procedures) + len(taxonomy.SEVERITIES) + len(taxonomy.OWNERS)


def test_procedure_for_known_dag() -> None:
    entry = registry.procedure_for("db_backup")
    assert (entry.procedure, entry.severity, entry.alert_name) == ("backup", "P2", "BackupFailed")


def test_procedure_for_unknown_dag_names_it() -> None:
    with pytest.raises(KeyError) as info:
        registry.procedure_for("db_bakcup")
    assert "'db_bakcup'" in str(info.value)
    assert "stellar_ops.registry.PROCEDURES" in str(info.value)


def test_every_dag_links_a_known_runbook() -> None:
    from stellar_ops.core.runbooks import RUNBOOKS

    for entry in registry.CATALOGUE.values():
        assert entry.runbook in RUNBOOKS, entry.dag_id


def test_every_alert_a_procedure_raises_links_a_known_runbook_and_names_one_alert() -> None:
    from stellar_ops.core.runbooks import RUNBOOKS

    raised = [alert for p in registry.PROCEDURES for alert in p.alerts]
    for alert in raised:
        assert alert.runbook in RUNBOOKS, alert.name
        assert alert.severity in taxonomy.SEVERITIES, alert.name
    names = [a.name for a in raised] + [entry.alert_name for entry in registry.CATALOGUE.values()]
    assert len(names) == len(set(names)), "an alert name is registered twice"


def test_the_health_procedure_registers_the_wal_archive_alerts() -> None:
    (health,) = [p for p in registry.PROCEDURES if p.name == "health"]
    alerts = {a.name: (a.severity, a.runbook) for a in health.alerts}
    assert alerts["WalArchiveFailing"] == ("P1", "PITR-ARCHIVE")
    assert alerts["WalArchiveLagging"] == ("P2", "PITR-ARCHIVE")
    assert alerts["WalArchiveDisabled"] == ("P2", "PITR-ARCHIVE")
    assert alerts["IndexerLag"] == ("P2", "RB-001")
