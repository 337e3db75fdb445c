"""Summary report of a pipeline run: one table of all (task, method) results, plots.

Built only from the run's artifacts (metrics JSON and training histories), so it is
reproducible byte for byte and needs no tracking server.
"""

from __future__ import annotations

import html
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from cimflow.seedstats import Paired, paired_difference  # noqa: E402

SEED_COLUMNS = {
    "task": "task",
    "method": "method",
    "seed": "seed",
    "float_accuracy": "float acc.",
    "float_accuracy_low": "float low",
    "float_accuracy_high": "float high",
    "int8_accuracy": "int8 acc.",
    "weight_compression": "weight compression",
    "stored_bytes": "stored bytes",
}

SIZE_COLUMNS = ("parameters", "nonzero_parameters", "weight_compression", "macs", "float_bytes", "int8_bytes",
                "stored_bytes", "size_compression")
"""Per-seed values averaged in the summary (identical across seeds unless pruning differs)."""

ENERGY_PARTS = ("array", "input", "adc", "digital", "requantize", "pool", "residual_add", "buffer", "weight_reload")
"""Energy components: the macro's four, then the peripheral ones (cimflow.peripheral)."""
CIM_VALUES = ("int8_accuracy", "cim_uncalibrated_accuracy", "cim_calibrated_accuracy", "energy_per_inference_j",
              "latency_per_inference_s", "gops", "tops_per_w", "sign_only_fraction",
              "energy_per_inference_no_fused_relu_j", "conversions_per_inference", "tops_per_w_system",
              "tops_per_w_reference_workload", "energy_system_per_inference_j",
              *(f"energy_{part}_per_inference_j" for part in ENERGY_PARTS))

DYNASTY_VALUES = ("val_accuracy_on_maps", "float_accuracy", "int8_accuracy", "modeled_speedup",
                  "modeled_energy_reduction", "modeled_speedup_brick", "modeled_energy_reduction_brick",
                  "mean_bits_weight", "mean_bits_activation", "mean_bits_gradient", "metadata_overhead",
                  "weight_storage_bytes", "weight_storage_bytes_baseline")


def _by_method(frame: pd.DataFrame, values: tuple[str, ...]) -> pd.DataFrame:
    """Mean and standard deviation over seeds per (task, method), with the seed count."""
    present = [v for v in values if v in frame]
    grouped = frame.groupby(["task", "method"], sort=True)
    out = grouped["seed"].nunique().rename("seeds").to_frame()
    for col in present:
        out[col] = grouped[col].mean()
        out[f"{col}_std"] = grouped[col].std(ddof=1)
    return out.reset_index()


def results_table(metrics: list[dict]) -> pd.DataFrame:
    """One row per (task, seed, method) from the evaluate stage's metrics."""
    frame = pd.DataFrame(metrics)
    frame["size_compression"] = frame["float_bytes"] / frame["stored_bytes"]
    return frame.sort_values(["task", "method", "seed"]).reset_index(drop=True)


def summary_table(per_seed: pd.DataFrame) -> pd.DataFrame:
    return _by_method(per_seed, ("float_accuracy", "int8_accuracy", *SIZE_COLUMNS))


def cim_table(metrics: list[dict]) -> pd.DataFrame:
    """Per (task, method): the chip's numbers averaged over seeds."""
    return _by_method(pd.DataFrame(metrics), CIM_VALUES)


def dynasty_table(summaries: list[dict], per_seed: pd.DataFrame) -> pd.DataFrame:
    """DYNASTY and its uniform twin per task: accuracy (validation on the run's maps,
    test after export) and modeled cost, averaged over seeds."""
    if not summaries:
        return pd.DataFrame(columns=["task", "method", "seeds"])
    frame = pd.DataFrame(summaries).merge(per_seed[["task", "method", "seed", "float_accuracy", "int8_accuracy"]],
                                          on=["task", "method", "seed"], how="left")
    return _by_method(frame, DYNASTY_VALUES)


