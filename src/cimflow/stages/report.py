"""Stage `report`: regenerate reports/ from the metrics and histories of a run."""

from __future__ import annotations

from pathlib import Path

from cimflow import layout, report, report_domain, tracking
from cimflow.artifacts import ArtifactError, atomic_path, load_json, load_table, write_text
from cimflow.methods import METHODS
from cimflow.stages.common import outputs_exist, stage_params


def run(metrics_files: list[Path], params_file: Path) -> None:
    params, values = stage_params("report", params_file)
    if not metrics_files:
        raise ArtifactError("report needs at least one metrics.json file")
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
    plots = [Path(p) for p in (layout.PLOT_ACCURACY_SIZE, layout.PLOT_TRAINING, layout.PLOT_CIM_SWEEP,
                               layout.PLOT_CIM_LAYERS, layout.PLOT_COMPRESSION, layout.PLOT_BITWIDTHS,
                               layout.PLOT_DOMAIN)]
    inputs = [*metrics_files, *history_files.values(), *step_files.values(), *cim_files.values(),
              *sweep_files.values(), *mapping_files.values(), *system_files.values(), *dynasty_files.values(),
              *bitmap_files.values(), *period_files.values()]
    sections = report.sections(summary, paired, per_seed, cim, dynasty, confidence)
    sections.append(("Cross-domain channel pruning (ADMP)", report_domain.format_domain(domain), report_domain.NOTE))
    dpi = params.report.plot_dpi
    with tracking.stage_run("report", values, inputs) as run_:
        drawings = (
            lambda out: report.plot_accuracy_vs_size(summary, out, dpi),
            lambda out: report.plot_training(histories, out, dpi),
            lambda out: report.plot_cim_sweep(sweeps, out, dpi),
            lambda out: report.plot_cim_layers(mappings, systems, out, dpi),
            lambda out: report.plot_compression(summary, cim, steps, out, dpi),
            lambda out: report.plot_bitwidths(bitmaps, out, dpi),
            lambda out: report_domain.plot_domain(domain, periods, out, dpi),
        )
        for plot, draw in zip(plots, drawings, strict=True):
            with atomic_path(plot) as tmp:
                draw(tmp)
        write_text(layout.REPORT_MD, report.render_markdown(params.report.title, sections, plots))
        write_text(layout.REPORT_HTML, report.render_html(params.report.title, sections, plots))
        run_.log_outputs(outputs_exist([Path(layout.REPORT_MD), Path(layout.REPORT_HTML), *plots]))
