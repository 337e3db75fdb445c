"""The report's ratio-sweep part: test accuracy of ADMM and of magnitude pruning at each
overall compression target, over seeds, and where (if anywhere) ADMM separates.

Every point of a seed starts from the same baseline and is tested on the same split, so
the comparisons are paired per seed: ADMM minus each magnitude pruner, and each point
minus its baseline. A separation is claimed only where the paired Student-t interval
of ADMM against every magnitude pruner lies above zero.
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.ticker import NullLocator  # noqa: E402

from cimflow.seedstats import mean_interval, paired_difference  # noqa: E402

ADMM = "admm_prune"
NOTE = (
    "Each pruner brings the float baseline of every seed to each overall target (conv+fc weights / non-zeros) with "
    "the same progressive steps, ADMM periods and epoch budget as `admm.<task>.prune`, whose per-layer profile is "
    "rescaled per target (cimflow.compress.admm.sweep). Accuracy: mean over seeds with the Student-t interval; "
    "'vs baseline' and 'ADMM - ...' are paired per seed. The published 246x (arXiv 1903.09769) is LeNet-5 on the "
    "60k MNIST training images over hundreds of epochs; here LeNet-5 trains on the task's training split with "
    "112 epochs per pruning, so the absolute accuracies do not stand beside the paper's, only the trend."
)


def sweep_table(metrics: list[dict]) -> pd.DataFrame:
    """One row per (task, method, target, seed) from the evaluate_sweep stage."""
    frame = pd.DataFrame(metrics)
    return frame.sort_values(["task", "method", "target", "seed"]).reset_index(drop=True)


def sweep_summary(per_seed: pd.DataFrame, baseline: pd.DataFrame, confidence: float) -> pd.DataFrame:
    """Per (task, method, target): accuracy with its interval, the compression reached and
    the paired difference to the baseline (``baseline``: task, seed, float_accuracy)."""
    rows = []
    for (task, method, target), group in per_seed.groupby(["task", "method", "target"], sort=True):
        g = group.set_index("seed")
        accuracy = mean_interval(g["float_accuracy"], confidence)
        base = baseline[baseline["task"] == task].set_index("seed")["float_accuracy"]
        versus = paired_difference(g["float_accuracy"], base.reindex(g.index), confidence)
        rows.append({"task": task, "method": method, "target": target, "seeds": len(g), "accuracy": accuracy.mean,
                     "low": accuracy.low, "high": accuracy.high, "compression": float(g["weight_compression"].mean()),
                     "vs_baseline": versus.mean, "vs_baseline_low": versus.low, "vs_baseline_high": versus.high})
    return pd.DataFrame(rows)


def separation(per_seed: pd.DataFrame, confidence: float) -> pd.DataFrame:
    """Per (task, target, magnitude pruner): ADMM minus that pruner, paired over seeds."""
    rows = []
    indexed = per_seed.set_index(["task", "target", "method", "seed"])["float_accuracy"].sort_index()
    for (task, target), group in per_seed.groupby(["task", "target"], sort=True):
        methods = set(group["method"])
        if ADMM not in methods:
            continue
        for other in sorted(methods - {ADMM}):
            p = paired_difference(indexed.loc[(task, target, ADMM)], indexed.loc[(task, target, other)], confidence)
            rows.append({"task": task, "target": target, "against": other, "seeds": p.seeds, "mean": p.mean,
                         "low": p.low, "high": p.high})
    return pd.DataFrame(rows, columns=["task", "target", "against", "seeds", "mean", "low", "high"])


def separation_statement(paired: pd.DataFrame) -> str:
    """Per task, the targets where ADMM beats every magnitude pruner beyond the interval."""
    if not len(paired):
        return "No ADMM sweep with a magnitude pruner beside it in this run."
    parts = []
    for task, group in paired.groupby("task", sort=True):
        if group["low"].isna().all():
            parts.append(f"{task}: one seed, so no interval (configs/claims.yaml runs three).")
            continue
        above = group.groupby("target")["low"].apply(lambda lows: bool((lows > 0).all()))
        separated = [f"{int(t)}x" for t, ok in above.items() if ok]
        parts.append(f"{task}: ADMM above every magnitude pruner beyond the interval at {', '.join(separated)}."
                     if separated else
                     f"{task}: no separation up to {int(group['target'].max())}x, the highest target tried.")
    return " ".join(parts)


def format_summary(frame: pd.DataFrame, confidence: float) -> pd.DataFrame:
    if not len(frame):
        return pd.DataFrame({"ratio sweep": ["no ratio sweep in this run"]})
    shown = frame[["task", "method", "seeds"]].copy()
    shown.insert(2, "target", frame["target"].map(lambda v: f"{v}x"))
    shown["reached"] = frame["compression"].map(lambda v: f"{v:.1f}x")
    shown["test acc."] = [_with_interval(m, lo, hi, "%") for m, lo, hi in
                          zip(frame["accuracy"], frame["low"], frame["high"], strict=True)]
    shown[f"vs baseline ({confidence:.0%})"] = [_with_interval(m, lo, hi, " pt", signed=True) for m, lo, hi in
                                                zip(frame["vs_baseline"], frame["vs_baseline_low"],
                                                    frame["vs_baseline_high"], strict=True)]
    return shown


def format_separation(frame: pd.DataFrame, confidence: float) -> pd.DataFrame:
    if not len(frame):
        return pd.DataFrame({"ADMM against magnitude pruning": ["no ADMM sweep in this run"]})
    shown = pd.DataFrame({"task": frame["task"], "target": frame["target"].map(lambda v: f"{v}x"),
                          "ADMM minus": frame["against"], "seeds": frame["seeds"]})
    shown[f"difference ({confidence:.0%})"] = [_with_interval(m, lo, hi, " pt", signed=True) for m, lo, hi in
                                               zip(frame["mean"], frame["low"], frame["high"], strict=True)]
    return shown


def _with_interval(mean: float, low: float, high: float, unit: str, signed: bool = False) -> str:
    if math.isnan(mean):
        return "-"
    sign = "+" if signed else ""
    text = f"{100 * mean:{sign}.2f}{unit}"
    return text if math.isnan(low) else f"{text} [{100 * low:{sign}.2f}, {100 * high:{sign}.2f}]"


def plot_sweep(summary: pd.DataFrame, baseline: pd.DataFrame, out: Path, dpi: int) -> None:
    """Test accuracy against the overall compression target, one panel per task, one line
    per pruner (mean over seeds, t interval as error bars, pruners nudged apart along x so
    the bars do not hide each other); the baseline's mean as a line."""
    tasks = sorted(summary["task"].unique()) if len(summary) else []
    fig, axes = plt.subplots(1, max(len(tasks), 1), figsize=(5.5 * max(len(tasks), 1), 4.2), squeeze=False)
    if not tasks:
        axes[0][0].text(0.5, 0.5, "no ratio sweep in this run", ha="center", va="center")
        axes[0][0].set_axis_off()
    for ax, task in zip(axes[0], tasks):
        rows = summary[summary["task"] == task]
        pruners = rows["method"].nunique()
        for index, (method, group) in enumerate(rows.groupby("method", sort=True)):
            group = group.sort_values("target")
            nudge = 1 + 0.03 * (index - (pruners - 1) / 2)
            error = [(100 * (group["accuracy"] - group["low"])).fillna(0), (100 * (group["high"] - group["accuracy"]))
                     .fillna(0)]
            ax.errorbar(group["compression"] * nudge, 100 * group["accuracy"], yerr=error, marker="o", capsize=3,
                        label=method)
        base = baseline.loc[baseline["task"] == task, "float_accuracy"]
        if len(base):
            ax.axhline(100 * base.mean(), color="grey", linestyle="--", label="baseline (mean)")
        ax.set_xscale("log")
        targets = sorted(rows["target"].unique())
        ax.set_xticks(targets, labels=[f"{t:g}x" for t in targets])
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_xlabel("weight compression reached (weights / non-zeros)")
        ax.set_ylabel("test accuracy (%)")
        ax.set_title(f"{task}: accuracy against pruning ratio")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out, format="png", dpi=dpi, metadata={"Software": None})
    plt.close(fig)