def paired_table(per_seed: pd.DataFrame, cim: list[dict], references: dict[str, str | None],
                 confidence: float) -> pd.DataFrame:
    """Each method against its reference, and the calibrated chip against int8 digital,
    as per-seed paired differences with a t interval over the seeds."""
    rows = []
    indexed = per_seed.set_index(["task", "method", "seed"]).sort_index()
    for (task, method), _ in per_seed.groupby(["task", "method"]):
        reference = references.get(method)
        if reference is None or (task, reference) not in indexed.index.droplevel("seed"):
            continue
        for metric in ("float_accuracy", "int8_accuracy"):
            a = indexed.loc[(task, method), metric]
            b = indexed.loc[(task, reference), metric]
            rows.append(_paired_row(task, method, f"{reference} ({metric.removesuffix('_accuracy')})",
                                    paired_difference(a, b, confidence)))
    chip = pd.DataFrame(cim)
    for (task, method), group in chip.groupby(["task", "method"]) if len(chip) else []:
        g = group.set_index("seed")
        rows.append(_paired_row(task, method, "calibrated chip vs int8 digital",
                                paired_difference(g["cim_calibrated_accuracy"], g["int8_accuracy"], confidence)))
    return pd.DataFrame(rows, columns=["task", "method", "against", "seeds", "mean", "std", "low", "high"])


def _paired_row(task: str, method: str, against: str, p: Paired) -> dict:
    return {"task": task, "method": method, "against": against, "seeds": p.seeds, "mean": p.mean, "std": p.std,
            "low": p.low, "high": p.high}


def percent(mean: float, std: float) -> str:
    return f"{100 * mean:.2f}%" if math.isnan(std) else f"{100 * mean:.2f} ± {100 * std:.2f}%"


def _format_summary(frame: pd.DataFrame) -> pd.DataFrame:
    shown = pd.DataFrame({"task": frame["task"], "method": frame["method"], "seeds": frame["seeds"]})
    for col, label in (("float_accuracy", "float acc."), ("int8_accuracy", "int8 acc.")):
        shown[label] = [percent(m, s) for m, s in zip(frame[col], frame[f"{col}_std"], strict=True)]
    shown["weight compression"] = frame["weight_compression"].map(lambda v: f"{v:.1f}x")
    for col, label in (("parameters", "params"), ("nonzero_parameters", "non-zero"), ("macs", "MACs"),
                       ("float_bytes", "float bytes"), ("int8_bytes", "int8 bytes"),
                       ("stored_bytes", "stored bytes")):
        shown[label] = frame[col].map(lambda v: f"{v:,.0f}")
    shown["size compression"] = frame["size_compression"].map(lambda v: f"{v:.1f}x")
    return shown


def _format_paired(frame: pd.DataFrame, confidence: float) -> pd.DataFrame:
    shown = frame[["task", "method", "against", "seeds"]].copy()
    shown["mean difference"] = frame["mean"].map(lambda v: f"{100 * v:+.2f} pt")
    shown["std"] = frame["std"].map(lambda v: "-" if math.isnan(v) else f"{100 * v:.2f} pt")
    shown[f"{confidence:.0%} interval"] = [
        "n/a (one seed)" if math.isnan(lo) else f"[{100 * lo:+.2f}, {100 * hi:+.2f}] pt"
        for lo, hi in zip(frame["low"], frame["high"], strict=True)
    ]
    return shown


def _format_seeds(frame: pd.DataFrame) -> pd.DataFrame:
    shown = frame[list(SEED_COLUMNS)].copy()
    for col in ("float_accuracy", "int8_accuracy", "float_accuracy_low", "float_accuracy_high"):
        shown[col] = shown[col].map(lambda v: f"{100 * v:.2f}%")
    shown["weight_compression"] = shown["weight_compression"].map(lambda v: f"{v:.1f}x")
    shown["stored_bytes"] = shown["stored_bytes"].map(lambda v: f"{v:,.0f}")
    return shown.rename(columns=SEED_COLUMNS)


def _format_cim(frame: pd.DataFrame) -> pd.DataFrame:
    shown = pd.DataFrame({"task": frame["task"], "method": frame["method"], "seeds": frame["seeds"]})
    for col, label in (("int8_accuracy", "int8 digital"), ("cim_uncalibrated_accuracy", "CiM uncalibrated"),
                       ("cim_calibrated_accuracy", "CiM calibrated")):
        shown[label] = [percent(m, s) for m, s in zip(frame[col], frame[f"{col}_std"], strict=True)]
    shown["energy/inference"] = frame["energy_per_inference_j"].map(lambda v: f"{v * 1e9:.2f} nJ")
    shown["latency/inference"] = frame["latency_per_inference_s"].map(lambda v: f"{v * 1e6:.1f} us")
    shown["GOPS"] = frame["gops"].map(lambda v: f"{v:.1f}")
    shown["TOPS/W macro"] = frame["tops_per_w"].map(lambda v: f"{v:.2f}")
    shown["TOPS/W system"] = frame["tops_per_w_system"].map(lambda v: f"{v:.2f}")
    shown["conversions/inference"] = frame["conversions_per_inference"].map(lambda v: f"{v:,.0f}")
    shown["sign-only conv."] = frame["sign_only_fraction"].map(lambda v: f"{100 * v:.2f}%")
    shown["energy w/o fused ReLU"] = frame["energy_per_inference_no_fused_relu_j"].map(lambda v: f"{v * 1e9:.2f} nJ")
    return shown


