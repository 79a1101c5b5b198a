#!/usr/bin/env bash
# `make run`: the local stack of real servers, the demo database, and `airflow standalone` (UI
# and API on http://127.0.0.1:$AIRFLOW_PORT, login admin/admin). Ctrl-C stops all of it.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
cd "$REPO"
source scripts/airflow_env.sh
STACK_DIR=${STACK_DIR:-.stack}

.venv/bin/stellar-dev stack up --state-dir "$STACK_DIR" --fixed-ports --demo-rows "${DEMO_ROWS:-20000}"
airflow_pgid=""
cleanup() {
  trap - EXIT INT TERM
  echo "stopping Airflow and the stack..."
  if [[ -n $airflow_pgid ]]; then
    kill -TERM -- "-$airflow_pgid" 2>/dev/null || true
    for _ in $(seq 1 30); do kill -0 -- "-$airflow_pgid" 2>/dev/null || break; sleep 1; done
    kill -KILL -- "-$airflow_pgid" 2>/dev/null || true
  fi
  .venv/bin/stellar-dev stack down --state-dir "$STACK_DIR"
}
trap cleanup EXIT INT TERM

# Airflow reads connections and the config Variable from its metadata DB (loaded below from
# airflow_settings.yaml, so they show in the UI); the stack's AIRFLOW_* exports are for
# `airflow dags test` and would shadow them.
set -a
source "$STACK_DIR/env"
set +a
unset $(compgen -e | grep -E '^AIRFLOW_(CONN|VAR)_') || true

# A first backup through the CLI, so the DR test has something to restore from the start.
.venv/bin/stellar-ops backup > /dev/null
# Something for perf_analysis to find: a slow hot path, scans, index and vacuum debt, Redis misses.
.venv/bin/stellar-dev perf-workload > /dev/null

# Every start is a new stack (new data, new credentials), so Airflow's metadata starts anew too:
# an earlier stack's runs, XComs and alert state would describe backups and servers that are gone.
rm -rf "$AIRFLOW_HOME/airflow.db" "$AIRFLOW_HOME/logs"
mkdir -p "$AIRFLOW_HOME"
[[ -f $AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE ]] ||
  echo '{"admin": "admin"}' > "$AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"
airflow db migrate >/dev/null
scripts/load_airflow_settings.sh

setsid airflow standalone > "$AIRFLOW_HOME/standalone.log" 2>&1 &
airflow_pgid=$!
for _ in $(seq 1 120); do
  curl -fsS "http://127.0.0.1:$AIRFLOW_PORT/api/v2/monitor/health" >/dev/null 2>&1 && break
  kill -0 "$airflow_pgid" 2>/dev/null || { tail -n 40 "$AIRFLOW_HOME/standalone.log"; exit 1; }
  sleep 1
done
cat <<MSG

  Airflow UI:   http://127.0.0.1:$AIRFLOW_PORT   (login: admin / admin)
  Webhook log:  http://127.0.0.1:$STELLAR_RECEIVER_PORT/_received   (what alerts were sent)
  Pushgateway:  http://127.0.0.1:$STELLAR_PUSHGATEWAY_PORT
  TLS (nginx):  https://escrow.test on 127.0.0.1:${STELLAR_TLS_PORT:-?}   (tls_cert_check; CA: $STELLAR_STACK_DATA/acme/acme-root.pem)
  Airflow log:  $AIRFLOW_HOME/standalone.log; stack logs in $STACK_DIR/logs/

  Press Ctrl-C to stop everything.
MSG
wait "$airflow_pgid"
