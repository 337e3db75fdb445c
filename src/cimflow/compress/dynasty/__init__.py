"""DYNASTY block-wise dynamic-precision training (Liu et al., ASP-DAC 2023, arXiv 2210.17047).

``hook`` plugs it into the shared training loop; ``blocks`` and ``quantizers`` are the
block-floating-point operands, ``maps`` the width-map generator, ``cost`` the modeled
accelerator, ``params`` its params.yaml schema. Kept import-light: params validation
reads ``params`` without loading torch.
"""