def _format_energy(frame: pd.DataFrame) -> pd.DataFrame:
    """Energy per inference by component (nJ) and the macro on its reference workload."""
    shown = pd.DataFrame({"task": frame["task"], "method": frame["method"]})
    for part in ENERGY_PARTS:
        shown[part.replace("_", " ")] = frame[f"energy_{part}_per_inference_j"].map(lambda v: f"{v * 1e9:.2f}")
    shown["macro total"] = frame["energy_per_inference_j"].map(lambda v: f"{v * 1e9:.2f}")
    shown["peripheral total"] = frame["energy_system_per_inference_j"].map(lambda v: f"{v * 1e9:.2f}")
    shown["TOPS/W reference workload"] = frame["tops_per_w_reference_workload"].map(lambda v: f"{v:.2f}")
    return shown


def plot_cim_layers(mappings: dict[str, pd.DataFrame], systems: dict[str, pd.DataFrame], out: Path, dpi: int) -> None:
    """Per layer of each model (its first seed): energy per inference by component, stacked,
    and the sign-only fraction of the layer's conversions (training images of stage map)."""
    firsts: dict[str, str] = {}
    for key in sorted(mappings, key=lambda k: (k.rpartition("/")[0], int(k.rpartition("seed")[2]))):
        firsts.setdefault(key.rpartition("/")[0], key)
    fig, axes = plt.subplots(max(len(firsts), 1), 2, figsize=(12, 2.6 * max(len(firsts), 1) + 0.6), squeeze=False)
    if not firsts:
        axes[0, 0].text(0.5, 0.5, "no mapped model in this pipeline", ha="center", va="center")
    colors = plt.get_cmap("tab10").colors
    for row, (name, key) in enumerate(firsts.items()):
        layers = mappings[key].set_index("layer")
        system = systems[key].set_index("operator")
        names = list(system.index)
        bottom = pd.Series(0.0, index=names)
        ax = axes[row, 0]
        for i, part in enumerate(ENERGY_PARTS):
            column = f"energy_{part}_j"
            values = (layers[column] if column in layers else system[column]).reindex(names).fillna(0.0) * 1e9
            ax.bar(names, values, bottom=bottom, color=colors[i % len(colors)], label=part.replace("_", " "))
            bottom += values
        ax.set_ylabel("nJ / inference")
        ax.set_title(f"{name}: energy per layer", fontsize=9)
        ax.tick_params(axis="x", labelrotation=60, labelsize=6)
        sign_only = layers["sign_only_fraction"]
        axes[row, 1].bar(list(sign_only.index), 100 * sign_only, color="grey")
        axes[row, 1].set_ylim(0, 100)
        axes[row, 1].set_ylabel("sign-only conversions (%)")
        axes[row, 1].set_title(f"{name}: fused-ReLU early stops", fontsize=9)
        axes[row, 1].tick_params(axis="x", labelrotation=60, labelsize=6)
    if firsts:
        axes[0, 0].legend(fontsize=6, ncol=3)
    for ax in axes.flat:
        ax.grid(True, axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, format="png", dpi=dpi, metadata={"Software": None})
    plt.close(fig)


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


def to_markdown(shown: pd.DataFrame) -> str:
    header = "| " + " | ".join(shown.columns) + " |"
    rule = "|" + "|".join("---" for _ in shown.columns) + "|"
    rows = ["| " + " | ".join(str(v) for v in row) + " |" for row in shown.itertuples(index=False)]
    return "\n".join([header, rule, *rows])


