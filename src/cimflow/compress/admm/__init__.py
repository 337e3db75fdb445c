"""ADMM progressive pruning and quantization (arXiv 1903.09769, 1812.11677).

``solver`` runs ADMM through the shared training loop on the exact constraint
projections of ``projections``; ``magnitude`` is its one-shot and iterative
magnitude-pruning baseline at the same ratios and epoch budget; ``params`` its
params.yaml schema. Kept import-light for params validation.
"""
