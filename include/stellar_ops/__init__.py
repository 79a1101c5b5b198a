"""StellarEscrow operational procedures: the logic behind the Airflow DAGs and the ``stellar-ops`` CLI.

Shared packages (``core``, ``postgres``, ``storage``, ``backups``) sit below one package per
procedure (``backup``, ``dr``, ``maintenance``, ...); :mod:`stellar_ops.registry` lists the
procedures. None of them imports Airflow: the thin Airflow layer is :mod:`stellar_ops.adapters`.
Development tooling is apart, in :mod:`stellar_ops.dev`.
"""

__version__ = "0.1.0"
