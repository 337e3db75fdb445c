"""The report's domain-adaptation part: target accuracy of ADMP and its baselines against
the work their pruned networks keep (parameters, MACs, the chip's conversions and energy),
and the ADMP game's trajectory per period."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from cimflow.methods import DOMAIN_ADAPTATION, METHODS  # noqa: E402
from cimflow.report import percent  # noqa: E402

TEACHER = "dann"
NOTE = (
    "Domain-adaptation tasks: accuracy is on the labeled *target* test split; training saw labeled source images "
    "and unlabeled target images only. baseline = source-only; dann = the unpruned UDA teacher; admp, "
    "adapt_then_prune and prune_then_adapt remove the same share of channels (params.yaml `admp.<task>.ratio`) "
    "and train equally long after their starting model. Reductions are against the teacher, counted from the "
    "shrunk layers. ADMP's published figures (60% of channels pruned, about 1.63x fewer parameters, at 0.2 / "
    "0.3 points average loss on Office-31 / ImageCLEF-DA with ImageNet-pretrained backbones) stand beside the "
    "teacher-to-admp difference here, on LeNet-5 digit pairs trained from scratch with far fewer images and "
    "epochs; LeNet-5's parameters sit mostly in fc1, so the same channel share removes far more of them."
)


def domain_tasks(summary: pd.DataFrame) -> list[str]:
    """Tasks whose runs include a method made only for domain adaptation."""
    only = {m for m, spec in METHODS.items() if spec.kinds == (DOMAIN_ADAPTATION,)}
    return sorted(summary.loc[summary["method"].isin(only), "task"].unique())


def domain_table(summary: pd.DataFrame, cim: pd.DataFrame) -> pd.DataFrame:
    """One row per (domain task, method) with accuracy, work and the chip's numbers."""
    frame = summary[summary["task"].isin(domain_tasks(summary))]
    if len(cim):
        chip = cim[["task", "method", "cim_calibrated_accuracy", "energy_per_inference_j",
                    "conversions_per_inference", "latency_per_inference_s"]]
        frame = frame.merge(chip, on=["task", "method"], how="left")
    teacher = frame[frame["method"] == TEACHER].set_index("task")
    for col in ("parameters", "macs"):
        frame[f"{col}_reduction"] = [teacher[col].get(t, math.nan) / v for t, v in zip(frame["task"], frame[col])]
    return frame.reset_index(drop=True)


def format_domain(frame: pd.DataFrame) -> pd.DataFrame:
    if not len(frame):
        return pd.DataFrame({"domain adaptation": ["no domain-adaptation task in this run"]})
    shown = pd.DataFrame({"task": frame["task"], "method": frame["method"], "seeds": frame["seeds"]})
    for col, label in (("float_accuracy", "target acc."), ("int8_accuracy", "target int8")):
        shown[label] = [percent(m, s) for m, s in zip(frame[col], frame[f"{col}_std"], strict=True)]
    shown["params"] = frame["parameters"].map(lambda v: f"{v:,.0f}")
    shown["MACs"] = frame["macs"].map(lambda v: f"{v:,.0f}")
    shown["params reduction"] = frame["parameters_reduction"].map(lambda v: f"{v:.2f}x")
    shown["MACs reduction"] = frame["macs_reduction"].map(lambda v: f"{v:.2f}x")
    if "energy_per_inference_j" in frame:
        shown["CiM calibrated"] = frame["cim_calibrated_accuracy"].map(lambda v: f"{100 * v:.2f}%")
        shown["CiM conversions"] = frame["conversions_per_inference"].map(lambda v: f"{v:,.0f}")
        shown["CiM energy"] = frame["energy_per_inference_j"].map(lambda v: f"{v * 1e9:.2f} nJ")
    return shown


def plot_domain(frame: pd.DataFrame, periods: dict[str, pd.DataFrame], out: Path, dpi: int) -> None:
    """Left: target test accuracy (mean ± std over seeds) against MACs per inference, one
    marker per method. Right: the ADMP game per period (mean over seeds): how far the
    relaxed hard masks still are from binary, and the student's agreement with the teacher
    on unlabeled target validation images."""
    fig, (acc_ax, game_ax) = plt.subplots(1, 2, figsize=(11, 4.2))
    if not len(frame):
        acc_ax.text(0.5, 0.5, "no domain-adaptation task in this run", ha="center", va="center")
    for row in frame.itertuples(index=False):
        std = 0 if math.isnan(row.float_accuracy_std) else 100 * row.float_accuracy_std
        acc_ax.errorbar(row.macs, 100 * row.float_accuracy, yerr=std, marker="o", capsize=3, linestyle="none",
                        label=f"{row.task}/{row.method}")
    acc_ax.set_xscale("log")
    acc_ax.set_xlabel("MACs per inference (from the shrunk layers)")
    acc_ax.set_ylabel("target test accuracy (%)")
    acc_ax.set_title("target accuracy against work kept")
    by_task: dict[str, list[pd.DataFrame]] = {}
    for key, table in sorted(periods.items()):  # key: task/method/seedN
        by_task.setdefault(key.rsplit("/", 1)[0], []).append(table)
    distance_ax = game_ax.twinx()
    for name, tables in by_task.items():
        mean = pd.concat(tables).groupby("epoch").mean(numeric_only=True)
        distance_ax.plot(mean.index, mean["mask_distance"], "--", label=f"{name} ||m - Z||")
        if "target_val_agreement" in mean:
            game_ax.plot(mean.index, 100 * mean["target_val_agreement"], "-o", markersize=3,
                         label=f"{name} teacher agreement")
    if not by_task:
        game_ax.text(0.5, 0.5, "no ADMP run in this pipeline", ha="center", va="center")
    game_ax.set_xlabel("game epoch (one ADMM period each)")
    game_ax.set_ylabel("teacher agreement on target validation (%)")
    distance_ax.set_ylabel("||m - Z|| (relaxed hard masks to binary)")
    for ax in (acc_ax, game_ax, distance_ax):
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=6, loc="lower right" if ax is not distance_ax else "upper right")
    acc_ax.grid(True, alpha=0.3)
    game_ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, format="png", dpi=dpi, metadata={"Software": None})
    plt.close(fig)
