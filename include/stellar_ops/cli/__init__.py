"""``stellar-ops``: one small module per command group; see :mod:`stellar_ops.cli.main`."""
