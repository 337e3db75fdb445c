"""Super resolution, the pixel-to-pixel task kind: its protocol, data and evaluator."""