def plot_accuracy_vs_size(summary: pd.DataFrame, out: Path, dpi: int) -> None:
    """Int8 test accuracy (mean, bars one standard deviation over seeds) against the
    stored size of the model the chip runs, each point labelled; the float baseline of
    each task as a dashed line."""
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for row in summary.itertuples(index=False):
        std = 0 if math.isnan(row.int8_accuracy_std) else 100 * row.int8_accuracy_std
        ax.errorbar(row.stored_bytes, 100 * row.int8_accuracy, yerr=std, marker="s", capsize=3, linestyle="none")
        ax.annotate(f"{row.task}/{row.method}", (row.stored_bytes, 100 * row.int8_accuracy), fontsize=6,
                    xytext=(4, 3), textcoords="offset points")
    for row in summary[summary["method"] == "baseline"].itertuples(index=False):
        ax.axhline(100 * row.float_accuracy, linestyle="--", linewidth=0.8, color="grey")
        ax.text(0.01, 100 * row.float_accuracy, f"{row.task} float baseline", transform=ax.get_yaxis_transform(),
                fontsize=6, color="grey", va="bottom")
    ax.set_xscale("log")
    ax.set_xlabel("stored model size (bytes: codes at their real width, sparse index, scales, biases)")
    ax.set_ylabel("int8 test accuracy (%)")
    ax.set_title("accuracy against model size (mean ± std over seeds)")
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, format="png", dpi=dpi, metadata={"Software": None})
    plt.close(fig)


SWEEP_KNOBS = {"adc_bits": "ADC bits", "cap_mismatch_sigma": "capacitor mismatch sigma", "rows": "rows per column",
               "bias_dac_bits": "bias-DAC bits", "accumulation": "accumulation of long reductions"}


def plot_cim_sweep(sweeps: dict[str, pd.DataFrame], out: Path, dpi: int) -> None:
    """Accuracy and TOPS/W against each swept macro or mapping knob, one line per model
    (mean over its seeds; bars one standard deviation)."""
    models: dict[str, list[pd.DataFrame]] = {}
    for key, sweep in sweeps.items():  # key: task/method/seedN
        models.setdefault(key.rpartition("/")[0], []).append(sweep)
    knobs = [k for k in SWEEP_KNOBS if any((s["knob"] == k).any() for s in sweeps.values())] or list(SWEEP_KNOBS)[:2]
    fig, axes = plt.subplots(2, len(knobs), figsize=(3.2 * len(knobs) + 1, 6), sharex="col", squeeze=False)
    for col, knob in enumerate(knobs):
        for name, runs in sorted(models.items()):
            points = pd.concat(runs)
            points = points[points["knob"] == knob]
            categorical = points["value"].isna().all()
            by_value = points.groupby("setting" if categorical else "value", sort=not categorical)
            mean, std = by_value.mean(numeric_only=True), by_value.std(numeric_only=True).fillna(0.0)
            for row, column, scale in ((0, "accuracy", 100), (1, "tops_per_w", 1)):
                axes[row, col].errorbar(list(mean.index), scale * mean[column], yerr=scale * std[column], marker="o",
                                        capsize=3, label=f"{name} ({len(runs)} seeds)")
        axes[1, col].set_xlabel(SWEEP_KNOBS[knob])
    axes[0, 0].set_ylabel("calibrated CiM accuracy (%)")
    axes[1, 0].set_ylabel("TOPS/W")
    if not models:
        axes[0, 0].text(0.5, 0.5, "no cim.sweep.methods model in this pipeline", ha="center", va="center",
                        transform=axes[0, 0].transAxes)
    for ax in axes.flat:
        ax.grid(True, alpha=0.3)
        if models:
            ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out, format="png", dpi=dpi, metadata={"Software": None})
    plt.close(fig)


def plot_compression(summary: pd.DataFrame, cim: pd.DataFrame, steps: dict[str, pd.DataFrame], out: Path,
                     dpi: int) -> None:
    """Accuracy against compression (final models on test, each progressive step on
    validation), and CiM energy per inference against compression: what pruning buys
    on the macro."""
    fig, (acc_ax, energy_ax) = plt.subplots(1, 2, figsize=(10, 4))
    for name, table in sorted(steps.items()):
        if "target_ratio" not in table or "phase" not in table:
            continue
        done = table[table["phase"] == "retrain"].dropna(subset=["val_accuracy"])
        per_step = done.groupby("step").agg(total=("total", "sum"), nonzeros=("nonzeros", "sum"),
                                             accuracy=("val_accuracy", "last"))
        if len(per_step):
            acc_ax.plot(per_step["total"] / per_step["nonzeros"].clip(lower=1), 100 * per_step["accuracy"],
                        "o--", alpha=0.5, label=f"{name} steps (val)")
    merged = summary.merge(cim, on=["task", "method"], suffixes=("", "_cim"))
    for row in merged.itertuples(index=False):
        label = f"{row.task}/{row.method}"
        std = 0 if math.isnan(row.float_accuracy_std) else 100 * row.float_accuracy_std
        acc_ax.errorbar(row.weight_compression, 100 * row.float_accuracy, yerr=std, marker="o", capsize=3,
                        label=f"{label} (test)")
        energy_ax.scatter(row.weight_compression, row.energy_per_inference_j * 1e9, s=40, label=label)
    for ax in (acc_ax, energy_ax):
        ax.set_xscale("log")
        ax.set_xlabel("weight compression (conv/fc weights / non-zero)")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=6)
    acc_ax.set_ylabel("accuracy (%)")
    energy_ax.set_ylabel("CiM energy per inference (nJ)")
    fig.tight_layout()
    fig.savefig(out, format="png", dpi=dpi, metadata={"Software": None})
    plt.close(fig)


