# The image every Airflow component of docker-compose.yaml runs (and the Helm chart's image):
# Airflow 3.3.2 with the pinned requirements and the stellar_ops package, plus what the DAGs run:
# - PostgreSQL client programs of every supported server major (PG_MAJORS, from the PostgreSQL
#   project's apt repository): pg_dump must be at least the server's major, and stellar_ops picks
#   the newest one installed unless backup.pg_bin_dir names another;
# - PostgreSQL server programs of the same majors, for dr_restore_test's `local` scratch backend
#   (initdb and postgres run as the image's non-root user);
# - zstd for the backups, certbot for tls_cert_check's renewal when it runs on the worker.
# Keep PG_MAJORS equal to backup.supported_server_majors (a test checks the two agree).
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
 && packages=(zstd certbot) \
 && for major in ${PG_MAJORS}; do packages+=("postgresql-client-${major}" "postgresql-${major}"); done \
 && apt-get install -y --no-install-recommends "${packages[@]}" \
 && apt-get clean \
 && rm -rf /var/lib/apt/lists/*

USER 50000
COPY --chown=50000:0 requirements.txt pyproject.toml README.md /opt/stellar-ops/
COPY --chown=50000:0 include /opt/stellar-ops/include
RUN pip install --no-cache-dir -r /opt/stellar-ops/requirements.txt \
 && pip install --no-cache-dir --no-deps /opt/stellar-ops
COPY --chown=50000:0 dags /opt/airflow/dags
COPY --chown=50000:0 plugins /opt/airflow/plugins
