"""Stage `report`: regenerate reports/ from the metrics and histories of a run.

Accuracy-scored tasks (classification, domain adaptation) and super-resolution tasks
each contribute their sections and plots when the run has them; a plot of a kind the run
lacks says so, so the report's outputs are the same files whatever the tasks."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from cimflow import layout, report, report_domain, report_sr, report_sweep, tracking  # noqa: E402
from cimflow.artifacts import ArtifactError, atomic_path, load_json, load_table, load_tensors, write_text  # noqa: E402
from cimflow.config import Params  # noqa: E402
from cimflow.methods import METHODS  # noqa: E402
from cimflow.stages.common import outputs_exist, stage_params  # noqa: E402

Section = tuple[str, pd.DataFrame, str]
Drawing = Callable[[Path], None]
ACCURACY_PLOTS = (layout.PLOT_ACCURACY_SIZE, layout.PLOT_TRAINING, layout.PLOT_CIM_SWEEP, layout.PLOT_CIM_LAYERS,
                  layout.PLOT_COMPRESSION, layout.PLOT_BITWIDTHS, layout.PLOT_DOMAIN)
SR_PLOTS = (layout.PLOT_SR, layout.PLOT_SR_CROPS, layout.PLOT_SR_CIM)
SWEEP_PLOTS = (layout.PLOT_RATIO_SWEEP,)


def _placeholder(text: str, dpi: int) -> Drawing:
    def draw(out: Path) -> None:
        fig, ax = plt.subplots(figsize=(6, 2))
        ax.text(0.5, 0.5, text, ha="center", va="center")
        ax.set_axis_off()
        fig.savefig(out, format="png", dpi=dpi, metadata={"Software": None})
        plt.close(fig)
    return draw


def _accuracy_part(metrics_files: list[Path], params: Params) -> tuple[list[Section], list[Drawing], list[Path]]:
    """Sections, drawings (in ACCURACY_PLOTS order) and input files of the accuracy-scored runs."""
    dpi = params.report.plot_dpi
    if not metrics_files:
        return [], [_placeholder("no accuracy-scored task in this run", dpi)] * len(ACCURACY_PLOTS), []
    metrics = [load_json(p) for p in metrics_files]
    runs = [{"task": m["task"], "seed": m["seed"], "method": m["method"]} for m in metrics]

    def files(pattern: str, only: bool = True) -> dict[str, Path]:
        """``pattern`` for every run whose method writes it, keyed task/method/seedN."""
        return {f"{r['task']}/{r['method']}/seed{r['seed']}": layout.path(pattern, **r)
                for r in runs if not only or pattern in METHODS[r["method"]].outputs}

    history_files, step_files, period_files = files(layout.HISTORY), files(layout.STEPS), files(layout.PERIODS)
    dynasty_files, bitmap_files = files(layout.DYNASTY_SUMMARY), files(layout.BITMAPS)
    cim_files = files(layout.CIM_METRICS, only=False)
    mapping_files, system_files = files(layout.CIM_MAPPING, only=False), files(layout.CIM_SYSTEM, only=False)
    sweep_files = {k: p for k, p in files(layout.CIM_SWEEP, only=False).items() if p.is_file()}  # cim.sweep.methods
    per_seed = report.results_table(metrics)
    summary = report.summary_table(per_seed)
    cim_metrics = [load_json(p) for p in cim_files.values()]
    cim = report.cim_table(cim_metrics)
    dynasty = report.dynasty_table([load_json(p) for p in dynasty_files.values()], per_seed)
    confidence = params.evaluate.confidence_level
    paired = report.paired_table(per_seed, cim_metrics, {m: spec.reference for m, spec in METHODS.items()},
                                 confidence)
    histories = {k: load_table(p) for k, p in history_files.items()}
    steps = {k: load_table(p) for k, p in step_files.items()}
    periods = {k: load_table(p) for k, p in period_files.items()}
    domain = report_domain.domain_table(summary, cim)
    sweeps = {k: load_table(p) for k, p in sweep_files.items()}
    mappings = {k: load_table(p) for k, p in mapping_files.items()}
    systems = {k: load_table(p) for k, p in system_files.items()}
    bitmaps = {k: load_table(p) for k, p in bitmap_files.items() if k.split("/")[1] == "dynasty"}
    inputs = [*metrics_files, *history_files.values(), *step_files.values(), *cim_files.values(),
              *sweep_files.values(), *mapping_files.values(), *system_files.values(), *dynasty_files.values(),
              *bitmap_files.values(), *period_files.values()]
    sections = report.sections(summary, paired, per_seed, cim, dynasty, confidence)
    sections.append(("Cross-domain channel pruning (ADMP)", report_domain.format_domain(domain), report_domain.NOTE))
    drawings = [
        lambda out: report.plot_accuracy_vs_size(summary, out, dpi),
        lambda out: report.plot_training(histories, out, dpi),
        lambda out: report.plot_cim_sweep(sweeps, out, dpi),
        lambda out: report.plot_cim_layers(mappings, systems, out, dpi),
        lambda out: report.plot_compression(summary, cim, steps, out, dpi),
        lambda out: report.plot_bitwidths(bitmaps, out, dpi),
        lambda out: report_domain.plot_domain(domain, periods, out, dpi),
    ]
    return sections, drawings, inputs


def _sr_part(sr_files: list[Path], params: Params) -> tuple[list[Section], list[Drawing], list[Path]]:
    """Sections, drawings (in SR_PLOTS order) and input files of the super-resolution runs."""
    dpi = params.report.plot_dpi
    if not sr_files:
        return [], [_placeholder("no super-resolution task in this run", dpi)] * len(SR_PLOTS), []
    sr_metrics = [load_json(p) for p in sr_files]
    runs = {f"{m['task']}/{m['method']}/seed{m['seed']}": {"task": m["task"], "seed": m["seed"],
                                                           "method": m["method"]} for m in sr_metrics}
    histories = {k: load_table(layout.path(layout.HISTORY, **r)) for k, r in runs.items()}
    sparsity = {k: load_table(layout.path(layout.SR_SPARSITY, **r)) for k, r in runs.items()}
    first_seed = {r["task"]: min(o["seed"] for o in runs.values() if o["task"] == r["task"]) for r in runs.values()}
    samples = {k: load_tensors(layout.path(layout.SR_SAMPLES, **r))[0] for k, r in runs.items()
               if r["seed"] == first_seed[r["task"]]}
    cim_layers = {k: load_table(layout.path(layout.SR_CIM_LAYERS, **r)) for k, r in runs.items()}
    cim = report_sr.cim_summary([load_json(layout.path(layout.SR_CIM_METRICS, **r)) for r in runs.values()])
    summary = report_sr.sr_summary(report_sr.sr_table(sr_metrics))
    inputs = [*sr_files, *(layout.path(p, **r) for r in runs.values()
                           for p in (layout.HISTORY, layout.SR_SPARSITY, layout.SR_SAMPLES, layout.SR_CIM_METRICS,
                                     layout.SR_CIM_LAYERS))]
    sections = [
        ("Super resolution: Feature Regularization", report_sr.format_sr(summary), report_sr.NOTE),
        ("Super resolution: input sparsity per layer", report_sr.layer_table(sparsity),
         "Share of each convolution's input entries that are exactly zero, mean over test images, per "
         "level (dense: the ReLU zeros alone). The first convolution sees the image itself."),
        ("Super resolution on the chip", report_sr.format_cim(cim), report_sr.CIM_NOTE),
        ("Super resolution on the chip: macro energy per layer (µJ per image)", report_sr.cim_layer_table(cim_layers),
         "First seed of each run, mean over the test images of every set. The first convolution's input is the image, "
         "so with Feature Regularization only the layers after a sparsified ReLU change with the level; the "
         "structured baseline also removes the first convolution's output columns."),
    ]
    drawings = [lambda out: report_sr.plot_sr(summary, histories, out, dpi),
                lambda out: report_sr.plot_crops(samples, out, dpi),
                lambda out: report_sr.plot_cim(cim, out, dpi)]
    return sections, drawings, inputs


def _sweep_part(sweep_files: list[Path], metrics_files: list[Path],
                params: Params) -> tuple[list[Section], list[Drawing], list[Path]]:
    """Sections and the drawing (SWEEP_PLOTS) of the ratio sweep, against the run's baselines."""
    dpi = params.report.plot_dpi
    if not sweep_files:
        return [], [_placeholder("no ratio sweep in this run", dpi)], []
    confidence = params.evaluate.confidence_level
    per_seed = report_sweep.sweep_table([load_json(p) for p in sweep_files])
    baselines = [m for m in map(load_json, metrics_files) if m["method"] == "baseline"]
    baseline = pd.DataFrame(baselines, columns=["task", "seed", "float_accuracy"])
    summary = report_sweep.sweep_summary(per_seed, baseline, confidence)
    paired = report_sweep.separation(per_seed, confidence)
    sections = [
        ("ADMM ratio sweep", report_sweep.format_summary(summary, confidence), report_sweep.NOTE),
        ("ADMM against magnitude pruning in the sweep", report_sweep.format_separation(paired, confidence),
         f"ADMM minus each magnitude pruner at the same target, paired per seed ({confidence:.0%} Student-t "
         f"interval). {report_sweep.separation_statement(paired)}"),
    ]
    return sections, [lambda out: report_sweep.plot_sweep(summary, baseline, out, dpi)], list(sweep_files)