def plot_training(histories: dict[str, pd.DataFrame], out: Path, dpi: int) -> None:
    """Training and validation loss and validation accuracy per epoch: the mean over
    seeds of each task/method, with the seeds' range shaded."""
    fig, (loss_ax, acc_ax) = plt.subplots(1, 2, figsize=(9, 3.5))
    runs: dict[str, list[pd.DataFrame]] = {}
    for key, hist in histories.items():  # key: task/method/seedN
        runs.setdefault(key.rpartition("/")[0], []).append(hist)
    for label, hists in sorted(runs.items()):
        stats_by_epoch = pd.concat(hists).groupby("epoch")
        mean, low, high = (stats_by_epoch[["train_loss", "val_loss", "val_accuracy"]].agg(f) for f in ("mean", "min", "max"))
        epochs = mean.index.to_numpy()
        suffix = f" ({len(hists)} seeds)" if len(hists) > 1 else ""
        line = loss_ax.plot(epochs, mean["train_loss"], label=f"{label} train{suffix}")[0]
        color = line.get_color()
        loss_ax.plot(epochs, mean["val_loss"], "--", color=color, label=f"{label} val")
        acc_ax.plot(epochs, 100 * mean["val_accuracy"], color=color, label=label + suffix)
        if len(hists) > 1:
            loss_ax.fill_between(epochs, low["train_loss"], high["train_loss"], color=color, alpha=0.15)
            acc_ax.fill_between(epochs, 100 * low["val_accuracy"], 100 * high["val_accuracy"], color=color,
                                alpha=0.15)
    loss_ax.set_yscale("log")
    loss_ax.set_xlabel("epoch")
    loss_ax.set_ylabel("cross-entropy")
    acc_ax.set_xlabel("epoch")
    acc_ax.set_ylabel("validation accuracy (%)")
    for ax in (loss_ax, acc_ax):
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(out, format="png", dpi=dpi, metadata={"Software": None})
    plt.close(fig)


def _format_dynasty(frame: pd.DataFrame) -> pd.DataFrame:
    shown = pd.DataFrame({"task": frame["task"], "method": frame["method"], "seeds": frame["seeds"]})
    for col, label in (("val_accuracy_on_maps", "val acc. on its maps"), ("float_accuracy", "test fp32"),
                       ("int8_accuracy", "test int8")):
        shown[label] = [percent(m, s) for m, s in zip(frame[col], frame[f"{col}_std"], strict=True)]
    for col, label in (("modeled_speedup", "speedup (bit-exact)"), ("modeled_energy_reduction", "energy (bit-exact)"),
                       ("modeled_speedup_brick", "speedup (2b bricks)"),
                       ("modeled_energy_reduction_brick", "energy (2b bricks)")):
        if col in frame:
            shown[label] = [f"{m:.2f}x" if math.isnan(s) else f"{m:.2f} ± {s:.2f}x"
                            for m, s in zip(frame[col], frame[f"{col}_std"], strict=True)]
    shown["mean bits W/A/G"] = [f"{w:.2f} / {a:.2f} / {g:.2f}" for w, a, g in zip(
        frame["mean_bits_weight"], frame["mean_bits_activation"], frame["mean_bits_gradient"], strict=True)]
    shown["metadata"] = frame["metadata_overhead"].map(lambda v: f"{100 * v:.1f}%")
    if "weight_storage_bytes" in frame:
        shown["BFP weight bytes (8-bit BFP)"] = [f"{a:,.0f} ({b:,.0f})" for a, b in zip(
            frame["weight_storage_bytes"], frame["weight_storage_bytes_baseline"], strict=True)]
    return shown


