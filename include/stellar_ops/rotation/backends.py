"""The key store and the restart backend the configuration names, built from what the caller has.

The DAG's adapters and the CLI reach Secrets Manager and Docker differently (the amazon and
docker providers' hooks, or the environment); they hand in how to get each client.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stellar_ops.core.errors import ConfigError
from stellar_ops.core.http import HttpEndpoint
from stellar_ops.rotation.config import RotationConfig
from stellar_ops.rotation.keystore import EnvFileStore, KeyStore, SecretsManagerStore
from stellar_ops.rotation.restart import CommandRestart, DockerRestart, HttpReload, Restarter


@dataclass
class Tools:
    """What the rotation steps act on: the key store, the API and how it restarts."""

    keystore: KeyStore
    restarter: Restarter
    api: HttpEndpoint


def env_file_path(settings: RotationConfig, env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    path = settings.env_file or env.get("STELLAR_API_ENV_FILE")
    if not path:
        raise ConfigError(
            "rotation.env_file is not set and STELLAR_API_ENV_FILE is not in the environment: "
            "name the API's .env file"
        )
    return Path(path)


def build_tools(
    settings: RotationConfig,
    api: HttpEndpoint | None,
    *,
    secrets_client: Callable[[], Any],
    docker_client: Callable[[], Any | None],
    env: Mapping[str, str] | None = None,
) -> Tools:
    if api is None:
        raise ConfigError(
            "the API is not configured (connections.api, or STELLAR_API_URL and STELLAR_API_KEY): "
            "a rotation must test the keys against it"
        )
    keystore: KeyStore
    if settings.key_store == "env_file":
        keystore = EnvFileStore(env_file_path(settings, env))
    else:
        keystore = SecretsManagerStore(secrets_client(), settings.secret_prefix)
    restarter: Restarter
    if settings.restart == "http_reload":
        restarter = HttpReload(api, settings.reload_path)
    elif settings.restart == "command":
        restarter = CommandRestart(list(settings.restart_command))
    else:
        client = docker_client()
        if client is None:
            raise ConfigError(
                "rotation.restart is 'docker' but no Docker connection is configured (connections.docker)"
            )
        restarter = DockerRestart(client, settings.docker_container)
    return Tools(keystore, restarter, api)
