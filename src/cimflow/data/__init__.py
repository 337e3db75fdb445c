"""Data-source loaders: each returns (train, test) ``Split``s or raises ``DataError``.

Import loaders from their modules (``cimflow.data.mnist``...): this package file stays
empty so a stage's code dependencies include only the loaders it really runs.
"""
