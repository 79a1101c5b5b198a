# Environment for a local Airflow on this repository's DAGs; sourced by scripts/run.sh.
REPO=${REPO:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
export AIRFLOW_HOME=${AIRFLOW_HOME:-$REPO/.airflow}
export AIRFLOW__CORE__DAGS_FOLDER=$REPO/dags
export AIRFLOW__CORE__PLUGINS_FOLDER=$REPO/plugins
# every process loads plugins/ at start: the CLI's clear and backfill need its fixes too
export AIRFLOW__CORE__LAZY_LOAD_PLUGINS=False
export AIRFLOW__CORE__LOAD_EXAMPLES=False
export AIRFLOW__CORE__PARALLELISM=${AIRFLOW__CORE__PARALLELISM:-4}
export AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION=False
# FAB's users and roles, as in the deployment (docs/deployment.md)
export AIRFLOW__CORE__AUTH_MANAGER=stellar_ops.adapters.common.auth.StellarAuthManager
export AIRFLOW_PORT=${AIRFLOW_PORT:-8080}
export AIRFLOW__API__PORT=$AIRFLOW_PORT
export AIRFLOW__API__BASE_URL=http://127.0.0.1:$AIRFLOW_PORT
export AIRFLOW__API__HOST=127.0.0.1
export AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT=${AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT:-8793}
export AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT=${AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT:-8794}
export PATH=$REPO/.venv/bin:$PATH
