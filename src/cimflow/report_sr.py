"""The report's super-resolution part: PSNR/SSIM on Y against the MACs a sparse engine
executes, for the dense network and each Feature Regularization level, beside bicubic;
per-layer feature sparsity; and side-by-side crops."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from cimflow.methods import METHODS  # noqa: E402
from cimflow.seedstats import mean_std  # noqa: E402
from cimflow.sr.evaluate import DENSE  # noqa: E402

NOTE = (
    "Super-resolution tasks: PSNR and SSIM on the Y channel (BT.601) after shaving `scale` pixels, LR inputs "
    "made by MATLAB-compatible bicubic downscaling of the modcropped HR images; the networks see and produce "
    "Y only. MACs are counted from the actual non-zeros of each image (a zero input entry costs nothing), "
    "mean per image; `dense` is a pass without sparsifier (its MACs already drop where ReLU outputs are zero). "
    "`sr_channel` is the structured-pruning baseline (same recipe and levels, static channels): its channels "
    "are removed for real, so a level s cuts a layer's inputs and its producer's outputs and the MACs fall "
    "faster than the level; compare methods at equal MACs (the plot), not at equal level. "
    "The published bicubic rows (Set5 x2/x3/x4: 33.66 / 30.39 / 28.42 dB; BSD100: 29.56 / 27.21 / 25.96) and "
    "SRCNN / FSRCNN at x2 (Set5 36.66 / 37.00, BSD100 31.36 / 31.53; trained on T91 (+ General100) for many "
    "more iterations) stand beside the dense rows of the real-data task only; the embedded default trains on a "
    "dozen photographs for a few epochs and tests on four others."
)


def sr_table(metrics: list[dict]) -> pd.DataFrame:
    """One row per (task, method, seed, set, level), plus each set's bicubic baseline as method ``bicubic``."""
    rows = []
    for m in metrics:
        for set_name, entry in m["sets"].items():
            base = {"task": m["task"], "seed": m["seed"], "set": set_name, "scale": m["scale"],
                    "images": entry["images"]}
            rows.append(base | {"method": "bicubic", "level": "-", "psnr": entry["bicubic_psnr"],
                                "ssim": entry["bicubic_ssim"]})
            for label, values in entry["levels"].items():
                rows.append(base | {"method": m["method"], "level": label, **values})
    return pd.DataFrame(rows).drop_duplicates(["task", "seed", "set", "method", "level"])


