"""``airflow_settings.yaml`` (the Astro CLI's format) turned into Airflow's import files.

Values may reference the environment as ``${NAME}``, so one file serves any stack: ``make run``
exports the stack's ports and credentials, and ``stellar-ops airflow-settings`` writes the
files that ``airflow connections|variables|pools import`` read.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from stellar_ops.core.errors import ConfigError

_REFERENCE = re.compile(r"\$\{([A-Z0-9_]+)\}")
_CONNECTION_FIELDS = {
    "conn_type": "conn_type",
    "conn_host": "host",
    "conn_schema": "schema",
    "conn_login": "login",
    "conn_password": "password",
    "conn_port": "port",
}


def _expand(value: Any, env: Mapping[str, str], where: str) -> Any:
    if isinstance(value, str):

        def lookup(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in env:
                raise ConfigError(f"airflow_settings.yaml {where} uses ${{{name}}}, which is not set")
            return env[name]

        return _REFERENCE.sub(lookup, value)
    if isinstance(value, dict):
        return {k: _expand(v, env, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, list):
        return [_expand(v, env, where) for v in value]
    return value


def _require(item: Any, name: str, where: str) -> None:
    if not isinstance(item, dict) or item.get(name) in (None, ""):
        raise ConfigError(f"airflow_settings.yaml {where} needs {name}")


def _port(value: Any, where: str, low: int = 1) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ConfigError(f"airflow_settings.yaml {where} must be a whole number, got {value!r}") from None
    if not low <= number <= 65535:
        raise ConfigError(f"airflow_settings.yaml {where} is out of range: {number}")
    return number


def load(path: Path, env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Connections, variables and pools in the shapes the ``airflow ... import`` commands take."""
    env = os.environ if env is None else env
    try:
        document = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from None
    section = document.get("airflow") or {}
    connections: dict[str, dict[str, Any]] = {}
    for index, item in enumerate(section.get("connections") or []):
        where = f"connections[{index}]"
        if "conn_id" not in item or "conn_type" not in item:
            raise ConfigError(f"airflow_settings.yaml {where} needs conn_id and conn_type")
        item = _expand(item, env, where)
        conn: dict[str, Any] = {}
        for source, target in _CONNECTION_FIELDS.items():
            value = item.get(source)
            if value not in (None, ""):
                conn[target] = _port(value, f"{where}.conn_port") if target == "port" else value
        extra = item.get("conn_extra")
        if extra:
            conn["extra"] = json.dumps(extra) if isinstance(extra, dict) else str(extra)
        connections[str(item["conn_id"])] = conn
    variables: dict[str, Any] = {}
    for index, item in enumerate(section.get("variables") or []):
        item = _expand(item, env, f"variables[{index}]")
        _require(item, "variable_name", f"variables[{index}]")
        value = item.get("variable_value")
        variables[str(item["variable_name"])] = value if isinstance(value, str) else json.dumps(value)
    pools: dict[str, Any] = {}
    for index, item in enumerate(section.get("pools") or []):
        _require(item, "pool_name", f"pools[{index}]")
        pools[str(item["pool_name"])] = {
            "slots": _port(item.get("pool_slot", 1), f"pools[{index}].pool_slot", low=0),
            "description": item.get("pool_description") or "",
            "include_deferred": False,
        }
    return {"connections": connections, "variables": variables, "pools": pools}


def write_import_files(path: Path, out_dir: Path, env: Mapping[str, str] | None = None) -> dict[str, Path]:
    """Write ``connections.json``, ``variables.json`` and ``pools.json`` (mode 0600) into ``out_dir``."""
    settings = load(path, env)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = {}
    for name in ("connections", "variables", "pools"):
        target = out_dir / f"{name}.json"
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.fchmod(fd, 0o600)  # O_CREAT's mode does not apply to a file that already existed
        with os.fdopen(fd, "w") as handle:
            json.dump(settings[name], handle, indent=2)
        written[name] = target
    return written
