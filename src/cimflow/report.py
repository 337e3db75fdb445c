"""Summary report of a pipeline run: one table of all (task, method) results, plots.

Built only from the run's artifacts (metrics JSON and training histories), so it is
reproducible byte for byte and needs no tracking server.
"""

from __future__ import annotations

import html
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

COLUMNS = {
    "task": "task",
    "method": "method",
    "model": "model",
    "float_accuracy": "float acc.",
    "int8_accuracy": "int8 acc.",
    "int8_accuracy_drop": "int8 drop",
    "parameters": "params",
    "nonzero_parameters": "non-zero",
    "weight_compression": "weight compression",
    "macs": "MACs",
    "float_bytes": "float bytes",
    "int8_bytes": "int8 bytes",
    "int8_sparse_bytes": "int8 sparse bytes",
}


CIM_COLUMNS = {
    "task": "task",
    "method": "method",
    "int8_accuracy": "int8 digital",
    "cim_uncalibrated_accuracy": "CiM uncalibrated",
    "cim_calibrated_accuracy": "CiM calibrated",
    "energy_per_inference_j": "energy/inference",
    "latency_per_inference_s": "latency/inference",
    "gops": "GOPS",
    "tops_per_w": "TOPS/W",
    "sign_only_fraction": "sign-only conv.",
    "energy_per_inference_no_fused_relu_j": "energy w/o fused ReLU",
}


def dynasty_table(summaries: list[dict]) -> pd.DataFrame:
    """DYNASTY against its uniform-width baseline, per task: accuracy and modeled cost."""
    columns = ["task", "method", "test_accuracy", "modeled_speedup", "modeled_energy_reduction",
               "mean_bits_weight", "mean_bits_activation", "mean_bits_gradient", "metadata_overhead"]
    if not summaries:
        return pd.DataFrame(columns=columns)
    return pd.DataFrame(summaries).sort_values(["task", "method"]).reset_index(drop=True)[columns]


def plot_bitwidths(bitmaps: dict[str, pd.DataFrame], out: Path, dpi: int) -> None:
    """Heat map of each layer's mean block width over training, per tensor kind."""
    kinds = ("weight", "activation", "gradient")
    fig, axes = plt.subplots(len(bitmaps) or 1, 3, figsize=(12, 3.2 * max(len(bitmaps), 1)), squeeze=False)
    if not bitmaps:
        axes[0, 1].text(0.5, 0.5, "no DYNASTY run in this pipeline", ha="center", va="center")
    for row, (name, table) in enumerate(sorted(bitmaps.items())):
        for col, kind in enumerate(kinds):
            part = table[table["kind"] == kind]
            grid = part.pivot_table(index="layer", columns="step", values="bits", aggfunc="mean",
                                    sort=False, observed=True)
            ax = axes[row, col]
            image = ax.imshow(grid.to_numpy(), aspect="auto", cmap="viridis", interpolation="nearest")
            ax.set_yticks(range(len(grid.index)), grid.index, fontsize=6)
            ax.set_xlabel("map refresh (training step order)")
            ax.set_title(f"{name}: {kind} bits", fontsize=8)
            fig.colorbar(image, ax=ax)
    fig.tight_layout()
    fig.savefig(out, format="png", dpi=dpi, metadata={"Software": None})
    plt.close(fig)


def results_table(metrics: list[dict]) -> pd.DataFrame:
    frame = pd.DataFrame(metrics).sort_values(["task", "method"]).reset_index(drop=True)
    return frame[list(COLUMNS)]


def cim_table(metrics: list[dict]) -> pd.DataFrame:
    frame = pd.DataFrame(metrics).sort_values(["task", "method"]).reset_index(drop=True)
    return frame[list(CIM_COLUMNS)]


def _format_cim(frame: pd.DataFrame) -> pd.DataFrame:
    shown = frame.copy()
    for col in ("int8_accuracy", "cim_uncalibrated_accuracy", "cim_calibrated_accuracy", "sign_only_fraction"):
        shown[col] = shown[col].map(lambda v: f"{100 * v:.2f}%")
    for col in ("energy_per_inference_j", "energy_per_inference_no_fused_relu_j"):
        shown[col] = shown[col].map(lambda v: f"{v * 1e9:.2f} nJ")
    shown["latency_per_inference_s"] = shown["latency_per_inference_s"].map(lambda v: f"{v * 1e6:.1f} us")
    shown["gops"] = shown["gops"].map(lambda v: f"{v:.1f}")
    shown["tops_per_w"] = shown["tops_per_w"].map(lambda v: f"{v:.2f}")
    return shown.rename(columns=CIM_COLUMNS)


