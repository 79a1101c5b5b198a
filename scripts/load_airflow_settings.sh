#!/usr/bin/env bash
# Load airflow_settings.yaml (with ${VAR}s from the environment) into the Airflow metadata DB.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
"$REPO/.venv/bin/stellar-dev" airflow-settings "$REPO/airflow_settings.yaml" --out "$out"
airflow connections import "$out/connections.json" --overwrite >/dev/null
airflow variables import "$out/variables.json" --action-on-existing-key overwrite >/dev/null
airflow pools import "$out/pools.json" >/dev/null
echo "loaded connections, variables and pools from airflow_settings.yaml"