def run(metrics_files: list[Path], params_file: Path, sr_files: list[Path] = (),
        sweep_files: list[Path] = ()) -> None:
    params, values = stage_params("report", params_file)
    if not metrics_files and not sr_files:
        raise ArtifactError("report needs at least one metrics.json or sr_metrics.json file")
    accuracy_sections, accuracy_drawings, accuracy_inputs = _accuracy_part(list(metrics_files), params)
    sr_sections, sr_drawings, sr_inputs = _sr_part(list(sr_files), params)
    sweep_sections, sweep_drawings, sweep_inputs = _sweep_part(list(sweep_files), list(metrics_files), params)
    sections = accuracy_sections + sweep_sections + sr_sections
    plots = [Path(p) for p in (*ACCURACY_PLOTS, *SR_PLOTS, *SWEEP_PLOTS)]
    with tracking.stage_run("report", values, accuracy_inputs + sr_inputs + sweep_inputs) as run_:
        for plot, draw in zip(plots, accuracy_drawings + sr_drawings + sweep_drawings, strict=True):
            with atomic_path(plot) as tmp:
                draw(tmp)
        write_text(layout.REPORT_MD, report.render_markdown(params.report.title, sections, plots))
        write_text(layout.REPORT_HTML, report.render_html(params.report.title, sections, plots))
        run_.log_outputs(outputs_exist([Path(layout.REPORT_MD), Path(layout.REPORT_HTML), *plots]))
