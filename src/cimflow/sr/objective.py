"""The super-resolution kind's side of the shared training loop (cimflow.train.fit):
random aligned LR/HR patches on Y, L1 loss (EDSR), PSNR on whole validation images."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cimflow.sr.data import SrSet
from cimflow.sr.inference import super_resolve, y_tensor
from cimflow.sr.metrics import psnr_y, rgb_to_y
from cimflow.train import Objective


def adam(model: nn.Module, params) -> torch.optim.Optimizer:
    """The SR optimizer (EDSR's settings; ``params.lr`` the step)."""
    return torch.optim.Adam(model.parameters(), lr=params.lr, betas=(0.9, 0.999), eps=1e-8)


def dihedral(x: torch.Tensor, k: int) -> torch.Tensor:
    """One of the 8 flips/rotations of a square patch (k in 0..7)."""
    x = torch.rot90(x, k % 4, dims=(-2, -1))
    return x.flip(-1) if k >= 4 else x


class SuperResolution(Objective):
    """``patches_per_epoch`` patches a step of ``batch_size`` at a time: the image drawn with
    probability proportional to its area, a uniform position, one of the 8 flips/rotations."""

    train_metric = "psnr"

    def __init__(self, train: SrSet, val: SrSet, patch_size: int, patches_per_epoch: int) -> None:
        if patch_size % train.scale:
            raise ValueError(f"patch_size {patch_size} is not a multiple of the scale {train.scale}")
        self.scale, self.patch, self.samples = train.scale, patch_size, patches_per_epoch
        small = [n for n, hr in zip(train.names, train.hr, strict=True) if min(hr.shape[:2]) < patch_size]
        if small:
            raise ValueError(f"training images smaller than patch_size {patch_size}: {small}")
        self.lr = [y_tensor(im)[0] for im in train.lr]
        self.hr = [y_tensor(im)[0] for im in train.hr]
        area = torch.tensor([float(t.shape[1] * t.shape[2]) for t in self.lr], dtype=torch.float64)
        self.weights = area / area.sum()
        self.val = val

    def epoch(self, generator: torch.Generator, batch_size: int,
              device: torch.device) -> Iterator[tuple[torch.Tensor, torch.Tensor, None]]:
        p_lr, s = self.patch // self.scale, self.scale
        for start in range(0, self.samples, batch_size):
            n = min(batch_size, self.samples - start)
            images = torch.multinomial(self.weights, n, replacement=True, generator=generator).tolist()
            where = torch.rand(n, 2, generator=generator, dtype=torch.float64)
            turns = torch.randint(0, 8, (n,), generator=generator).tolist()
            lrs, hrs = [], []
            for i, (fy, fx), k in zip(images, where.tolist(), turns, strict=True):
                _, h, w = self.lr[i].shape
                y, x = int(fy * (h - p_lr + 1)), int(fx * (w - p_lr + 1))
                lrs.append(dihedral(self.lr[i][:, y : y + p_lr, x : x + p_lr], k))
                hrs.append(dihedral(self.hr[i][:, y * s : (y + p_lr) * s, x * s : (x + p_lr) * s], k))
            yield torch.stack(lrs).to(device), torch.stack(hrs).to(device), None

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.l1_loss(outputs, targets)

    def score(self, outputs: torch.Tensor, targets: torch.Tensor) -> float:
        mse = ((outputs.clamp(0, 1) - targets) ** 2).mean(dim=(1, 2, 3)).clamp_min(1e-10)
        return float((-10.0 * torch.log10(mse)).sum())

    def validate(self, model: nn.Module, device: torch.device) -> dict[str, float]:
        values = [psnr_y(super_resolve(model, lr, device), rgb_to_y(hr), self.scale)
                  for lr, hr in zip(self.val.lr, self.val.hr, strict=True)]
        model.train()
        return {"val_psnr": float(np.mean(values))}
