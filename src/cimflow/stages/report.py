"""Stage `report`: regenerate reports/ from the metrics and histories of a run."""

from __future__ import annotations

from pathlib import Path

from cimflow import layout, report, tracking
from cimflow.artifacts import ArtifactError, atomic_path, load_json, load_table, write_text
from cimflow.stages.common import outputs_exist, stage_params


def run(metrics_files: list[Path], params_file: Path) -> None:
    params, values = stage_params("report", params_file)
    if not metrics_files:
        raise ArtifactError("report needs at least one metrics.json file")
    metrics = [load_json(p) for p in metrics_files]
    histories = {f"{m['task']}/{m['method']}": load_table(p.parent / Path(layout.HISTORY).name)
                 for m, p in zip(metrics, metrics_files, strict=True)}
    keys = [(m["task"], m["method"]) for m in metrics]
    cim_files = [layout.path(layout.CIM_METRICS, task=t, method=m) for t, m in keys]
    sweep_files = [layout.path(layout.CIM_SWEEP, task=t, method=m) for t, m in keys]
    sweeps = {f"{t}/{m}": load_table(p) for (t, m), p in zip(keys, sweep_files, strict=True)}
    frame = report.results_table(metrics)
    cim = report.cim_table([load_json(p) for p in cim_files])
    plots = [Path(layout.PLOT_ACCURACY_SIZE), Path(layout.PLOT_TRAINING), Path(layout.PLOT_CIM_SWEEP)]
    inputs = [*metrics_files, *(p.parent / Path(layout.HISTORY).name for p in metrics_files), *cim_files, *sweep_files]
    with tracking.stage_run("report", values, inputs) as run_:
        with atomic_path(plots[0]) as tmp:
            report.plot_accuracy_vs_size(frame, tmp, params.report.plot_dpi)
        with atomic_path(plots[1]) as tmp:
            report.plot_training(histories, tmp, params.report.plot_dpi)
        with atomic_path(plots[2]) as tmp:
            report.plot_cim_sweep(sweeps, tmp, params.report.plot_dpi)
        write_text(layout.REPORT_MD, report.render_markdown(params.report.title, frame, cim, plots))
        write_text(layout.REPORT_HTML, report.render_html(params.report.title, frame, cim, plots))
        run_.log_outputs(outputs_exist([Path(layout.REPORT_MD), Path(layout.REPORT_HTML), *plots]))
