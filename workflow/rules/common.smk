# Helpers shared by the rules: params validation, per-stage params and code inputs.
import os
import uuid

import yaml

from cimflow import layout
from cimflow.config import load_params, lookup, parse_params
from cimflow.stages import STAGES, code_files

# Validate params.yaml itself (what the stages read) and the merged Snakemake config.
load_params("params.yaml")
_run_params = parse_params(config, "params.yaml + --config")
_on_disk = yaml.safe_load(open("params.yaml"))
_overridden = sorted(k for k in set(config) | set(_on_disk) if config.get(k) != _on_disk.get(k))
if set(_overridden) - {"tasks", "methods"}:
    raise ValueError(
        f"--config may only select 'tasks' and 'methods'; edit params.yaml to change {_overridden}"
    )

# One id for every MLflow run of this invocation (jobs inherit the environment).
os.environ.setdefault("CIMFLOW_PIPELINE_ID", f"snakemake-{uuid.uuid4().hex[:12]}")


def stage_params(stage):
    """params: values of exactly the params.yaml keys the stage reads."""

    def values(wildcards):
        return {key: lookup(config, key) for key in STAGES[stage].param_keys(**wildcards)}

    return values


def code(stage):
    """The src/cimflow files the stage runs: editing one reruns the stage."""
    return list(code_files(stage))


def report_outputs():
    return [layout.REPORT_MD, layout.REPORT_HTML, layout.PLOT_ACCURACY_SIZE, layout.PLOT_TRAINING,
            layout.PLOT_CIM_SWEEP, layout.PLOT_COMPRESSION, layout.PLOT_BITWIDTHS]


def run_metrics():
    return expand(layout.METRICS, task=config["tasks"], method=config["methods"])


def run_histories():
    methods = [m for m in config["methods"] if m in ("baseline", "dynasty", "dynasty_int8")]
    return expand(layout.HISTORY, task=config["tasks"], method=methods)


def run_steps():
    methods = [m for m in config["methods"] if m not in ("baseline", "dynasty", "dynasty_int8")]
    return expand(layout.STEPS, task=config["tasks"], method=methods)


def run_dynasty():
    methods = [m for m in config["methods"] if m in ("dynasty", "dynasty_int8")]
    return expand(layout.DYNASTY_SUMMARY, task=config["tasks"], method=methods) + expand(
        layout.BITMAPS, task=config["tasks"], method=methods
    )


def run_cim_metrics():
    return expand(layout.CIM_METRICS, task=config["tasks"], method=config["methods"])


def run_cim_sweeps():
    return expand(layout.CIM_SWEEP, task=config["tasks"], method=_run_params.swept_methods)
