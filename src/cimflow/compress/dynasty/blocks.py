"""Block floating point (BFP): the number format DYNASTY trains in, and its error analytics.

Each block of ``block_size`` consecutive entries along a GEMM's reduction dimension
shares one power-of-two exponent e = floor(log2 max|x|) and stores signed integer
mantissas of its own width m (sign included): x^ = clamp(round(x / s), +-(2^(m-1) - 1)) * s
with step s = 2^(e + 2 - m), so the largest entry keeps m - 1 significant bits.

Why BFP rather than a per-block integer scale: a power-of-two scale is a shift, so a
block-wise datapath aligns partial sums across blocks without a multiplier per
block, and the exponent costs a few bits of metadata. That is the "block-FP unit"
of the DYNASTY line's silicon (JSSC 2024). The price is up to one bit of range
left unused against a max-scaled integer grid, the same for every width and for
the 8-bit baseline.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor


def block_exponents(blocks: Tensor) -> Tensor:
    """floor(log2 max|x|) + 1 per block, [..., n_blocks, 1] (frexp is exact, unlike log2).

    Floored at the dtype's smallest normal exponent, as a hardware shared exponent has a
    range too: blocks below it quantize to zero instead of dividing by an underflowed step.
    """
    _, exponent = torch.frexp(blocks.abs().amax(dim=-1, keepdim=True))  # max = f * 2^exponent, f in [0.5, 1)
    smallest_normal = int(math.log2(torch.finfo(blocks.dtype).tiny)) + 1
    return exponent.clamp_min_(smallest_normal).to(blocks.dtype)


def quantize_blocks(blocks: Tensor, bits: Tensor, noise: Tensor | None = None) -> Tensor:
    """Fake-quantize ``blocks`` [..., n_blocks, block] to BFP at ``bits`` (broadcast per block).

    ``noise`` holds uniform [0, 1) draws for stochastic rounding (floor(x/s + u), unbiased);
    without it values round to nearest.
    """
    step = torch.exp2(block_exponents(blocks) + 1.0 - bits)
    limit = torch.exp2(bits - 1.0) - 1.0
    codes = blocks / step
    codes = codes.add_(noise).floor_() if noise is not None else codes.round_()
    return codes.clamp_(-limit, limit).mul_(step)


@dataclass(frozen=True)
class BlockLayout:
    """How one tensor is cut into blocks along its GEMM reduction dimension.

    Tensors are viewed channel-last as [lead, rows, row_length] and each row is
    zero-padded to whole blocks.

    * ``per_sample`` (activations, output gradients) [N, C, H, W] -> [N, H, W*C]: a block
      is a run of (pixel, channel) entries of one image row, a segment of the im2col
      reduction axis (kernel taps x channels). [N, F] -> [N, 1, F]. The bit map covers
      one sample and is shared by every sample of a batch, so it survives changing
      batch sizes; each sample's block still has its own exponent.
    * weights [O, C, kh, kw] -> [1, O, kh*kw*C] (the same channel-last order); [O, I] ->
      [1, O, I]. The map covers the whole tensor.

    ``item_shape`` is one sample's shape for per-sample tensors and the full shape for
    weights.
    """

    item_shape: tuple[int, ...]
    block_size: int
    per_sample: bool

    @property
    def rows(self) -> int:
        if self.per_sample:
            return self.item_shape[1] if len(self.item_shape) == 3 else 1
        return self.item_shape[0]

    @property
    def row_length(self) -> int:
        return math.prod(self.item_shape) // self.rows

    @property
    def blocks_per_row(self) -> int:
        return -(-self.row_length // self.block_size)

    @property
    def num_blocks(self) -> int:
        return self.rows * self.blocks_per_row

    def _channel_last_shape(self, lead: int) -> tuple[int, ...]:
        shape = (lead, *self.item_shape) if self.per_sample else self.item_shape
        return (shape[0], *shape[2:], shape[1]) if len(shape) == 4 else shape

    def to_blocks(self, t: Tensor) -> Tensor:
        """[lead, num_blocks, block_size] view of ``t`` (lead = batch, or 1 for weights)."""
        lead = t.shape[0] if self.per_sample else 1
        if t.dim() == 4:
            t = t.permute(0, 2, 3, 1)
        rows = t.reshape(lead, self.rows, self.row_length)
        padding = self.blocks_per_row * self.block_size - self.row_length
        if padding:
            rows = F.pad(rows, (0, padding))
        return rows.reshape(lead, self.num_blocks, self.block_size)

    def from_blocks(self, blocks: Tensor) -> Tensor:
        """Inverse of :meth:`to_blocks` (padding dropped), in the original layout."""
        lead = blocks.shape[0]
        rows = blocks.reshape(lead, self.rows, self.blocks_per_row * self.block_size)[..., : self.row_length]
        t = rows.reshape(self._channel_last_shape(lead))
        return t.permute(0, 3, 1, 2).contiguous() if t.dim() == 4 else t

    def block_sizes(self) -> Tensor:
        """Real (unpadded) entries per block, [num_blocks] (per sample or per weight tensor)."""
        sizes = torch.full((self.blocks_per_row,), float(self.block_size), dtype=torch.float64)
        sizes[-1] = self.row_length - (self.blocks_per_row - 1) * self.block_size
        return sizes.repeat(self.rows)

    def expand(self, per_block: Tensor) -> Tensor:
        """Give every entry its block's value: a [num_blocks] map -> ``item_shape``."""
        spread = per_block.reshape(1, self.num_blocks, 1).expand(1, self.num_blocks, self.block_size)
        return self.from_blocks(spread)[0] if self.per_sample else self.from_blocks(spread)


def relative_errors(blocks: Tensor, candidate_bits: Sequence[int]) -> Tensor:
    """Relative BFP error ||Q_m(x) - x||^2 / ||x||^2 per block for each candidate width m.

    Measured (round to nearest), not predicted from the closed form step^2/12: at 2-4
    bits most of the error is clipping and the rounding of the few largest entries,
    which the uniform-noise formula misses. The blocks are scaled to their exponent
    once; each width is then one power-of-two rescale of the same values.
    Pooled over the lead (batch) axis; all-zero blocks get error 0. [num_blocks, len(candidates)], float64.
    """
    exponent = block_exponents(blocks)
    unit = blocks * torch.exp2(-exponent)  # |unit| < 1, step 2^(1-m)
    scale = torch.exp2(2 * exponent.double())  # per-block sums leave float32 range for tiny blocks
    errors = []
    for m in candidate_bits:
        scaled = unit * 2.0 ** (m - 1)  # in units of the step
        limit = 2.0 ** (m - 1) - 1
        residual = scaled.round().clamp_(-limit, limit).sub_(scaled).square_().sum(dim=-1, keepdim=True)
        errors.append((residual.double() * scale).sum(dim=(0, 2)) * 4.0 ** (1 - m))
    signal = (unit.square().sum(dim=-1, keepdim=True).double() * scale).sum(dim=(0, 2))
    return torch.stack(errors, dim=1) / signal.clamp_min(torch.finfo(torch.float64).tiny)[:, None]


def block_mean_abs(blocks: Tensor, sizes: Tensor) -> Tensor:
    """Mean |x| per block over the lead axis and the real entries, [num_blocks]."""
    return blocks.abs().sum(dim=(0, 2)).double() / (blocks.shape[0] * sizes.to(blocks.device))
