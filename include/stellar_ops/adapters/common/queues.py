"""Which Celery queue runs the tasks that talk to the Docker daemon.

Only the workers of that queue mount the Docker socket (docker-compose.yaml's
``airflow-worker-docker``), so no other component can reach the daemon. The queue comes from the
DAG processor's environment (``STELLAR_OPS_DOCKER_QUEUE``), read when a DAG file is parsed: no
I/O, and unset (the local stack, the tests) means the default queue, whose workers are all of them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

DOCKER_QUEUE_ENV = "STELLAR_OPS_DOCKER_QUEUE"


def docker_queue(env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Task arguments for a task that may use the Docker daemon: ``{"queue": ...}`` or nothing."""
    queue = (os.environ if env is None else env).get(DOCKER_QUEUE_ENV, "").strip()
    return {"queue": queue} if queue else {}
