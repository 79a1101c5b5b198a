"""tls_cert_check under the live scheduler: the trigger form's force_renewal renews the stack's
certificate through pebble and certbot, and each domain's mapped task is labelled with its state."""

from __future__ import annotations

from urllib.parse import quote

import pytest

from stellar_ops.probes.tls import probe

pytestmark = pytest.mark.e2e


def _served(stack) -> str | None:
    (domain,) = stack.tls["domains"]
    return probe(
        domain["host"], domain["port"], server_name=domain["server_name"], ca_bundle=domain["ca_bundle"]
    ).serial


def test_force_renewal_from_the_trigger_form_serves_a_new_certificate(api, stack, receiver, e2e_prefix):
    api.wait_for_dag("tls_cert_check")
    api.set_variable(
        "stellar_ops_config",
        {"backup": {"bucket": "stellar-backups", "prefix": e2e_prefix}, "tls": stack.tls},
    )
    api.unpause("tls_cert_check")
    served = _served(stack)

    run_id = api.trigger("tls_cert_check", conf={"force_renewal": True})

    assert api.wait_run("tls_cert_check", run_id, timeout=300) == "success", api.task_states(
        "tls_cert_check", run_id
    )
    states = api.task_states("tls_cert_check", run_id)
    assert states["renew_certificate"] == "success" and states["record_results"] == "success"
    assert _served(stack) != served
    path = f"/dags/tls_cert_check/dagRuns/{quote(run_id, safe='')}/taskInstances/probe_certificate/listMapped"
    (mapped,) = api.request("GET", path)["task_instances"]
    assert mapped["rendered_map_index"].startswith(
        f"escrow.test@127.0.0.1:{stack.tls['domains'][0]['port']}: ok"
    )
    latest = stack.s3_client().get_object(Bucket="stellar-backups", Key=f"{e2e_prefix}tls/latest.json")
    assert b'"state": "ok"' in latest["Body"].read()
    assert any("TLS certificate renewed" in text for text in receiver.texts())
