"""Development only: the local stack of real servers, the demo data, the local Airflow settings.

Used by ``make run``, ``make stack``, the tests and the benchmarks (``stellar-dev``); no runtime
module imports it.
"""
