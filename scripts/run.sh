#!/usr/bin/env bash
# `make run`: the local stack of real servers, the demo database, and Airflow's four components as
# `airflow standalone` runs them, with the deployment's users and roles (UI and API on
# http://127.0.0.1:$AIRFLOW_PORT; the logins are printed when it is up). Ctrl-C stops all of it, and so do
# SIGTERM and SIGHUP (a process manager, a closing terminal), whether sent to this script or to
# its whole process group, during start-up or after.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
cd "$REPO"
source scripts/airflow_env.sh
STACK_DIR=${STACK_DIR:-.stack}
# the auth manager is FAB's (airflow_env.sh): `airflow standalone` would force SimpleAuthManager,
# so stellar_ops_dev.standalone starts the components instead
# admin, oncall, oncall2, lead, lead2: passwords made once, kept here, shown in the banner
USERS_FILE=$AIRFLOW_HOME/users.json

# Each step runs in a session of its own, in the background, and is waited for: a signal then
# reaches the trap below at once (not when the step ends), and the trap stops the step's whole
# process group. The servers of the stack run in sessions of their own and are stopped by pid
# (`stellar-dev stack down`); Airflow (stellar_ops_dev.standalone and its four components) is
# stopped through its process group.
step_pid=""
in_step=""
airflow_pgid=""
starting_airflow=""

stop_group() { # stop_group PGID SECONDS: SIGTERM the group, SIGKILL what outstays SECONDS
  kill -TERM -- "-$1" 2>/dev/null || return 0
  local tries=$(($2 * 5))
  while ((tries-- > 0)) && kill -0 -- "-$1" 2>/dev/null; do sleep 0.2; done
  kill -KILL -- "-$1" 2>/dev/null
  return 0
}

cleanup() {
  local status=${1:-$?}
  trap - EXIT
  # One stop at a time: a second Ctrl-C, or the SIGHUP of a terminal closing after a SIGTERM, must
  # not cut this one short. The children started below inherit these ignored signals.
  trap '' INT TERM HUP PIPE
  set +e
  echo "stopping Airflow and the stack..." 2>/dev/null
  if [[ -n $in_step ]]; then
    local pid=${step_pid:-$!}
    stop_group "$pid" 60
    wait "$pid" 2>/dev/null
  fi
  if [[ -z $airflow_pgid && -n $starting_airflow ]]; then airflow_pgid=$!; fi
  if [[ -n $airflow_pgid ]]; then
    stop_group "$airflow_pgid" 30
    wait "$airflow_pgid" 2>/dev/null
    # a component forked while the group was being stopped (Airflow still starting) escapes that
    # signal: look again, and stop what is there
    sleep 1
    stop_group "$airflow_pgid" 10
  fi
  .venv/bin/stellar-dev stack down --state-dir "$STACK_DIR"
  exit "$status"
}
trap cleanup EXIT
trap 'cleanup 130' INT
trap 'cleanup 143' TERM
trap 'cleanup 129' HUP

step() {
  in_step=1
  setsid "$@" &
  step_pid=$!
  local status=0
  wait "$step_pid" || status=$?
  step_pid=""
  in_step=""
  return "$status"
}

# Airflow's ports are reserved, so that no server of the stack is given one of them.
step .venv/bin/stellar-dev stack up --state-dir "$STACK_DIR" --fixed-ports --demo-rows "${DEMO_ROWS:-20000}" \
  --reserve-port "$AIRFLOW_PORT" --reserve-port "$AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT" \
  --reserve-port "$AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT"

# Airflow reads connections and the config Variable from its metadata DB (loaded below from
# airflow_settings.yaml, so they show in the UI); the stack's AIRFLOW_* exports are for
# `airflow dags test` and would shadow them.
set -a
source "$STACK_DIR/env"
set +a
for name in $(compgen -e | grep -E '^AIRFLOW_(CONN|VAR)_'); do unset "$name"; done

# A first backup through the CLI, so the DR test has something to restore from the start.
step .venv/bin/stellar-ops backup > /dev/null
# Something for perf_analysis to find: a slow hot path, scans, index and vacuum debt, Redis misses.
step .venv/bin/stellar-dev perf-workload > /dev/null

# Every start is a new stack (new data, new credentials), so Airflow's metadata starts anew too:
# an earlier stack's runs, XComs and alert state would describe backups and servers that are gone.
rm -rf "$AIRFLOW_HOME/airflow.db" "$AIRFLOW_HOME/logs"
mkdir -p "$AIRFLOW_HOME"
step airflow db migrate >/dev/null
# the roles and the local users, by the deployment's set-up step (FAB logs every permission: to a file)
if ! step .venv/bin/python -m stellar_ops_dev.standalone users "$USERS_FILE" > "$AIRFLOW_HOME/users.log" 2>&1; then
  echo "setting up the roles and users failed; the end of $AIRFLOW_HOME/users.log:" >&2
  tail -n 20 "$AIRFLOW_HOME/users.log" >&2
  exit 1
fi
step scripts/load_airflow_settings.sh

# In a session (and process group) of its own: stopping the group stops every Airflow process.
starting_airflow=1
setsid .venv/bin/python -m stellar_ops_dev.standalone run > "$AIRFLOW_HOME/standalone.log" 2>&1 &
airflow_pgid=$!
healthy=""
for _ in $(seq 1 120); do
  if curl -fsS --max-time 5 "http://127.0.0.1:$AIRFLOW_PORT/api/v2/monitor/health" >/dev/null 2>&1; then
    healthy=1
    break
  fi
  kill -0 "$airflow_pgid" 2>/dev/null || break
  sleep 1
done
if [[ -z $healthy ]]; then
  echo "Airflow did not answer on port $AIRFLOW_PORT; the end of $AIRFLOW_HOME/standalone.log:" >&2
  tail -n 40 "$AIRFLOW_HOME/standalone.log" >&2
  exit 1
fi
logins=$(.venv/bin/python -m stellar_ops_dev.standalone logins "$USERS_FILE" | sed '2,$s/^/                /')
cat <<MSG

  Airflow UI:   http://127.0.0.1:$AIRFLOW_PORT
  Logins:       $logins
                (kept in $USERS_FILE; approvals go to roles, so try them as several people)
  Webhook log:  http://127.0.0.1:$STELLAR_RECEIVER_PORT/_received   (what alerts were sent)
  Pushgateway:  http://127.0.0.1:$STELLAR_PUSHGATEWAY_PORT
  Grafana:      http://127.0.0.1:${STELLAR_GRAFANA_PORT:-?}   (its admin API's stand-in; secret_rotation)
  TLS (nginx):  https://escrow.test on 127.0.0.1:${STELLAR_TLS_PORT:-?}   (tls_cert_check; CA: $STELLAR_STACK_DATA/acme/acme-root.pem)
  Airflow log:  $AIRFLOW_HOME/standalone.log; stack logs in $STACK_DIR/logs/

  Press Ctrl-C to stop everything.
MSG
wait "$airflow_pgid"