def _format(frame: pd.DataFrame) -> pd.DataFrame:
    shown = frame.copy()
    for col in ("float_accuracy", "int8_accuracy"):
        shown[col] = shown[col].map(lambda v: f"{100 * v:.2f}%")
    shown["int8_accuracy_drop"] = shown["int8_accuracy_drop"].map(lambda v: f"{100 * v:+.2f} pt")
    shown["weight_compression"] = shown["weight_compression"].map(lambda v: f"{v:.1f}x")
    for col in ("parameters", "nonzero_parameters", "macs", "float_bytes", "int8_bytes", "int8_sparse_bytes"):
        shown[col] = shown[col].map(lambda v: f"{int(v):,}")
    return shown.rename(columns=COLUMNS)


def to_markdown(shown: pd.DataFrame) -> str:
    header = "| " + " | ".join(shown.columns) + " |"
    rule = "|" + "|".join("---" for _ in shown.columns) + "|"
    rows = ["| " + " | ".join(str(v) for v in row) + " |" for row in shown.itertuples(index=False)]
    return "\n".join([header, rule, *rows])


def plot_accuracy_vs_size(frame: pd.DataFrame, out: Path, dpi: int) -> None:
    fig, ax = plt.subplots(figsize=(6, 4))
    for (task, method), row in frame.set_index(["task", "method"]).iterrows():
        ax.scatter(row["float_bytes"], 100 * row["float_accuracy"], marker="o", label=f"{task}/{method} float")
        ax.scatter(row["int8_bytes"], 100 * row["int8_accuracy"], marker="s", label=f"{task}/{method} int8")
    ax.set_xscale("log")
    ax.set_xlabel("model size (bytes)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("accuracy against model size")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out, format="png", dpi=dpi, metadata={"Software": None})
    plt.close(fig)


def plot_cim_sweep(sweeps: dict[str, pd.DataFrame], out: Path, dpi: int) -> None:
    """Accuracy and TOPS/W against ADC bits and capacitor mismatch, one line per model."""
    fig, axes = plt.subplots(2, 2, figsize=(9, 6), sharex="col")
    for col, (knob, label) in enumerate((("adc_bits", "ADC bits"), ("cap_mismatch_sigma", "capacitor mismatch sigma"))):
        for name, sweep in sorted(sweeps.items()):
            part = sweep[sweep["knob"] == knob].sort_values("value")
            axes[0, col].plot(part["value"], 100 * part["accuracy"], "o-", label=name)
            axes[1, col].plot(part["value"], part["tops_per_w"], "o-", label=name)
        axes[1, col].set_xlabel(label)
    axes[0, 0].set_ylabel("calibrated CiM accuracy (%)")
    axes[1, 0].set_ylabel("TOPS/W")
    for ax in axes.flat:
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out, format="png", dpi=dpi, metadata={"Software": None})
    plt.close(fig)


def plot_compression(frame: pd.DataFrame, cim: pd.DataFrame, steps: dict[str, pd.DataFrame], out: Path,
                     dpi: int) -> None:
    """Accuracy against compression (final models and each progressive step), and CiM
    energy per inference against compression: what pruning buys on the macro."""
    fig, (acc_ax, energy_ax) = plt.subplots(1, 2, figsize=(10, 4))
    for name, table in sorted(steps.items()):
        if "target_ratio" not in table or "phase" not in table:
            continue
        done = table[table["phase"] == "retrain"].dropna(subset=["test_accuracy"])
        per_step = done.groupby("step").agg(total=("total", "sum"), nonzeros=("nonzeros", "sum"),
                                             accuracy=("test_accuracy", "last"))
        if len(per_step):
            acc_ax.plot(per_step["total"] / per_step["nonzeros"].clip(lower=1), 100 * per_step["accuracy"],
                        "o--", alpha=0.6, label=f"{name} steps")
    merged = frame.merge(cim, on=["task", "method"], suffixes=("", "_cim"))
    for row in merged.itertuples(index=False):
        label = f"{row.task}/{row.method}"
        acc_ax.scatter(row.weight_compression, 100 * row.float_accuracy, s=40, label=label)
        energy_ax.scatter(row.weight_compression, row.energy_per_inference_j * 1e9, s=40, label=label)
    for ax in (acc_ax, energy_ax):
        ax.set_xscale("log")
        ax.set_xlabel("weight compression (conv/fc weights / non-zero)")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=6)
    acc_ax.set_ylabel("test accuracy (%)")
    energy_ax.set_ylabel("CiM energy per inference (nJ)")
    fig.tight_layout()
    fig.savefig(out, format="png", dpi=dpi, metadata={"Software": None})
    plt.close(fig)


