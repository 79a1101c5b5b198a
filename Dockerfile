# The Airflow image for the production-like deployment (docker-compose.yaml): Airflow 3.3.2 with
# the pinned requirements, the stellar_ops package, and the PostgreSQL 15 client programs.
FROM apache/airflow:3.3.2-python3.11

USER root
RUN apt-get update \
 && apt-get install -y --no-install-recommends postgresql-client-15 zstd \
 && rm -rf /var/lib/apt/lists/*
USER airflow

COPY --chown=airflow:root requirements.txt pyproject.toml README.md /opt/stellar-ops/
COPY --chown=airflow:root include /opt/stellar-ops/include
RUN pip install --no-cache-dir -r /opt/stellar-ops/requirements.txt \
 && pip install --no-cache-dir --no-deps -e /opt/stellar-ops
COPY --chown=airflow:root dags /opt/airflow/dags
COPY --chown=airflow:root plugins /opt/airflow/plugins
