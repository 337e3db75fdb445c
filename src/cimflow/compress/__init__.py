"""Compression methods that plug into the one training loop (cimflow.train) through hooks.

Each method keeps to its own modules and touches no other. ADMM progressive pruning and
quantization (arXiv 1903.09769, 1812.11677) is ``admm``, built on the exact constraint
projections in ``projections``; ``magnitude`` is its one-shot and iterative
magnitude-pruning baseline at the same ratios and epoch budget.
"""
