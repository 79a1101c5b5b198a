"""StellarEscrow operational procedures: the logic behind the Airflow DAGs and the ``stellar-ops`` CLI.

Modules at this level never import Airflow; the thin Airflow adapters live in
:mod:`stellar_ops.adapters`.
"""

__version__ = "0.1.0"