def sr_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Mean and standard deviation over seeds of each (task, set, method, level)."""
    rows = []
    for key, group in table.groupby(["task", "set", "method", "level"], sort=False):
        row = dict(zip(("task", "set", "method", "level"), key, strict=True)) | {"seeds": len(group),
                                                                                  "scale": group["scale"].iloc[0]}
        for column in ("psnr", "ssim", "sparse_macs", "dense_macs", "mac_reduction", "feature_sparsity"):
            if column in group and group[column].notna().any():
                row[column], row[f"{column}_std"] = mean_std(group[column])
        rows.append(row)
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    sets = {name: i for i, name in enumerate(dict.fromkeys(frame["set"]))}
    methods = {name: i for i, name in enumerate(["bicubic", *METHODS])}
    order = frame.apply(lambda r: (r["task"], sets[r["set"]], methods.get(r["method"], len(methods)),
                                   -1.0 if r["level"] in ("-", DENSE) else float(r["level"])), axis=1)
    return frame.iloc[sorted(range(len(frame)), key=lambda i: order.iloc[i])].reset_index(drop=True)


def _pm(mean: float, std: float, digits: int, scale: float = 1.0) -> str:
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return ""
    text = f"{scale * mean:.{digits}f}"
    return text if std is None or math.isnan(std) else f"{text} ± {scale * std:.{digits}f}"


def format_sr(summary: pd.DataFrame) -> pd.DataFrame:
    if summary.empty:
        return pd.DataFrame({"Super resolution": ["no super-resolution task in this pipeline"]})
    dense = summary[(summary["method"] == "sr_dense") & (summary["level"] == DENSE)].set_index(["task", "set"])
    shown = []
    for row in summary.itertuples(index=False):
        r = row._asdict()
        ref = dense["psnr"].get((r["task"], r["set"]), math.nan)
        shown.append({
            "task": r["task"], "set": r["set"], "x": r["scale"], "method": r["method"], "level": r["level"],
            "seeds": r["seeds"], "PSNR (dB)": _pm(r["psnr"], r["psnr_std"], 2),
            "SSIM": _pm(r["ssim"], r["ssim_std"], 4),
            "ΔPSNR vs dense": "" if r["method"] == "bicubic" else f"{r['psnr'] - ref:+.2f}",
            "MACs/image (M)": _pm(r.get("sparse_macs"), r.get("sparse_macs_std"), 2, 1e-6),
            "MAC reduction": _pm(r.get("mac_reduction"), r.get("mac_reduction_std"), 1, 100.0),
            "feature sparsity (%)": _pm(r.get("feature_sparsity"), r.get("feature_sparsity_std"), 1, 100.0),
        })
    return pd.DataFrame(shown)


def _first_seed_layers(frames: dict[str, pd.DataFrame], values: Callable[[pd.DataFrame], pd.DataFrame],
                       fmt: Callable[[float], str]) -> pd.DataFrame:
    """One row per (task, method, layer) of each SR run's first seed, one column per level:
    ``values(frame)`` gives a (layer x level) table, ``fmt`` writes one value."""
    rows = []
    for key, frame in sorted(frames.items()):  # key: task/method/seedN
        task, method, seed = key.split("/")
        if seed != min(k.split("/")[2] for k in frames if k.startswith(f"{task}/{method}/")):
            continue
        for layer, row in values(frame).iterrows():
            rows.append({"task": task, "method": method, "layer": layer,
                         **{f"level {lv}": fmt(v) for lv, v in row.items()}})
    if not rows:
        return pd.DataFrame({"layers": ["no super-resolution run"]})
    return _levels_in_order(pd.DataFrame(rows).fillna("-"))


def layer_table(sparsity: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Mean input sparsity of every conv per level (columns), for each SR run's first seed."""
    return _first_seed_layers(
        sparsity, lambda f: f.groupby(["layer", "level"], sort=False)["input_sparsity"].mean().unstack("level"),
        lambda v: f"{100 * v:.1f}%")


def _levels_in_order(frame: pd.DataFrame) -> pd.DataFrame:
    """task, method, layer, then the ``level`` columns: dense first, then ascending."""
    levels = sorted((c for c in frame if c.startswith("level ") and c != f"level {DENSE}"), key=lambda c: float(c[6:]))
    return frame[["task", "method", "layer", *([f"level {DENSE}"] if f"level {DENSE}" in frame else []), *levels]]


def plot_sr(summary: pd.DataFrame, histories: dict[str, pd.DataFrame], out: Path, dpi: int) -> None:
    """PSNR against executed MACs per test set (dense and each level; bicubic as a line), and
    validation PSNR per epoch of every SR run."""
    tasks_sets = [] if summary.empty else list(dict.fromkeys(zip(summary["task"], summary["set"], strict=True)))
    fig, axes = plt.subplots(1, len(tasks_sets) + 1, figsize=(4.2 * (len(tasks_sets) + 1), 3.5), squeeze=False)
    for ax, (task, set_name) in zip(axes[0], tasks_sets, strict=False):
        rows = summary[(summary["task"] == task) & (summary["set"] == set_name)]
        for method, group in rows[rows["method"] != "bicubic"].groupby("method", sort=False):
            group = group.sort_values("sparse_macs")
            ax.errorbar(group["sparse_macs"] / 1e6, group["psnr"], yerr=group["psnr_std"].fillna(0.0), marker="o",
                        capsize=2, label=method)
            for label, x, y in zip(group["level"], group["sparse_macs"] / 1e6, group["psnr"], strict=True):
                ax.annotate(label, (x, y), fontsize=6, xytext=(3, 3), textcoords="offset points")
        bicubic = rows[rows["method"] == "bicubic"]["psnr"]
        if len(bicubic):
            ax.axhline(float(bicubic.iloc[0]), color="grey", linestyle=":", label="bicubic")
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())  # minor labels overlap over a decade
        ax.set_xlabel("MACs per image, executed (M)")
        ax.set_ylabel("PSNR on Y (dB)")
        ax.set_title(f"{task}: {set_name}", fontsize=9)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=6)
    ax = axes[0][-1]
    for key, hist in sorted(histories.items()):
        if "val_psnr" in hist:
            ax.plot(hist["epoch"], hist["val_psnr"], label=key)
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation PSNR (dB)")
    ax.set_title("per epoch (featreg, sr_channel: at the sparsest level)", fontsize=8)
    ax.grid(True, alpha=0.3)
    if histories:
        ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(out, format="png", dpi=dpi, metadata={"Software": None})
    plt.close(fig)


