"""Feature Regularization: input-dependent per-pixel channel sparsity in a pixel-to-pixel network."""