def sections(summary: pd.DataFrame, paired: pd.DataFrame, per_seed: pd.DataFrame, cim: pd.DataFrame,
              dynasty: pd.DataFrame, confidence: float) -> list[tuple[str, pd.DataFrame, str]]:
    """(heading, formatted table, note) in report order; both renderers use it."""
    seeds = sorted(per_seed["seed"].unique().tolist())
    return [
        ("Results", _format_summary(summary),
         f"Mean ± standard deviation over seeds {seeds} on each task's test split (read only by the "
         "evaluation stages; every training, compression, export and mapping decision used the training and "
         "validation splits). int8 = per-channel int8 weights and per-tensor int8 activations; ADMM's "
         "quantized layers keep their levels exactly. Stored bytes: weight codes at their real width, in the "
         "smaller per layer of dense, bitmask-sparse or relative-index-sparse form, plus float32 scales and "
         "biases; size compression = float bytes / stored bytes."),
        ("Paired differences", _format_paired(paired, confidence),
         "Each method minus its reference on the same seed (ADMM and magnitude pruning against the float "
         "baseline, DYNASTY against dynasty_int8), and the calibrated simulated chip minus int8 digital; "
         f"{confidence:.0%} Student-t interval over the seeds (none with one seed). The test set is the same "
         "for every seed, so the interval covers training variation, not test-set sampling."),
        ("Per seed", _format_seeds(per_seed), f"{confidence:.0%} Wilson interval on each float accuracy."),
        ("On the simulated CD-CiM macro", _format_cim(cim),
         "Same test split, on one simulated chip (params.yaml `cim`): uncalibrated, and with the chip's ADC "
         "correction tables and sign trim. Energy, latency, GOPS and TOPS/W count the calibrated run on one "
         "macro (mean over seeds). TOPS/W macro: the macro's own MAC-and-convert energy, the figure that stands "
         "beside the published 10.3 TOPS/W (which the energy constants reproduce on the random-int8 reference "
         "workload; about 72% of a cycle's energy is data-dependent with an assumed split, so real data moves it). "
         "TOPS/W system adds the peripheral energy below."),
        ("CiM energy per inference by component (nJ)", _format_energy(cim),
         "Array, input drivers, ADC (with bias DAC and hold steps) and per-conversion digital logic are the "
         "macro's; requantization, pooling, residual adds, activation buffer traffic and weight reloads are "
         "outside it, with assumed constants (params.yaml `cim.system`). Per-layer breakdown: cim_layers.png."),
        ("DYNASTY dynamic-precision training",
         _format_dynasty(dynasty) if len(dynasty) else pd.DataFrame({"DYNASTY": ["no DYNASTY run in this pipeline"]}),
         "Speedup and energy are the cost model's over the actual maps of each run against uniform "
         "`dynasty.cost.baseline_bits`, with MAC cost proportional to the product of operand widths "
         "(bit-exact) or of their 2-bit brick counts (Bit Fusion-style). Validation accuracy on the run's own "
         "block-floating-point maps; test accuracy of the exported model."),
    ]


def render_markdown(title: str, sections: list[tuple[str, pd.DataFrame, str]], plots: list[Path]) -> str:
    parts = [f"# {title}", "", "Generated by `cimflow report` from the run's artifacts.", ""]
    for heading, table, note in sections:
        parts += [f"## {heading}", "", to_markdown(table), "", note, ""]
    parts += ["## Plots", ""] + [f"![{p.stem}]({p.name})" for p in plots]
    return "\n".join(parts) + "\n"


def render_html(title: str, sections: list[tuple[str, pd.DataFrame, str]], plots: list[Path]) -> str:
    body = "\n".join(f"<h2>{html.escape(heading)}</h2>\n{table.to_html(index=False, border=0, classes='results')}"
                     f"\n<p>{html.escape(note)}</p>" for heading, table, note in sections)
    images = "\n".join(f'<figure><img src="{html.escape(p.name)}" alt="{html.escape(p.stem)}"></figure>'
                       for p in plots)
    return (f"<!doctype html>\n<html><head><meta charset='utf-8'><title>{html.escape(title)}</title>\n"
            "<style>body{font-family:sans-serif;margin:2em}table.results{border-collapse:collapse}"
            "table.results td,table.results th{padding:4px 10px;border-bottom:1px solid #ccc;text-align:right}"
            "img{max-width:100%}</style></head><body>\n"
            f"<h1>{html.escape(title)}</h1>\n{body}\n{images}\n</body></html>\n")
