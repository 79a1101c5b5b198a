#!/usr/bin/env bash
# Load airflow_settings.yaml (with ${VAR}s from the environment) into the Airflow metadata DB.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
# the local admin's password for airflow_settings.yaml's airflow_api connection: make run's users
# file, unless the environment sets it (the test harness does)
if [[ -z ${STELLAR_OPS_USER_ADMIN_PASSWORD:-} && -f ${AIRFLOW_HOME:-.}/users.json ]]; then
  STELLAR_OPS_USER_ADMIN_PASSWORD=$("$REPO/.venv/bin/python" -c \
    'import json, sys; print(json.load(open(sys.argv[1]))["admin"])' "$AIRFLOW_HOME/users.json")
  export STELLAR_OPS_USER_ADMIN_PASSWORD
fi
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
"$REPO/.venv/bin/stellar-dev" airflow-settings "$REPO/airflow_settings.yaml" --out "$out"
airflow connections import "$out/connections.json" --overwrite >/dev/null
airflow variables import "$out/variables.json" --action-on-existing-key overwrite >/dev/null
airflow pools import "$out/pools.json" >/dev/null
echo "loaded connections, variables and pools from airflow_settings.yaml"
