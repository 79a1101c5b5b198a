#!/usr/bin/env bash
# Build .pitr-venv: barman-cloud-wal-archive (requirements-pitr.txt), the archive_command of the
# local stack's PostgreSQL. It is a venv of its own, made from Debian's /usr/bin/python3.11 in the
# checkout, because PostgreSQL runs as an unprivileged user (postgres, when we are root) who can
# execute neither a python under /root nor the project's .venv made from it. Safe to run again:
# it is rebuilt only when requirements-pitr.txt changes. Called by scripts/bootstrap.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

PITR_PYTHON=${PITR_PYTHON:-/usr/bin/python3.11}
# the stack looks for it here too (a checkout PostgreSQL's user cannot reach needs another place)
venv=${STELLAR_PITR_VENV:-.pitr-venv}
if [[ ! -x $PITR_PYTHON ]]; then
  echo "pitr_venv: $PITR_PYTHON is missing: install the Debian package python3.11 and python3.11-venv (packages.txt)" >&2
  exit 1
fi
if ! "$PITR_PYTHON" -c 'import ensurepip, venv' 2>/dev/null; then
  echo "pitr_venv: $PITR_PYTHON cannot make a venv: install the Debian package python3.11-venv" >&2
  exit 1
fi
stamp=$venv/.requirements.sha256
want=$(sha256sum requirements-pitr.txt | cut -d' ' -f1)
if [[ -f $stamp && $(cat "$stamp") == "$want" && -x $venv/bin/barman-cloud-wal-archive ]]; then
  exit 0
fi
echo "pitr_venv: building $venv (barman-cloud) from requirements-pitr.txt"
rm -rf "$venv"
"$PITR_PYTHON" -m venv "$venv"
"$venv/bin/python" -m pip install -q --no-deps -r requirements-pitr.txt
"$venv/bin/barman-cloud-wal-archive" --version >/dev/null
# PostgreSQL's user reads and executes it; only its owner writes it
chmod -R go+rX,go-w "$venv"
echo "$want" > "$stamp"
