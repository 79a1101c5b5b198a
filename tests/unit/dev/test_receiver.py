"""The Slack stand-in's outage script: 429 with Retry-After, then 5xx for a while, then 200."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import ThreadingHTTPServer

import pytest
import requests

from stellar_ops_dev.receiver import Recorder, make_handler


@pytest.fixture
def receiver() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(Recorder()))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_a_script_answers_each_phase_in_turn_and_records_what_it_answered(receiver: str) -> None:
    script = [
        {"status": 429, "count": 2, "headers": {"Retry-After": "2"}},
        {"status": 500, "seconds": 0.5},
    ]
    requests.post(f"{receiver}/_script", json=script, timeout=5).raise_for_status()
    answers = [requests.post(f"{receiver}/hook", json={"text": str(n)}, timeout=5) for n in range(4)]
    assert [a.status_code for a in answers] == [429, 429, 500, 500]
    assert answers[0].headers["Retry-After"] == "2" and "Retry-After" not in answers[2].headers
    time.sleep(0.6)
    assert requests.post(f"{receiver}/hook", json={"text": "late"}, timeout=5).status_code == 200
    recorded = requests.get(f"{receiver}/_received", timeout=5).json()
    assert [(r["json"]["text"], r["status"]) for r in recorded] == [
        ("0", 429),
        ("1", 429),
        ("2", 500),
        ("3", 500),
        ("late", 200),
    ]


def test_fail_still_comes_first_and_clearing_disarms_everything(receiver: str) -> None:
    requests.post(f"{receiver}/_fail", json={"status": 503, "count": 1}, timeout=5)
    requests.post(f"{receiver}/_script", json=[{"status": 500, "count": 1}], timeout=5)
    assert requests.post(f"{receiver}/hook", json={}, timeout=5).status_code == 503
    requests.delete(f"{receiver}/_received", timeout=5)
    assert requests.post(f"{receiver}/hook", json={}, timeout=5).status_code == 200


def test_a_phase_with_a_path_leaves_other_paths_answered(receiver: str) -> None:
    requests.post(f"{receiver}/_script", json=[{"status": 500, "count": 1, "path": "/services/"}], timeout=5)
    assert requests.post(f"{receiver}/alertmanager", json={}, timeout=5).status_code == 200
    assert requests.post(f"{receiver}/services/T/B/x", json={}, timeout=5).status_code == 500
    assert requests.post(f"{receiver}/services/T/B/x", json={}, timeout=5).status_code == 200
