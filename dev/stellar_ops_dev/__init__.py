"""Development only: the local stack of real servers, the demo data, the local Airflow settings.

Used by ``make run``, ``make stack``, the tests and the benchmarks (``stellar-dev``). A
distribution of its own, stellar-ops-dev (``dev/pyproject.toml``), installed editable by
``scripts/bootstrap.sh`` and never in the image: it imports the runtime package stellar_ops, and no
runtime module imports it.
"""
