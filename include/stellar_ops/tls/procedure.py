"""TLS certificates in the taxonomy: ``tls_cert_check``, P2, TLSCertExpiringSoon, RB-004."""

from __future__ import annotations

from stellar_ops.core.taxonomy import DagEntry, Procedure
from stellar_ops.tls.config import TlsConfig

PROCEDURE = Procedure(
    name="tls",
    section="tls",
    config=TlsConfig,
    dags=(
        DagEntry(
            dag_id="tls_cert_check",
            procedure="tls",
            severity="P2",
            alert_name="TLSCertExpiringSoon",
            schedule="0 0,12 * * *",
            runbook="RB-004",
            expected_minutes=30,
        ),
    ),
)
