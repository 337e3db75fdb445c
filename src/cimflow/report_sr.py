"""The report's super-resolution part: PSNR/SSIM on Y against the MACs a sparse engine
executes, for the dense network and each Feature Regularization level, beside bicubic;
per-layer feature sparsity; and side-by-side crops."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

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


def layer_table(sparsity: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Mean input sparsity of every conv per level (columns), for each SR run's first seed."""
    rows = []
    for key, frame in sorted(sparsity.items()):  # key: task/method/seedN
        task, method, seed = key.split("/")
        if seed != min(k.split("/")[2] for k in sparsity if k.startswith(f"{task}/{method}/")):
            continue
        means = frame.groupby(["layer", "level"], sort=False)["input_sparsity"].mean().unstack("level")
        for layer, values in means.iterrows():
            rows.append({"task": task, "method": method, "layer": layer,
                         **{f"level {lv}": f"{100 * v:.1f}%" for lv, v in values.items()}})
    if not rows:
        return pd.DataFrame({"layers": ["no super-resolution run"]})
    frame = pd.DataFrame(rows).fillna("-")
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
    ax.set_title("per epoch (Feature Regularization: at its sparsest level)", fontsize=8)
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
