"""The double masks of one prunable layer and their ADMM tie to a binary channel mask.

Per layer, over its C output channels:

* the relaxed hard mask ``m`` (real, starts at 1, trained by the minimising player) and
  its binary ADMM twin ``Z`` with exactly ``keep`` ones: Z <- top-k(m + U), U <- U + m - Z,
  penalty rho/2 ||m - Z + U||^2 (the top-k projection of the ADMM pruning method);
* the soft mask s = sigmoid(a) / mean(sigmoid(a)) (starts at 1), the adversary's; it
  multiplies in only while ``adversarial`` is on, so the adversary sees features F * m * s
  and the minimising player's source and distillation terms F * m.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle

from cimflow.compress.admm.projections import kept_count, top_k_mask
from cimflow.shrink import ChannelChain

SOFT_INIT = 4.0
"""Initial soft-mask score. All scores equal, so the mean-1 soft mask starts at exactly 1;
sigmoid's flat shoulder at 4 lets the adversary move away from uniform only gradually."""


class DoubleMask(nn.Module):
    """Soft and relaxed hard masks of one layer's output channels, with the ADMM state."""

    def __init__(self, channels: int, ratio: float) -> None:
        super().__init__()
        if channels < 1:
            raise ValueError(f"a mask needs at least one channel, got {channels}")
        if not 0.0 <= ratio < 1.0:
            raise ValueError(f"channel pruning ratio must be in [0, 1), got {ratio}")
        self.keep = kept_count(channels, ratio)
        self.hard = nn.Parameter(torch.ones(channels))
        self.soft_scores = nn.Parameter(torch.full((channels,), SOFT_INIT))
        self.register_buffer("target", torch.ones(channels))  # Z
        self.register_buffer("dual", torch.zeros(channels))  # U
        self.adversarial = False

    @property
    def channels(self) -> int:
        return self.hard.numel()

    def start(self, importance: Tensor) -> None:
        """Z from the top-``keep`` channels by ``importance`` (e.g. filter L1 norms), U = 0:
        with m = 1 everywhere the first projection would otherwise be decided by ties."""
        if importance.shape != (self.channels,):
            raise ValueError(f"importance needs {self.channels} values, got shape {tuple(importance.shape)}")
        self.target.copy_(top_k_mask(importance.detach(), self.keep).to(self.target.dtype))
        self.dual.zero_()

    def forward(self, features: Tensor) -> Tensor:
        scale = self.hard * self.soft() if self.adversarial else self.hard
        return features * scale.view(1, -1, *([1] * (features.dim() - 2)))

    def soft(self) -> Tensor:
        """The soft mask: sigmoid(a) rescaled to mean 1 over the layer's channels. The
        adversary may only shift emphasis between channels; unscaled, it would switch the
        whole layer off (and the minimising player's weights would grow without bound to
        make up for it)."""
        weights = torch.sigmoid(self.soft_scores)
        return weights / weights.mean()

    def penalty(self) -> Tensor:
        """||m - Z + U||^2 (the caller multiplies by rho / 2)."""
        return (self.hard - self.target + self.dual).pow(2).sum()

    @torch.no_grad()
    def admm_step(self) -> None:
        """Z <- top-k(m + U) (exact: exactly ``keep`` ones), then U <- U + m - Z."""
        self.target.copy_(top_k_mask(self.hard + self.dual, self.keep).to(self.target.dtype))
        self.dual.add_(self.hard - self.target)

    def distance(self) -> float:
        """||m - Z||: how far the relaxed mask still is from a binary one."""
        return float((self.hard.detach() - self.target).norm())

    def kept(self) -> Tensor:
        """The channels Z keeps (bool)."""
        return self.target.bool()

    @torch.no_grad()
    def harden(self) -> None:
        """m <- Z and the soft mask off: the layer now computes exactly its pruned form."""
        self.hard.copy_(self.target)
        self.adversarial = False


class MaskedModel:
    """A model with a :class:`DoubleMask` on each chain's mask point (forward hooks); the
    masks are parameters of ``masks``, the model itself is not changed."""

    def __init__(self, model: nn.Module, chains: list[ChannelChain], ratio: float) -> None:
        self.model = model
        self.masks = nn.ModuleDict({chain.layer.replace(".", "/"): DoubleMask(chain.channels, ratio)
                                    for chain in chains})
        self.chains = {chain.layer: chain for chain in chains}
        self._handles: list[RemovableHandle] = [
            model.get_submodule(chain.mask_point).register_forward_hook(self._hook(self.mask(chain.layer)))
            for chain in chains
        ]

    @staticmethod
    def _hook(mask: DoubleMask) -> Callable[[nn.Module, tuple, Tensor], Tensor]:
        return lambda module, args, output: mask(output)

    def mask(self, layer: str) -> DoubleMask:
        return self.masks[layer.replace(".", "/")]

    def start(self) -> None:
        """Every Z from its layer's filter L1 norms (the classic channel-importance score)."""
        for layer in self.chains:
            weight = self.model.get_submodule(layer).weight
            self.mask(layer).start(weight.detach().abs().flatten(1).sum(1))

    def adversarial(self, on: bool) -> None:
        for mask in self.masks.values():
            mask.adversarial = on

    def keep(self) -> dict[str, Tensor]:
        return {layer: self.mask(layer).kept() for layer in self.chains}

    def remove(self) -> None:
        """Take the hooks off: the model computes without masks again."""
        for handle in self._handles:
            handle.remove()
        self._handles = []
