# The image every Airflow component of docker-compose.yaml runs (and the Helm chart's image):
# Airflow 3.3.2 with the pinned runtime set (requirements-runtime.txt: Airflow, the providers and
# what the package imports; no test or lint tool) and the stellar_ops package as a wheel built in
# a first stage, plus what the DAGs run:
# - PostgreSQL client programs of every supported server major (PG_MAJORS, from the PostgreSQL
#   project's apt repository): pg_dump must be at least the server's major, and stellar_ops picks
#   the newest one installed unless backup.pg_bin_dir names another;
# - PostgreSQL server programs of the same majors, for dr_restore_test's `local` scratch backend
#   (initdb and postgres run as the image's non-root user);
# - zstd for the backups, certbot for tls_cert_check's renewal when it runs on the worker;
# - barman-cloud (requirements-pitr.txt) in a venv of its own, /opt/pitr-venv: the
#   barman-cloud-wal-restore a point-in-time recovery's scratch server fetches WAL with
#   (pitr.tools_dir: /opt/pitr-venv/bin); its pins (boto3...) stay apart from Airflow's.
# Keep PG_MAJORS equal to backup.supported_server_majors (a test checks the two agree).
# The build context is what .dockerignore lets through: only the files copied below.

FROM apache/airflow:3.3.2-python3.11 AS wheel
COPY --chown=50000:0 pyproject.toml README.md /opt/stellar-ops-src/
COPY --chown=50000:0 include /opt/stellar-ops-src/include
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /opt/stellar-ops-src/dist /opt/stellar-ops-src

FROM apache/airflow:3.3.2-python3.11

ARG PG_MAJORS="15 16 17"

USER 0
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl gnupg \
 && install -d /usr/share/postgresql-common/pgdg \
 && curl -fsSL https://www.postgresql.org/media/keys/ACCC4CF8.asc \
      -o /usr/share/postgresql-common/pgdg/apt.postgresql.org.asc \
 && . /etc/os-release \
 && echo "deb [signed-by=/usr/share/postgresql-common/pgdg/apt.postgresql.org.asc] https://apt.postgresql.org/pub/repos/apt ${VERSION_CODENAME}-pgdg main" \
      > /etc/apt/sources.list.d/pgdg.list \
 && apt-get update \
 && packages=(zstd certbot git) \
 && for major in ${PG_MAJORS}; do packages+=("postgresql-client-${major}" "postgresql-${major}"); done \
 && apt-get install -y --no-install-recommends "${packages[@]}" \
 && apt-get clean \
 && rm -rf /var/lib/apt/lists/*

USER 50000
# the pinned set first: a change to the package alone rebuilds only the layers below it
COPY --chown=50000:0 requirements-runtime.txt /opt/stellar-ops/
RUN pip install --no-cache-dir -r /opt/stellar-ops/requirements-runtime.txt
COPY --chown=50000:0 requirements-pitr.txt /opt/stellar-ops/
RUN python -m venv /opt/pitr-venv \
 && /opt/pitr-venv/bin/pip install --no-cache-dir --no-deps -r /opt/stellar-ops/requirements-pitr.txt \
 && /opt/pitr-venv/bin/barman-cloud-wal-restore --version
# its dependencies are all pinned above: --no-deps keeps the wheel from changing any of them
COPY --from=wheel --chown=50000:0 /opt/stellar-ops-src/dist/ /opt/stellar-ops/dist/
RUN pip install --no-cache-dir --no-deps /opt/stellar-ops/dist/stellar_ops-*.whl
COPY --chown=50000:0 dags /opt/airflow/dags
COPY --chown=50000:0 plugins /opt/airflow/plugins
