#!/usr/bin/env bash
# Install what the project needs on a fresh Debian machine: the OS packages of packages.txt
# (through apt, when running as root and something is missing), then .venv from the pinned
# development set, requirements-dev.txt (the runtime set of requirements-runtime.txt plus the test
# and lint tools), with the stellar_ops package installed editable, and the development tooling
# (dev/: the stellar-ops-dev distribution, stellar-dev) editable on top of it, and .pitr-venv, the
# barman-cloud the local stack's PostgreSQL archives its WAL with (scripts/pitr_venv.sh). Safe to run again:
# each step is skipped when it is already done.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
while read -r pkg; do
  [[ -z "$pkg" || "$pkg" == \#* ]] && continue
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done < packages.txt
if ((${#missing[@]})); then
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
    echo "bootstrap: installing OS packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "bootstrap: missing OS packages: ${missing[*]} (install them with apt as root)" >&2
    exit 1
  fi
fi

PYTHON=${PYTHON:-python3}
if [[ ! -x .venv/bin/python ]]; then
  echo "bootstrap: creating .venv with $($PYTHON --version)"
  "$PYTHON" -m venv .venv
fi
stamp=.venv/.requirements.sha256
# a change to any of the three pin files or to either pyproject reinstalls
want=$(cat requirements.txt requirements-dev.txt requirements-runtime.txt pyproject.toml dev/pyproject.toml \
  | sha256sum | cut -d' ' -f1)
if [[ ! -f $stamp || $(cat "$stamp") != "$want" ]]; then
  echo "bootstrap: installing the pinned requirements into .venv"
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -r requirements-dev.txt
  .venv/bin/python -m pip install -q --no-deps -e .
  .venv/bin/python -m pip install -q --no-deps -e dev
  # the build's by-product: beside the editable package on sys.path it would be a second copy of
  # the distribution, and Airflow would load the package's plugin twice; dev/'s is removed as
  # clutter (dev/ is not on sys.path: the editable stellar_ops_dev is mapped by an import finder)
  rm -rf include/stellar_ops.egg-info dev/stellar_ops_dev.egg-info
  echo "$want" > "$stamp"
fi

scripts/pitr_venv.sh
