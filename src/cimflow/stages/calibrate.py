"""Stage `calibrate`: the per-chip ADC correction tables and sign trim (the paper's
non-linearity compensation). Depends only on the macro parameters and chip seed."""

from __future__ import annotations

from pathlib import Path

from cimflow import layout, tracking
from cimflow.artifacts import save_table
from cimflow.cim.calibration import calibrate
from cimflow.measured_inl import load_measured_inl, measured_inl_inputs
from cimflow.stages.common import outputs_exist, stage_params


def run(params_file: Path) -> None:
    params, values = stage_params("calibrate", params_file)
    cim = params.cim
    outs = [Path(layout.CIM_CODES), Path(layout.CIM_TRIM)]
    measured = load_measured_inl(cim)
    inputs = measured_inl_inputs(cim)
    with tracking.stage_run("calibrate", values, inputs) as run_:
        tables = calibrate(cim.macro, cim.chip_seed, cim.calibration.samples_per_code, cim.calibration.trim_repeats,
                           measured)
        save_table(outs[0], tables.codes)
        save_table(outs[1], tables.sign_trim)
        run_.log_metrics({"table_rows": len(tables.codes), "mean_abs_trim_lsb": float(tables.sign_trim["trim_lsb"].abs().mean())})
        run_.log_outputs(outputs_exist(outs))