def plot_crops(samples: dict[str, dict[str, np.ndarray]], out: Path, dpi: int) -> None:
    """Centre crops of each set's first image: HR, bicubic, then every run's outputs (first seed)."""
    def rank(label: str) -> float:  # HR, bicubic, dense, then levels ascending
        return {"hr": -3.0, "bicubic": -2.0, DENSE: -1.0}.get(label) or float(label)

    found: dict[str, tuple[tuple, np.ndarray]] = {}
    for key, crops in samples.items():  # key: task/method/seedN, crops: "<set>/<label>" -> Y
        task, method = key.split("/")[:2]
        for name, crop in crops.items():
            set_name, label = name.split("/", 1)
            shared = label in ("hr", "bicubic")
            title = f"{task} {set_name}: {label}" if shared else f"{method} {label}"
            found.setdefault(title, ((task, set_name, rank(label), "" if shared else method), crop))
    panels = [(title, crop) for title, (_, crop) in sorted(found.items(), key=lambda item: item[1][0])]
    columns = max(1, min(6, len(panels)))
    rows = max(1, math.ceil(len(panels) / columns))
    fig, axes = plt.subplots(rows, columns, figsize=(1.9 * columns, 2.1 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, (title, crop) in zip(axes.flat, panels, strict=False):
        ax.imshow(crop, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
        ax.set_title(title, fontsize=6)
    if not panels:
        axes[0][0].text(0.5, 0.5, "no super-resolution run", ha="center", va="center")
    fig.tight_layout()
    fig.savefig(out, format="png", dpi=dpi, metadata={"Software": None})
    plt.close(fig)


CIM_NOTE = (
    "Each super-resolution model on the simulated CD-CiM chip (calibrated, with noise), at every level: the int8 "
    "digital engine's PSNR beside the chip's, and the macro's energy per test image by component. A dropped "
    "feature is a zero input code, so its rows carry no charge: sparsity lowers the array and input-driver "
    "energy, while every column is still converted in every cycle (the ADC and digital parts, and the cycles, "
    "stay). The peripheral energy (requantization, buffers; cim.system, assumed constants) is counted dense. "
    "The published 10.3 TOPS/W is the macro on random int8 vectors with ReLU; here the ops are the dense "
    "2 K M per vector of real images, whose inputs are mostly small or zero codes, so the figures are not "
    "comparable to it."
)
_CIM_COLUMNS = ("psnr_int8", "psnr_chip", "ssim_chip", "energy_per_image_j", "energy_array_per_image_j",
                "energy_input_per_image_j", "energy_adc_per_image_j", "energy_digital_per_image_j",
                "energy_system_per_image_j", "sign_only_fraction", "tops_per_w", "cycles_per_image")


def cim_summary(metrics: list[dict]) -> pd.DataFrame:
    """Mean and standard deviation over seeds of each (task, set, method, level) on the chip."""
    rows = [{"task": m["task"], "seed": m["seed"], "method": m["method"], "set": set_name, "level": label, **values}
            for m in metrics for set_name, entry in m["sets"].items() for label, values in entry["levels"].items()]
    if not rows:
        return pd.DataFrame()
    table = pd.DataFrame(rows).drop_duplicates(["task", "seed", "set", "method", "level"])
    out = []
    for key, group in table.groupby(["task", "set", "method", "level"], sort=False):
        row = dict(zip(("task", "set", "method", "level"), key, strict=True)) | {"seeds": len(group)}
        for column in _CIM_COLUMNS:
            row[column], row[f"{column}_std"] = mean_std(group[column])
        out.append(row)
    return pd.DataFrame(out)


def format_cim(summary: pd.DataFrame) -> pd.DataFrame:
    if summary.empty:
        return pd.DataFrame({"Super resolution on the chip": ["no super-resolution run"]})
    dense = summary[(summary["method"] == "sr_dense") & (summary["level"] == DENSE)].set_index(["task", "set"])
    shown = []
    for r in summary.to_dict("records"):
        ref = dense["energy_per_image_j"].get((r["task"], r["set"]), math.nan)
        shown.append({
            "task": r["task"], "set": r["set"], "method": r["method"], "level": r["level"], "seeds": r["seeds"],
            "PSNR int8 (dB)": _pm(r["psnr_int8"], r["psnr_int8_std"], 2),
            "PSNR chip (dB)": _pm(r["psnr_chip"], r["psnr_chip_std"], 2),
            "chip - int8": f"{r['psnr_chip'] - r['psnr_int8']:+.2f}",
            "macro µJ/image": _pm(r["energy_per_image_j"], r["energy_per_image_j_std"], 2, 1e6),
            "vs dense": f"{100 * (r['energy_per_image_j'] / ref - 1):+.1f}%" if ref == ref else "",
            "array / input / ADC / digital µJ": " / ".join(
                f"{1e6 * r[f'energy_{p}_per_image_j']:.2f}" for p in ("array", "input", "adc", "digital")),
            "peripheral µJ/image": f"{1e6 * r['energy_system_per_image_j']:.2f}",
            "sign-only": f"{100 * r['sign_only_fraction']:.1f}%",
            "TOPS/W (macro)": f"{r['tops_per_w']:.1f}",
        })
    return pd.DataFrame(shown)


def cim_layer_table(layers: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Macro energy per image of every layer at each level (µJ), for each SR run's first seed."""
    def energy(frame: pd.DataFrame) -> pd.DataFrame:
        images = frame.groupby("level", sort=False)["image"].nunique()
        return frame.groupby(["layer", "level"], sort=False)["energy_j"].sum().unstack("level") / images

    return _first_seed_layers(layers, energy, lambda v: f"{1e6 * v:.3f}")


def plot_cim(summary: pd.DataFrame, out: Path, dpi: int) -> None:
    """Per task: the macro's energy per image by component for the dense model and each level
    (its first test set), and PSNR on the chip against that energy for every set."""
    tasks = [] if summary.empty else list(dict.fromkeys(summary["task"]))
    fig, axes = plt.subplots(max(1, len(tasks)), 2, figsize=(10, 3.6 * max(1, len(tasks))), squeeze=False)
    if not tasks:
        for ax in axes.flat:
            ax.axis("off")
        axes[0][0].text(0.5, 0.5, "no super-resolution run", ha="center", va="center")
    for (bars, curve), task in zip(axes, tasks, strict=False):
        rows = summary[summary["task"] == task]
        first = rows[rows["set"] == rows["set"].iloc[0]]
        labels = [f"{m} {lv}" if lv != DENSE else m for m, lv in zip(first["method"], first["level"], strict=True)]
        bottom = np.zeros(len(first))
        for part in ("array", "input", "adc", "digital"):
            values = 1e6 * first[f"energy_{part}_per_image_j"].to_numpy()
            bars.bar(range(len(first)), values, bottom=bottom, label=part)
            bottom += values
        bars.set_xticks(range(len(first)), labels, rotation=30, ha="right", fontsize=7)
        bars.set_ylabel("macro energy per image (µJ)")
        bars.set_title(f"{task}: {first['set'].iloc[0]}", fontsize=9)
        bars.legend(fontsize=7)
        for (set_name, method), group in rows.groupby(["set", "method"], sort=False):
            curve.errorbar(1e6 * group["energy_per_image_j"], group["psnr_chip"],
                           yerr=group["psnr_chip_std"].fillna(0.0), marker="o", capsize=2, label=f"{set_name} {method}")
        curve.set_xlabel("macro energy per image (µJ)")
        curve.set_ylabel("PSNR on the chip, Y (dB)")
        curve.grid(True, alpha=0.3)
        curve.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(out, format="png", dpi=dpi, metadata={"Software": None})
    plt.close(fig)
