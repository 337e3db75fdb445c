"""The super-resolution evaluator: PSNR and SSIM on Y by the standard protocol
(cimflow.sr.metrics), the bicubic baseline beside them, and MACs and feature sparsity
counted from the actual non-zeros of every image (cimflow.sr.macs), per level of a
sparsified model and per test set."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm import tqdm

from cimflow.compress.featreg.sparsify import Sparsifier
from cimflow.shrink import shrink
from cimflow.sr.data import SrSet
from cimflow.sr.inference import to_pixels, y_tensor
from cimflow.sr.macs import MacCounter
from cimflow.sr.metrics import psnr_y, rgb_to_y, ssim_y
from cimflow.sr.resize import imresize

DENSE = "dense"  # the level label of a pass without sparsifier
CROP = 64  # HR pixels per side of the report's sample crops


@dataclass
class Evaluation:
    images: pd.DataFrame  # one row per (level, image): psnr, ssim, MACs, feature sparsity
    layers: pd.DataFrame  # one row per (level, image, layer): the MAC counts and input sparsity
    samples: dict[str, np.ndarray]  # uint8 Y crops per set: hr, bicubic and each level's output


def bicubic_scores(data: SrSet) -> pd.DataFrame:
    """The bicubic baseline of every image (the "Bicubic" row of SR tables)."""
    rows = []
    for hr, lr, name, set_name in zip(data.hr, data.lr, data.names, data.sets, strict=True):
        up = imresize(lr, scale=float(data.scale))
        rows.append({"set": set_name, "image": name, "psnr": psnr_y(rgb_to_y(up), rgb_to_y(hr), data.scale),
                     "ssim": ssim_y(rgb_to_y(up), rgb_to_y(hr), data.scale)})
    return pd.DataFrame(rows)


def _crop(plane: np.ndarray) -> np.ndarray:
    h, w = plane.shape
    size = min(CROP, h, w)
    top, left = (h - size) // 2, (w - size) // 2
    return np.asarray(plane[top : top + size, left : left + size], dtype=np.uint8)


def _passes(model: nn.Module, sparsifier: Sparsifier | None) -> list[tuple[str, nn.Module, int | None,
                                                                         dict[str, float]]]:
    """(label, network, sparsifier level, kept share of each sparsified ReLU's channels) of
    every pass: ``dense`` alone without a sparsifier; per level its own network in channel
    mode, whose channels are removed for real (so a pruned output channel costs nothing,
    not only its zero inputs downstream)."""
    if sparsifier is None:
        return [(DENSE, model, None, {})]
    labels = [f"{lv:g}" for lv in sparsifier.levels]
    if sparsifier.mode != "channel":
        return [(label, model, i, {}) for i, label in enumerate(labels)]
    sparsifier.remove()
    return [(label, shrink(model, sparsifier.keep_masks(model, i)), None,
             {relu: float(sparsifier.kept[i, j].double().mean()) for j, relu in enumerate(sparsifier.layers)})
            for i, label in enumerate(labels)]


def _dense_factors(model: nn.Module, net: nn.Module) -> tuple[dict[str, float], dict[str, float]]:
    """Per conv of ``net``, the full network's dense MACs over its own, and its share of the
    full network's input channels (1 unless channels were removed): dense counts, MAC
    reductions and sparsities stay those of the network as trained."""
    full = dict(model.named_modules())
    convs = [(name, m, full[name]) for name, m in net.named_modules() if isinstance(m, nn.Conv2d)]
    return ({name: (f.in_channels * f.out_channels) / (m.in_channels * m.out_channels) for name, m, f in convs},
            {name: m.in_channels / f.in_channels for name, m, f in convs})


def _full_width_sparsity(zero_share: float, kept_share: float) -> float:
    """Zero share over the full width when only ``kept_share`` of the channels are present."""
    return 1.0 - (1.0 - zero_share) * kept_share


@torch.no_grad()
def evaluate(model: nn.Module, data: SrSet, sparsifier: Sparsifier | None) -> Evaluation:
    """Every image of ``data`` at every level (``dense`` for a network without sparsifier)."""
    first = {s: data.sets.index(s) for s in dict.fromkeys(data.sets)}
    samples: dict[str, np.ndarray] = {}
    for set_name, i in first.items():
        samples[f"{set_name}/hr"] = _crop(rgb_to_y(data.hr[i]))
        samples[f"{set_name}/bicubic"] = _crop(rgb_to_y(imresize(data.lr[i], scale=float(data.scale))))
    hr_ys = [rgb_to_y(hr) for hr in data.hr]  # the same ground truth at every level
    image_rows, layer_rows, zeros = [], [], []
    for label, net, level, kept in _passes(model, sparsifier):
        net.eval()
        if sparsifier is not None:
            sparsifier.level = level

        def zero_share(_m: nn.Module, _i: tuple, out: torch.Tensor, share: float) -> None:
            zeros.append(_full_width_sparsity(float((out == 0).double().mean()), share))

        # Registered after any sparsifier's hooks, so they see the sparsified features.
        handles = [m.register_forward_hook(functools.partial(zero_share, share=kept.get(name, 1.0)))
                   for name, m in net.named_modules() if isinstance(m, nn.ReLU)]
        factor, inputs = _dense_factors(model, net)
        with MacCounter(net) as counter:
            for i in tqdm(range(len(data)), desc=f"level {label}", leave=False, disable=None):
                out = to_pixels(net(y_tensor(data.lr[i])))
                counts = counter.take()
                if i in first.values():
                    samples[f"{data.sets[i]}/{label}"] = _crop(out)
                dense = sum(c.dense_macs * factor[c.layer] for c in counts)
                sparse = sum(c.sparse_macs for c in counts)
                sparsity = float(np.mean(zeros)) if zeros else 0.0
                zeros.clear()
                image_rows.append({
                    "level": label, "set": data.sets[i], "image": data.names[i],
                    "psnr": psnr_y(out, hr_ys[i], data.scale), "ssim": ssim_y(out, hr_ys[i], data.scale),
                    "dense_macs": dense, "sparse_macs": sparse, "mac_reduction": 1.0 - sparse / dense,
                    "feature_sparsity": sparsity,  # zero share of the ReLU outputs, mean over layers
                })
                layer_rows += [{"level": label, "set": data.sets[i], "image": data.names[i], "layer": c.layer,
                                "dense_macs": c.dense_macs * factor[c.layer], "sparse_macs": c.sparse_macs,
                                "input_sparsity": _full_width_sparsity(c.input_sparsity, inputs[c.layer])}
                               for c in counts]
        for handle in handles:
            handle.remove()
    if sparsifier is not None:
        sparsifier.level = None
    return Evaluation(pd.DataFrame(image_rows), pd.DataFrame(layer_rows), samples)


def summary(result: Evaluation, bicubic: pd.DataFrame) -> dict:
    """Per test set and level: mean PSNR/SSIM, MACs (dense and executed) and feature sparsity,
    with the bicubic baseline of the same images."""
    sets = {}
    for set_name, base in bicubic.groupby("set", sort=False):
        rows = result.images[result.images["set"] == set_name]
        levels = {}
        for label, group in rows.groupby("level", sort=False):
            levels[label] = {
                "psnr": float(group["psnr"].mean()), "ssim": float(group["ssim"].mean()),
                "dense_macs": float(group["dense_macs"].mean()), "sparse_macs": float(group["sparse_macs"].mean()),
                "mac_reduction": float(1.0 - group["sparse_macs"].sum() / group["dense_macs"].sum()),
                "feature_sparsity": float(group["feature_sparsity"].mean()),
            }
        sets[set_name] = {"images": int(len(base)), "bicubic_psnr": float(base["psnr"].mean()),
                          "bicubic_ssim": float(base["ssim"].mean()), "levels": levels}
    return sets
