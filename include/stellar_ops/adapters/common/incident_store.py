"""Where a DAG's open incident is kept: one Airflow Variable per event, put together on read.

Why one record per event: the callbacks that add to an incident run at the same time (twenty
mapped tasks failing at once each run their failure notifier, in as many worker processes), and
an incident kept as one Variable updated by read-modify-write loses the events of every writer
but the last. An atomic update of that one Variable is not available: the Task SDK and its
Execution API have ``get``, ``set`` and ``delete`` for Variables but no compare-and-swap, no
transaction and no lock a callback could take. What they do guarantee is that one ``set`` is one
write in the metadata DB; so each event is written once, under a key of its own, and nothing is
ever rewritten:

- :func:`add` writes ``stellar_ops_incident__<dag_id>__<UTC time>Z_<digest>`` (see
  :func:`stellar_ops.core.incidents.event_key`): the digest covers the run, task, map index,
  try, kind and a random salt, so two writers never share a key.
- :func:`read` lists the DAG's keys (``Variable.keys(prefix=...)``, new in Airflow 3.3: one
  ``GET /variables/keys`` of the Execution API, with the prefix's ``_`` taken literally), keeps
  those of this DAG alone (:func:`~stellar_ops.core.incidents.is_event_key`), reads them and sorts
  the events by time, keeping the first and latest :data:`~stellar_ops.core.incidents.MAX_EVENTS`.
- :func:`close` deletes exactly the keys :func:`read` listed: an event written after the read (a
  newer run failing while the recovery is announced) stays, and opens the next incident.

Where it runs: a task's callbacks in a worker (its task supervisor), the DAG's success callback in
the DAG processor and the deadline callbacks in the triggerer all answer ``GetVariableKeys``, and
so does ``dag.test()``'s in-process supervisor for the task callbacks. ``dag.test()`` runs the DAG's
own callbacks in its own process, with no supervisor (``Variable.keys``, ``set`` and ``delete``
fail there with ``cannot import name 'SUPERVISOR_COMMS'``): the store then reads and writes the
metadata DB directly (``airflow.models.variable.Variable``). The CLI (``stellar-ops incident
draft``) reads through the REST API (``GET /api/v2/variables?variable_key_prefix_pattern=...``).

The incident of the one-Variable format (``stellar_ops_incident__<dag_id>``, exactly), left by an
earlier version, is read as events too, and deleted on close, so an incident open during the
upgrade is not lost. ``Variable.keys`` reads the metadata DB only, never a secrets backend: these
Variables are written by the callbacks themselves, so they are always there.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import asdict
from typing import Any, Protocol

from stellar_ops.core.incidents import (
    MAX_EVENTS,
    Event,
    StoredIncident,
    assemble,
    event_key,
    event_key_prefix,
    is_event_key,
    legacy_key,
)
from stellar_ops.core.taxonomy import DagEntry


class Variables(Protocol):
    """What of ``airflow.sdk.Variable`` the store uses (a fake stands in for it in unit tests)."""

    def get(self, key: str, default: Any = ...) -> Any: ...

    def set(self, key: str, value: Any) -> None: ...

    def delete(self, key: str) -> None: ...

    def keys(self, prefix: str | None = None) -> Any: ...


class _MetadataDb:
    """The Variables in the metadata DB itself, for a process with no task supervisor to ask."""

    def get(self, key: str, default: Any = None) -> Any:
        from airflow.models.variable import Variable

        return Variable.get(key, default_var=default)

    def set(self, key: str, value: Any) -> None:
        from airflow.models.variable import Variable

        Variable.set(key, value)

    def delete(self, key: str) -> None:
        from airflow.models.variable import Variable

        Variable.delete(key)

    def keys(self, prefix: str | None = None) -> list[str]:
        from airflow.models.variable import Variable
        from airflow.utils.session import create_session
        from sqlalchemy import select

        query = select(Variable.key).order_by(Variable.key)
        if prefix is not None:
            query = query.where(Variable.key.startswith(prefix, autoescape=True))
        with create_session() as session:
            return list(session.scalars(query))


def _sdk_variables() -> Variables:
    """The Task SDK's Variables where a supervisor answers (a task's callbacks in a worker, the DAG
    processor's DAG callbacks, the triggerer's); the metadata DB where none does: ``dag.test()``
    runs the DAG's own callbacks in its process, where ``Variable.keys`` (and ``set``, ``delete``)
    fail with ``cannot import name 'SUPERVISOR_COMMS'``. The same test as Airflow's own
    ``airflow.models.variable.Variable`` makes."""
    import sys

    if not hasattr(sys.modules.get("airflow.sdk.execution_time.task_runner"), "SUPERVISOR_COMMS"):
        return _MetadataDb()
    from airflow.sdk import Variable

    return Variable  # type: ignore[return-value]


def add(dag_id: str, event: Event, variables: Variables | None = None) -> str:
    """Write ``event`` to ``dag_id``'s open incident (opening one); its key."""
    store = variables or _sdk_variables()
    key = event_key(dag_id, event, secrets.token_hex(8))
    store.set(key, json.dumps(asdict(event)))
    return key


def read(entry: DagEntry, variables: Variables | None = None) -> StoredIncident | None:
    """``entry``'s DAG's open incident, or None."""
    store = variables or _sdk_variables()
    dag_id = entry.dag_id
    keys = sorted(k for k in list(store.keys(prefix=event_key_prefix(dag_id))) if is_event_key(dag_id, k))
    if len(keys) > MAX_EVENTS:
        # the keys sort by time: the events in the middle are not read (they are closed all the same)
        skipped = keys[MAX_EVENTS // 2 : len(keys) - MAX_EVENTS // 2]
        keys = keys[: MAX_EVENTS // 2] + keys[len(keys) - MAX_EVENTS // 2 :]
    else:
        skipped = []
    stored: dict[str, str] = {}
    for key in [legacy_key(dag_id), *keys]:
        value = store.get(key, default=None)
        if value is not None:  # a key listed and then deleted by a concurrent close is gone
            stored[key] = value
    found = assemble(entry, stored)
    if found is None:
        return None
    return StoredIncident(found.incident, found.keys + tuple(skipped))


def close(stored: StoredIncident, variables: Variables | None = None) -> None:
    """Delete the keys ``stored`` was read from, and no other."""
    store = variables or _sdk_variables()
    for key in stored.keys:
        store.delete(key)
