# The two promises of the README: `make run` and `make test`, each installing what it needs.
SHELL := /bin/bash
VENV := .venv/bin
PYTEST_ARGS ?=

.PHONY: deps run stack stack-down test lint unit integration e2e bench freeze docs clean

deps:
	@scripts/bootstrap.sh

run: deps
	@scripts/run.sh

stack: deps
	@$(VENV)/stellar-dev stack up --state-dir .stack --dags-folder dags
	@. .stack/env && $(VENV)/airflow db migrate > .stack/logs/airflow-db-migrate.log 2>&1
	@echo "run: source .stack/env   (then e.g. .venv/bin/airflow dags test db_maintenance)"

stack-down:
	@$(VENV)/stellar-dev stack down --state-dir .stack

lint: deps
	$(VENV)/ruff check .
	$(VENV)/ruff format --check .
	$(VENV)/mypy

test: lint
	$(VENV)/pytest $(PYTEST_ARGS)

unit: deps
	$(VENV)/pytest tests/unit tests/dags $(PYTEST_ARGS)

bench: deps
	$(VENV)/python -m bench $(BENCH_ARGS)

# the generated pages (docs/procedures/<dag_id>.md from each DAG's doc_md, docs/cli.md from the
# parsers; tests/dags/test_generated_docs.py checks them), the configuration reference, and the Prometheus rules with the example runbook base URL (a
# deployment renders its own: stellar-ops monitoring rules --runbook-base-url URL)
docs: deps
	$(VENV)/stellar-dev docs --dags-folder dags --out docs
	$(VENV)/stellar-ops config reference > docs/configuration.md
	$(VENV)/stellar-ops monitoring rules --runbook-base-url https://runbooks.stellarescrow.example/ \
		--job stellar_ops > monitoring/prometheus/stellar_ops_rules.yml

# requirements-runtime.txt (the image's set) and requirements-dev.txt (the tools on top), from .venv
freeze:
	$(VENV)/python scripts/freeze.py

clean:
	rm -rf .airflow .pytest_cache .mypy_cache .ruff_cache build *.egg-info
