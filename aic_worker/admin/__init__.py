"""The ``aic-admin`` command line: one module per command group."""
