"""The image's build context and what the Dockerfile installs, with no Docker engine: the context
is computed by docker-py's implementation of .dockerignore (``docker.utils.build.exclude_paths``,
what ``docker build`` through docker-py sends)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.packaging.pins import REPO

# What local runs and builds leave in the work tree (see .gitignore), and what must never reach
# an image: the secrets of .env, the tests, the development virtualenv and tooling (dev/).
LEFT_BY_LOCAL_RUNS = [
    ".venv/bin/python",
    ".venv/lib/python3.11/site-packages/pytest/__init__.py",
    ".stack/env",
    ".stack/logs/minio.log",
    ".airflow/airflow.db",
    ".git/HEAD",
    ".env",
    ".mypy_cache/3.11/cache.db",
    ".ruff_cache/CACHEDIR.TAG",
    ".pytest_cache/v/cache/lastfailed",
    "build/lib/stellar_ops/__init__.py",
    "bench/results/parse.json",
    "tests/conftest.py",
    "dev/pyproject.toml",
    "dev/stellar_ops_dev/cli.py",
    "dev/stellar_ops_dev/sql/demo_schema.sql",
    "dev/stellar_ops_dev.egg-info/PKG-INFO",
    "include/stellar_ops.egg-info/PKG-INFO",
    "include/stellar_ops/__pycache__/registry.cpython-311.pyc",
    "include/stellar_ops/core/__pycache__/config.cpython-311.pyc",
    "dags/__pycache__/db_backup.cpython-311.pyc",
    "stellar_ops-0.1.0-py3-none-any.whl",
]


def dockerignore_patterns() -> list[str]:
    """The patterns as docker-py reads .dockerignore (``docker.api.build``)."""
    lines = [line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


def context(root: Path) -> set[str]:
    from docker.utils.build import exclude_paths

    return exclude_paths(str(root), dockerignore_patterns(), dockerfile="Dockerfile")


def copied_sources() -> list[str]:
    """The context paths the Dockerfile's COPY instructions read (not those from another stage)."""
    sources = []
    for line in (REPO / "Dockerfile").read_text().splitlines():
        words = line.split()
        if words[:1] != ["COPY"] or any(w.startswith("--from=") for w in words):
            continue
        sources += [w for w in words[1:-1] if not w.startswith("--")]
    return sources


@pytest.fixture
def work_tree(tmp_path: Path) -> Path:
    """A work tree after `make test` and `make run`: the repository's files and what they leave."""
    for name in copied_sources() + ["Dockerfile", ".dockerignore"]:
        source = REPO / name
        target = tmp_path / name
        if source.is_dir():
            (target / "placeholder.py").parent.mkdir(parents=True, exist_ok=True)
            (target / "placeholder.py").write_text("")
        else:
            target.write_bytes(source.read_bytes())
    for name in LEFT_BY_LOCAL_RUNS:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("")
    return tmp_path


def test_the_context_leaves_out_venv_stack_git_secrets_tests_and_caches(work_tree):
    sent = context(work_tree)
    leaked = sorted(name for name in LEFT_BY_LOCAL_RUNS if name in sent)
    assert not leaked, f"the build context holds {leaked}"
    for top in (".venv", ".stack", ".git", ".airflow", ".env", "tests", "build", "bench", "dev"):
        assert top not in sent, f"the build context holds {top}"


def test_the_context_holds_everything_the_dockerfile_copies(work_tree):
    sent = context(work_tree)
    for name in copied_sources():
        assert name in sent, f"the Dockerfile copies {name}, which .dockerignore leaves out"
    assert "include/placeholder.py" in sent


def test_the_repository_context_holds_the_package_and_nothing_of_the_development_tree():
    sent = context(REPO)
    assert {p.partition("/")[0] for p in sent} <= set(copied_sources()) | {"Dockerfile", ".dockerignore"}
    assert "include/stellar_ops/registry.py" in sent
    # the development tooling is its own distribution, outside include/: no part of it is sent
    assert (REPO / "dev" / "stellar_ops_dev" / "cli.py").exists()
    assert not [p for p in sent if p.startswith("dev/") or "stellar_ops_dev" in p or "/dev/" in p]
    assert not [p for p in sent if "__pycache__" in p or p.endswith((".pyc", ".egg-info"))]


def test_the_image_installs_the_runtime_set_and_the_package_as_a_wheel_built_in_a_first_stage():
    text = (REPO / "Dockerfile").read_text()
    stages = re.findall(r"^FROM\s+(\S+)(?:\s+AS\s+(\S+))?", text, re.M)
    assert len(stages) == 2 and stages[0][1], "a build stage, then the image"
    build, image = text.split("\nFROM ", 2)[1:]
    assert re.search(r"pip wheel [^\n]*--no-deps", build)
    assert "requirements" not in build
    assert "pip install --no-cache-dir -r /opt/stellar-ops/requirements-runtime.txt" in image
    assert f"COPY --from={stages[0][1]} " in image
    assert re.search(r"pip install [^\n]*--no-deps [^\n]*\.whl", image)
    assert "requirements.txt" not in text and "requirements-dev.txt" not in text
    assert "include" not in [
        w for line in image.splitlines() if line.startswith("COPY") for w in line.split()
    ]


def test_the_image_has_barman_cloud_in_a_venv_of_its_own_for_point_in_time_recovery():
    image = (REPO / "Dockerfile").read_text().split("\nFROM ", 2)[2]
    assert "python -m venv /opt/pitr-venv" in image
    assert re.search(
        r"/opt/pitr-venv/bin/pip install [^\n]*--no-deps -r /opt/stellar-ops/requirements-pitr.txt", image
    )
    # its pins (boto3, botocore...) stay out of Airflow's environment
    assert not re.search(r"(?<!/opt/pitr-venv/bin/)pip install [^\n]*requirements-pitr", image)
    assert "requirements-pitr.txt" in context(REPO)
