# Helpers shared by the rules: params validation, per-stage params and code fingerprints, and
# which artifacts each (task, seed, method) has (from the method table in cimflow.methods).
import os
import uuid

import yaml

from cimflow import layout
from cimflow.config import load_params, lookup, parse_params
from cimflow.methods import LABELLED_KINDS, METHODS, SUPER_RESOLUTION, writing
from cimflow import fingerprint, jobenv
from cimflow.stages import STAGES

# Validate params.yaml itself (what the stages read) and the merged Snakemake config
# (params.yaml plus --configfile/--config overlays, e.g. configs/claims.yaml).
load_params("params.yaml")
# `--config seeds=[0,1]` arrives as strings; a configfile's YAML integers do not.
config["seeds"] = [int(s) if isinstance(s, str) and s.isdigit() else s for s in config.get("seeds", [])]
_run_params = parse_params(config, "params.yaml + --config")
_on_disk = yaml.safe_load(open("params.yaml"))
_overridden = sorted(k for k in set(config) | set(_on_disk) if config.get(k) != _on_disk.get(k))
if set(_overridden) - {"tasks", "methods", "seeds"}:
    raise ValueError(
        f"--config/--configfile may only select 'tasks', 'methods' and 'seeds'; edit params.yaml to change {_overridden}"
    )

# Jobs run `cimflow` from the environment of the Snakemake running them.
jobenv.use_own_environment()

# One id for every MLflow run of this invocation (jobs inherit the environment).
os.environ.setdefault("CIMFLOW_PIPELINE_ID", f"snakemake-{uuid.uuid4().hex[:12]}")

wildcard_constraints:
    seed=r"\d+",
    task=r"[A-Za-z0-9_]+",
    method=r"[A-Za-z0-9_]+",


def stage_params(stage):
    """params: values of exactly the params.yaml keys the stage reads."""

    def values(wildcards):
        return {key: lookup(config, key) for key in STAGES[stage].param_keys(**wildcards)}

    return values


# Each stage depends on its code fingerprint (cimflow.fingerprint), refreshed here at every
# parse and rewritten only when code the stage runs changes behaviour.
fingerprint.refresh_all(fingerprint.task_models(_run_params, config["tasks"]))


def code(stage):
    """The stage's code fingerprint, and the task's model fingerprint for stages that
    build the network: a behaviour change in either reruns the stage."""
    files = [fingerprint.stage_path(stage)]
    if not STAGES[stage].runs_model:
        return files
    return lambda wildcards: files + [fingerprint.model_path(wildcards.task)]


def measured_inl():
    """The measured INL table ``cim.measured_inl`` names: an input of every stage that builds the chip."""
    path = config["cim"]["measured_inl"]
    return [path] if path else []


def exact_codes(wildcards):
    """The method's integer weight codes, for methods that write them (export keeps them exactly)."""
    return [str(layout.path(layout.QUANTIZED, **wildcards))] if layout.QUANTIZED in METHODS[wildcards.method].outputs else []


def thresholds(wildcards):
    """The feature sparsifier's thresholds, for methods that write them (Feature Regularization)."""
    return [str(layout.path(layout.THRESHOLDS, **wildcards))] if layout.THRESHOLDS in METHODS[wildcards.method].outputs else []


def report_outputs():
    return [layout.REPORT_MD, layout.REPORT_HTML, layout.PLOT_ACCURACY_SIZE, layout.PLOT_TRAINING,
            layout.PLOT_CIM_SWEEP, layout.PLOT_CIM_LAYERS, layout.PLOT_COMPRESSION, layout.PLOT_BITWIDTHS,
            layout.PLOT_DOMAIN, layout.PLOT_SR, layout.PLOT_SR_CROPS, layout.PLOT_SR_CIM, layout.PLOT_RATIO_SWEEP]


def _every(pattern, methods=None, kinds=LABELLED_KINDS):
    """``pattern`` for every (task, seed, method) the run builds on tasks of ``kinds``: each
    task runs the listed methods made for its kind (cimflow.methods). Accuracy-scored kinds
    by default: they are the ones exported to int8 and mapped onto the chip."""
    methods = config["methods"] if methods is None else methods
    return [pattern.format(task=task, seed=seed, method=method) for task in config["tasks"]
            if _run_params.kind(task) in kinds
            for seed in config["seeds"] for method in _run_params.task_methods(task) if method in methods]


def run_sr(pattern):
    """``pattern`` for every (task, seed, method) of the run's super-resolution tasks."""
    return _every(pattern, kinds=(SUPER_RESOLUTION,))


def run_metrics():
    return _every(layout.METRICS)


def run_histories():
    return _every(layout.HISTORY, writing(layout.HISTORY, config["methods"]), kinds=(*LABELLED_KINDS, SUPER_RESOLUTION))


def run_steps():
    return _every(layout.STEPS, writing(layout.STEPS, config["methods"]))


def run_periods():
    return _every(layout.PERIODS, writing(layout.PERIODS, config["methods"]))


def run_dynasty():
    methods = writing(layout.DYNASTY_SUMMARY, config["methods"])
    return _every(layout.DYNASTY_SUMMARY, methods) + _every(layout.BITMAPS, methods)


def run_cim_metrics():
    return _every(layout.CIM_METRICS)


def run_cim_layers():
    return _every(layout.CIM_MAPPING) + _every(layout.CIM_SYSTEM)


def run_ratio_sweep():
    """Test metrics of every ratio-sweep point the run builds (cimflow.config.Params.sweep_points)."""
    return [layout.SWEEP_METRICS.format(task=task, seed=seed, method=method, target=target)
            for task in config["tasks"] for seed in config["seeds"]
            for method, target in _run_params.sweep_points(task)]


def run_cim_sweeps():
    return _every(layout.CIM_SWEEP, _run_params.swept_methods)
