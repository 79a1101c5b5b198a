"""The image's Python side, without Docker: a new virtualenv with requirements-runtime.txt and the
package's wheel only, as the Dockerfile installs them. Every runtime module imports and every DAG
parses there, so a package the code needs but the runtime set lacks fails here, not in production.

One virtualenv per session (about 25 s): pip's index lookups, one pin after another, are most of
an install's time, so four pip processes fetch the wheels at once (through pip's cache, where it
has them), and one installs them all.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.packaging.pins import REPO, RUNTIME_FILE

CHECK = Path(__file__).with_name("runtime_check.py")
PYTHON = "python3.11"
EXPECTED_DAGS = 13
# as docker-compose.yaml's DAG processor parses the DAGs: with their deadlines and the docker queue
DEPLOYED_ENV = {"STELLAR_OPS_DEADLINES": '{"enabled": true}', "STELLAR_OPS_DOCKER_QUEUE": "docker"}


DOWNLOADERS = 4  # pip looks each pin up in turn: the lookups, not the unpacking, are spread out


def run(command: list[str], *, timeout: int, **kwargs) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, **kwargs)
    assert result.returncode == 0, f"{' '.join(command)}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


def pip_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


def run_together(commands: dict[str, list[str]], logs: Path, timeout: int) -> None:
    """Run the commands at once, each writing to a log of its own; each must succeed."""
    logs.mkdir()
    started = {}
    try:
        for what, command in commands.items():
            with (logs / f"{what}.log").open("w") as log:
                started[what] = subprocess.Popen(
                    command, stdout=log, stderr=subprocess.STDOUT, text=True, env=pip_env()
                )
        deadline = time.monotonic() + timeout
        for what, process in started.items():
            returncode = process.wait(timeout=max(1, deadline - time.monotonic()))
            output = (logs / f"{what}.log").read_text()[-3000:]
            assert returncode == 0, f"{what}: {' '.join(commands[what])}\n{output}"
    finally:
        for process in started.values():
            if process.poll() is None:
                process.kill()
                process.wait()


@pytest.fixture(scope="module")
def runtime_venv(tmp_path_factory) -> Path:
    """A virtualenv holding requirements-runtime.txt and the stellar-ops wheel, nothing else."""
    interpreter = shutil.which(PYTHON)
    assert interpreter, f"{PYTHON} is not on PATH"
    root = tmp_path_factory.mktemp("runtime-venv")
    started = time.monotonic()
    # the Dockerfile's first stage, on a copy of what it copies: a build in the work tree would
    # leave include/stellar_ops.egg-info beside the editable install (and a second plugin)
    source = root / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    shutil.copytree(
        REPO / "include", source / "include", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info")
    )
    wheels = root / "wheels"
    pins = [line for line in RUNTIME_FILE.read_text().splitlines() if line and not line.startswith("#")]
    pip = [sys.executable, "-m", "pip"]  # the same 3.11 as the new virtualenv: the same wheel tags
    commands = {
        "venv": [interpreter, "-m", "venv", str(root / "venv")],
        "package wheel": [*pip, "wheel", "-q", "--no-deps", "--wheel-dir", str(wheels), str(source)],
    }
    for n in range(DOWNLOADERS):
        download = [*pip, "download", "-q", "--no-deps", "--only-binary=:all:", "--dest", str(wheels)]
        commands[f"download {n}"] = download + pins[n::DOWNLOADERS]
    run_together(commands, root / "logs", timeout=900)
    assert len(list(wheels.glob("*.whl"))) == len(pins) + 1, sorted(p.name for p in wheels.iterdir())
    venv = root / "venv"
    python = str(venv / "bin" / "python")
    # --no-deps, as the Dockerfile installs the wheel: pip must not fill in what the pins lack;
    # pip check then says whether the set is closed and consistent
    install = [python, "-m", "pip", "install", "-q", "--no-deps", "--no-compile"]
    run(install + [str(w) for w in wheels.glob("*.whl")], timeout=900, env=pip_env())
    run([python, "-m", "pip", "check"], timeout=120, env=pip_env())
    print(f"runtime virtualenv built in {time.monotonic() - started:.1f}s")
    return venv


def check(venv: Path, tmp_path: Path, *options: str) -> dict:
    """runtime_check.py in the virtualenv, from a directory where nothing of the repo is importable."""
    home = tmp_path / "airflow-home"
    home.mkdir()
    env = {
        "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}",
        "HOME": os.environ.get("HOME", str(tmp_path)),
        "LANG": "C.UTF-8",
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
        **DEPLOYED_ENV,
    }
    result = run(
        [str(venv / "bin" / "python"), "-I", str(CHECK), str(REPO / "dags"), *options],
        timeout=300,
        cwd=tmp_path,
        env=env,
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_every_runtime_module_imports_and_every_dag_parses_with_the_runtime_set_only(runtime_venv, tmp_path):
    report = check(runtime_venv, tmp_path)
    assert Path(report["package_file"]).is_relative_to(runtime_venv), "not the installed wheel"
    assert report["import_errors"] == {}, "\n".join(report["import_errors"].values())
    assert "stellar_ops.registry" in report["imported"]
    assert "stellar_ops.adapters.common.plugin" in report["imported"]
    # the wheel does not hold the development tooling, and nothing the runtime imports needs it
    assert report["dev_importable"] is False
    assert report["dev_loaded"] == []
    assert report["dag_import_errors"] == {}, "\n".join(report["dag_import_errors"].values())
    assert report["serialization_errors"] == {}, "\n".join(report["serialization_errors"].values())
    assert len(report["dag_ids"]) == EXPECTED_DAGS
    assert sorted(report["dag_ids"]) == sorted(p.stem for p in (REPO / "dags").glob("*.py"))


def test_a_package_the_runtime_set_lacked_would_be_reported(runtime_venv, tmp_path):
    """The check itself: with pydantic made unimportable, the modules that import it are named."""
    report = check(runtime_venv, tmp_path, "--imports-only", "--hide", "pydantic")
    assert "stellar_ops.core.config" in report["import_errors"]
    assert "No module named 'pydantic'" in report["import_errors"]["stellar_ops.core.config"]


def test_an_importable_development_tooling_would_be_reported(runtime_venv, tmp_path):
    """The check itself: with dev/ on sys.path, as if the wheel held stellar_ops_dev, it says so
    (and that the runtime modules still load none of it)."""
    report = check(runtime_venv, tmp_path, "--imports-only", "--path", str(REPO / "dev"))
    assert report["dev_importable"] is True
    assert report["import_errors"] == {}, "\n".join(report["import_errors"].values())
    assert report["dev_loaded"] == []


def test_the_runtime_virtualenv_has_no_development_tool(runtime_venv):
    site = next((runtime_venv / "lib").glob("python3.*/site-packages"))
    tools = {"pytest", "_pytest", "playwright", "moto", "mypy", "ruff", "stellar_ops_dev", "stellar_ops/dev"}
    present = sorted(name for name in tools if (site / name).exists())
    assert not present, f"the runtime virtualenv holds {present}"
