"""Compression methods that plug into the one training loop (cimflow.train) through hooks.

One subpackage per method, each keeping to its own modules: ``admm`` (ADMM progressive
pruning and quantization, with its magnitude-pruning baselines) and ``dynasty``
(block-wise dynamic-precision training). Which stage builds a method and what it
writes is declared once, in cimflow.methods.
"""
