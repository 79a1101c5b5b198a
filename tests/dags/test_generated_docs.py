"""The generated pages of docs/ are current: each DAG's runbook page and the CLI reference.

``docs/procedures/<dag_id>.md`` is its DAG's ``doc_md`` and ``docs/cli.md`` the parsers' help, both
rendered by ``make docs`` (:mod:`stellar_ops_dev.docs`); an edit of a runbook or of a command that
is not rendered again fails here. ``docs/configuration.md`` is checked the same way in
``tests/integration/cli/test_cli.py``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from stellar_ops_dev.docs import dag_doc, generated_pages, stale_procedure_pages

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs"
DAGS = REPO / "dags"
PAGES = generated_pages(DAGS)


@pytest.mark.parametrize("page", sorted(PAGES))
def test_the_generated_page_is_current(page: str) -> None:
    path = DOCS / page
    assert path.exists(), f"docs/{page} is missing: run `make docs`"
    assert path.read_text() == PAGES[page], f"docs/{page} is out of date: run `make docs`"


def test_no_procedure_page_outlives_its_dag() -> None:
    stale = [p.name for p in stale_procedure_pages(DOCS, DAGS)]
    assert stale == [], f"pages of DAGs that are gone: {stale}: run `make docs`"


def test_a_page_is_the_dags_doc_md() -> None:
    from airflow.dag_processing.dagbag import DagBag

    dag = DagBag(str(DAGS / "db_backup.py")).dags["db_backup"]
    assert dag_doc(DAGS / "db_backup.py") == dag.doc_md.strip("\n") + "\n"
    assert PAGES["procedures/db_backup.md"].endswith(dag_doc(DAGS / "db_backup.py"))


def test_an_edited_runbook_makes_its_page_stale(tmp_path: Path) -> None:
    dag_file = tmp_path / "db_backup.py"
    dag_file.write_text((DAGS / "db_backup.py").read_text().replace("## Backfill", "## Backfills", 1))
    edited = generated_pages(tmp_path)["procedures/db_backup.md"]
    assert edited != (DOCS / "procedures" / "db_backup.md").read_text()
