"""StellarEscrow operational procedures: the logic behind the Airflow DAGs and the ``stellar-ops`` CLI.

Shared packages (``core``, ``probes``, ``postgres``, ``storage``, ``catalogue``) sit below
:mod:`stellar_ops.runtime`, below one package per procedure (``backup``, ``dr``, ``maintenance``,
...); :mod:`stellar_ops.registry` lists the procedures and composes their config sections. None of them imports Airflow: the thin Airflow layer is :mod:`stellar_ops.adapters`.
Development tooling is apart, in a distribution of its own: stellar-ops-dev (:mod:`stellar_ops_dev`,
under ``dev/``), which imports this package; nothing here imports it, and the wheel does not hold it.
"""

__version__ = "0.1.0"
