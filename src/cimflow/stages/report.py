"""Stage `report`: regenerate reports/ from the metrics and histories of a run."""

from __future__ import annotations

from pathlib import Path

from cimflow import layout, report, tracking
from cimflow.artifacts import ArtifactError, atomic_path, load_json, load_table, write_text
from cimflow.stages.common import outputs_exist, stage_params

DYNASTY_METHODS = ("dynasty", "dynasty_int8")


def run(metrics_files: list[Path], params_file: Path) -> None:
    params, values = stage_params("report", params_file)
    if not metrics_files:
        raise ArtifactError("report needs at least one metrics.json file")
    metrics = [load_json(p) for p in metrics_files]
    keys = [(m["task"], m["method"]) for m in metrics]
    trained = ("baseline", *DYNASTY_METHODS)
    history_files = {f"{t}/{m}": layout.path(layout.HISTORY, task=t, method=m) for t, m in keys if m in trained}
    step_files = {f"{t}/{m}": layout.path(layout.STEPS, task=t, method=m) for t, m in keys if m not in trained}
    dynasty_files = {f"{t}/{m}": layout.path(layout.DYNASTY_SUMMARY, task=t, method=m)
                     for t, m in keys if m in DYNASTY_METHODS}
    bitmap_files = {f"{t}/{m}": layout.path(layout.BITMAPS, task=t, method=m) for t, m in keys if m in DYNASTY_METHODS}
    cim_files = [layout.path(layout.CIM_METRICS, task=t, method=m) for t, m in keys]
    sweep_files = {f"{t}/{m}": layout.path(layout.CIM_SWEEP, task=t, method=m) for t, m in keys}
    sweep_files = {k: p for k, p in sweep_files.items() if p.is_file()}  # only cim.sweep.methods are swept
    histories = {k: load_table(p) for k, p in history_files.items()}
    steps = {k: load_table(p) for k, p in step_files.items()}
    sweeps = {k: load_table(p) for k, p in sweep_files.items()}
    frame = report.results_table(metrics)
    cim = report.cim_table([load_json(p) for p in cim_files])
    dynasty = report.dynasty_table([load_json(p) for p in dynasty_files.values()])
    bitmaps = {k: load_table(p) for k, p in bitmap_files.items() if k.endswith("/dynasty")}
    plots = [Path(p) for p in (layout.PLOT_ACCURACY_SIZE, layout.PLOT_TRAINING, layout.PLOT_CIM_SWEEP,
                               layout.PLOT_COMPRESSION, layout.PLOT_BITWIDTHS)]
    inputs = [*metrics_files, *history_files.values(), *step_files.values(), *cim_files, *sweep_files.values(),
              *dynasty_files.values(), *bitmap_files.values()]
    with tracking.stage_run("report", values, inputs) as run_:
        with atomic_path(plots[0]) as tmp:
            report.plot_accuracy_vs_size(frame, tmp, params.report.plot_dpi)
        with atomic_path(plots[1]) as tmp:
            report.plot_training(histories, tmp, params.report.plot_dpi)
        with atomic_path(plots[2]) as tmp:
            report.plot_cim_sweep(sweeps, tmp, params.report.plot_dpi)
        with atomic_path(plots[3]) as tmp:
            report.plot_compression(frame, cim, steps, tmp, params.report.plot_dpi)
        with atomic_path(plots[4]) as tmp:
            report.plot_bitwidths(bitmaps, tmp, params.report.plot_dpi)
        write_text(layout.REPORT_MD, report.render_markdown(params.report.title, frame, cim, dynasty, plots))
        write_text(layout.REPORT_HTML, report.render_html(params.report.title, frame, cim, dynasty, plots))
        run_.log_outputs(outputs_exist([Path(layout.REPORT_MD), Path(layout.REPORT_HTML), *plots]))