def plot_training(histories: dict[str, pd.DataFrame], out: Path, dpi: int) -> None:
    fig, (loss_ax, acc_ax) = plt.subplots(1, 2, figsize=(9, 3.5))
    for label, hist in sorted(histories.items()):
        loss_ax.plot(hist["epoch"], hist["train_loss"], label=f"{label} train")
        loss_ax.plot(hist["epoch"], hist["test_loss"], "--", label=f"{label} test")
        acc_ax.plot(hist["epoch"], 100 * hist["test_accuracy"], label=label)
    loss_ax.set_yscale("log")
    loss_ax.set_xlabel("epoch")
    loss_ax.set_ylabel("cross-entropy")
    acc_ax.set_xlabel("epoch")
    acc_ax.set_ylabel("test accuracy (%)")
    for ax in (loss_ax, acc_ax):
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out, format="png", dpi=dpi, metadata={"Software": None})
    plt.close(fig)


def _format_dynasty(frame: pd.DataFrame) -> pd.DataFrame:
    shown = frame.copy()
    shown["test_accuracy"] = shown["test_accuracy"].map(lambda v: f"{100 * v:.2f}%")
    for col in ("modeled_speedup", "modeled_energy_reduction"):
        shown[col] = shown[col].map(lambda v: f"{v:.2f}x")
    for col in ("mean_bits_weight", "mean_bits_activation", "mean_bits_gradient"):
        shown[col] = shown[col].map(lambda v: f"{v:.2f}")
    shown["metadata_overhead"] = shown["metadata_overhead"].map(lambda v: f"{100 * v:.1f}%")
    return shown


def render_markdown(title: str, frame: pd.DataFrame, cim: pd.DataFrame, dynasty: pd.DataFrame,
                    plots: list[Path]) -> str:
    parts = [f"# {title}", "", "Generated by `cimflow report` from the run's artifacts.", "",
             "## Results", "", to_markdown(_format(frame)), "",
             "Accuracies are on each task's held-out test split; int8 = post-training "
             "per-channel int8 weights and per-tensor int8 activations.", "",
             "## On the simulated CD-CiM macro", "", to_markdown(_format_cim(cim)), "",
             "Same test split, on one simulated chip (params.yaml `cim`): uncalibrated, and "
             "with the chip's ADC correction tables and sign trim. Energy, latency, GOPS and "
             "TOPS/W count the calibrated run on one macro.", "",
             "## DYNASTY dynamic-precision training", "", to_markdown(_format_dynasty(dynasty)), "",
             "Speedup and energy are the cost model's (MAC cost ~ product of operand widths, "
             "traffic ~ bits moved) over the actual maps of the run, against uniform "
             "`dynasty.cost.baseline_bits`.", "", "## Plots", ""]
    parts += [f"![{p.stem}]({p.name})" for p in plots]
    return "\n".join(parts) + "\n"


def render_html(title: str, frame: pd.DataFrame, cim: pd.DataFrame, dynasty: pd.DataFrame,
                plots: list[Path]) -> str:
    table = _format(frame).to_html(index=False, border=0, classes="results")
    table += "\n<h2>On the simulated CD-CiM macro</h2>\n"
    table += _format_cim(cim).to_html(index=False, border=0, classes="results")
    table += "\n<h2>DYNASTY dynamic-precision training</h2>\n"
    table += _format_dynasty(dynasty).to_html(index=False, border=0, classes="results")
    images = "\n".join(f'<figure><img src="{html.escape(p.name)}" alt="{html.escape(p.stem)}"></figure>'
                       for p in plots)
    return (f"<!doctype html>\n<html><head><meta charset='utf-8'><title>{html.escape(title)}</title>\n"
            "<style>body{font-family:sans-serif;margin:2em}table.results{border-collapse:collapse}"
            "table.results td,table.results th{padding:4px 10px;border-bottom:1px solid #ccc;text-align:right}"
            "img{max-width:100%}</style></head><body>\n"
            f"<h1>{html.escape(title)}</h1>\n{table}\n{images}\n</body></html>\n")
