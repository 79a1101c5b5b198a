"""``stellar-ops incident draft``: the post-incident review draft of an incident, on demand.

A resolved incident is read from S3 (``<prefix>incidents/<date>-<dag>.json``, written with its
draft when it resolved); one still open is read from Airflow's REST API when ``AIRFLOW_API_URL``
(and ``AIRFLOW_USERNAME``/``AIRFLOW_PASSWORD``) are set: its Variables, one per event (and the one
Variable of the format before, ``stellar_ops_incident__<dag_id>``), listed by their prefix
(``variable_key_prefix_pattern``) and put together as the DAG's callbacks do
(:func:`stellar_ops.core.incidents.assemble`). The draft is the same the resolution writes, and goes
to the same key.
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from typing import Any

from stellar_ops.cli import env
from stellar_ops.core.errors import StellarOpsError
from stellar_ops.core.incidents import Incident, assemble, draft_key, legacy_key, review_draft
from stellar_ops.core.runbooks import runbook_link
from stellar_ops.core.taxonomy import DagEntry
from stellar_ops.registry import StellarOpsConfig, procedure_for
from stellar_ops.runtime import Runtime


def register(sub: Any) -> None:
    p = sub.add_parser("incident", help="post-incident review drafts")
    actions = p.add_subparsers(dest="action", required=True)
    q = actions.add_parser("draft", help="write (again) the review draft of the incident a run belongs to")
    q.add_argument("--dag", required=True, help="the DAG id")
    q.add_argument(
        "--run", required=True, help="a run id of the incident (failed, or the one that recovered)"
    )
    p.set_defaults(func=cmd_incident)


def cmd_incident(args: argparse.Namespace) -> int:
    rt = env.runtime()
    entry = procedure_for(args.dag)
    book = f"{entry.runbook}: {runbook_link(entry.runbook, rt.config.alerts.runbook_base_url)}"
    resolved = _resolved(rt, args.dag, args.run)
    if resolved is not None:
        incident, document = resolved
        resolved_at = datetime.fromisoformat(document["resolved_at"])
        text = review_draft(
            incident, resolved_at=resolved_at, recovery_run=document["recovery_run"], runbook=book
        )
    else:
        incident = _open(entry, args.run)
        resolved_at = datetime.now(UTC)
        text = review_draft(incident, resolved_at=None, recovery_run=None, runbook=book, now=resolved_at)
    key = draft_key(rt.config.backup.prefix, incident, resolved_at)
    rt.store().put_bytes(key, text.encode(), "text/markdown")
    rt.say(f"review draft written to {rt.store().url(key)}")
    print(text, end="")
    return 0


def _mentions(document: dict[str, Any], run_id: str) -> bool:
    return document.get("recovery_run") == run_id or any(
        e.get("run_id") == run_id for e in document["events"]
    )


def _resolved(
    rt: Runtime[StellarOpsConfig], dag_id: str, run_id: str
) -> tuple[Incident, dict[str, Any]] | None:
    store = rt.store()
    place = f"{rt.config.backup.prefix}incidents/"
    for obj in sorted(store.list_objects(place, recursive=False), key=lambda o: o.key, reverse=True):
        if not obj.key.endswith(f"-{dag_id}.json"):
            continue
        document = store.get_json(obj.key)
        if _mentions(document, run_id):
            return Incident.from_dict(document), document
    return None


PAGE = 100  # the REST API's default maximum_page_limit


def read_open_incident(session: Any, base: str, entry: DagEntry) -> Incident | None:
    """The open incident of ``entry``'s DAG from its Variables, through the REST API at ``base``."""
    dag_id = entry.dag_id
    stored: dict[str, str] = {}
    offset = 0
    while True:
        # a prefix search: its wildcards are literal; what else it finds (another DAG whose id starts
        # with this one's) is left out by assemble()
        response = session.get(
            f"{base}/api/v2/variables",
            params={"variable_key_prefix_pattern": legacy_key(dag_id), "limit": PAGE, "offset": offset},
            timeout=30,
        )
        if response.status_code >= 300:
            raise StellarOpsError(
                f"Airflow at {base} answered {response.status_code} for the Variables of the open "
                f"incident of {dag_id}: {response.text[:300]}"
            )
        page = response.json()["variables"]
        stored.update({v["key"]: v["value"] for v in page if v.get("value") is not None})
        offset += len(page)
        if not page or offset >= response.json()["total_entries"]:
            break
    found = assemble(entry, stored)
    return found.incident if found else None


def _open(entry: DagEntry, run_id: str) -> Incident:
    """The open incident of ``entry``'s DAG, from Airflow's Variables through its REST API."""
    dag_id = entry.dag_id
    base = env.optional("AIRFLOW_API_URL")
    if not base:
        raise StellarOpsError(
            f"no resolved incident of {dag_id} names run {run_id!r} under the incidents prefix, and "
            "AIRFLOW_API_URL is not set to read one still open"
        )
    import requests

    session = requests.Session()
    user, password = env.optional("AIRFLOW_USERNAME"), env.optional("AIRFLOW_PASSWORD")
    if user and password:
        token = session.post(f"{base}/auth/token", json={"username": user, "password": password}, timeout=10)
        if token.status_code >= 300:
            raise StellarOpsError(f"Airflow at {base} refused the login ({token.status_code})")
        session.headers["Authorization"] = f"Bearer {token.json()['access_token']}"
    incident = read_open_incident(session, base, entry)
    if incident is None:
        raise StellarOpsError(f"{dag_id} has no open incident, and no resolved one names run {run_id!r}")
    if not any(e.run_id == run_id for e in incident.events):
        raise StellarOpsError(f"the open incident of {dag_id} does not name run {run_id!r}")
    return incident
