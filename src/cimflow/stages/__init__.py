"""The DAG's stages: what each reads from params.yaml and which code it runs.

This registry is the single description both front ends are generated from: the
Snakemake rules pass exactly these params keys through ``params:`` (so an edit reruns
exactly the dependent jobs) and the DVC generator writes them as ``params:``. A stage's
code dependency is its fingerprint (cimflow.fingerprint): what its module runs and the
schemas of the params sections it reads.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Stage:
    name: str
    params: tuple[str, ...]  # dotted params.yaml keys; may contain {task}
    module_name: str = ""  # stage module when several stages share one
    runs_model: bool = True  # builds the task's network, so the model's code is an input

    @property
    def module(self) -> str:
        return f"cimflow.stages.{self.module_name or self.name}"

    def param_keys(self, **wildcards: str) -> list[str]:
        return [key.format(**wildcards) for key in self.params]


STAGES = {
    s.name: s
    for s in (
        Stage("prepare", ("threads", "data.{task}"), runs_model=False),
        Stage("prepare_target", ("data.{task}",), "prepare", runs_model=False),
        Stage("train", ("threads", "train.{task}")),
        Stage("admm_prune", ("threads", "train.{task}", "admm.{task}.prune"), "compress"),
        Stage("admm_quantize", ("threads", "train.{task}", "admm.{task}.quantize"), "compress"),
        Stage("admm_binarize", ("threads", "train.{task}", "admm.{task}.binarize"), "compress"),
        Stage("admm_filter", ("threads", "train.{task}", "admm.{task}.filter"), "compress"),
        Stage("magnitude_prune", ("threads", "train.{task}", "admm.{task}.prune"), "compress"),
        Stage("sweep_prune", ("threads", "train.{task}", "admm.{task}.prune", "admm.{task}.sweep"), "compress"),
        Stage("dynasty_train", ("threads", "train.{task}", "dynasty")),
        Stage("dann_train", ("threads", "train.{task}", "admp.{task}.dann"), "adapt"),
        Stage("admp_prune", ("threads", "train.{task}", "admp.{task}"), "adapt"),
        Stage("channel_prune", ("threads", "train.{task}", "admp.{task}"), "adapt"),
        Stage("sr_train", ("threads", "train.{task}"), "sr"),
        Stage("featreg_train", ("threads", "train.{task}", "featreg.{task}"), "sr"),
        Stage("evaluate_sr", ("threads",)),
        Stage("map_sr", ("threads", "cim.macro", "cim.mapping", "cim.full_scale_percentile", "cim.calibration_images",
                         "cim.batch_size"), "sr_chip"),
        Stage("evaluate_sr_cim", ("threads", "cim.macro", "cim.measured_inl", "cim.mapping", "cim.system",
                                  "cim.chip_seed", "cim.noise", "cim.noise_seed"), "sr_chip"),
        Stage("export", ("threads", "export")),
        Stage("evaluate", ("threads", "evaluate")),
        Stage("evaluate_sweep", ("threads", "evaluate"), "evaluate"),
        Stage("calibrate", ("cim.macro", "cim.measured_inl", "cim.chip_seed", "cim.calibration"), runs_model=False),
        Stage("map", ("threads", "cim.macro", "cim.measured_inl", "cim.mapping", "cim.system", "cim.chip_seed",
                      "cim.full_scale_percentile",
                      "cim.calibration_images", "cim.noise", "cim.noise_seed", "cim.batch_size")),
        Stage("evaluate_cim", ("threads", "cim.macro", "cim.measured_inl", "cim.mapping", "cim.chip_seed", "cim.noise",
                               "cim.noise_seed",
                               "cim.batch_size", "evaluate.confidence_level")),
        Stage("cim_sweep", ("threads", "cim.macro", "cim.measured_inl", "cim.mapping", "cim.chip_seed", "cim.calibration",
                            "cim.full_scale_percentile", "cim.calibration_images", "cim.noise", "cim.noise_seed",
                            "cim.batch_size", "cim.sweep")),
        Stage("report", ("report", "evaluate.confidence_level"), runs_model=False),
    )
}
"""No stage reads ``seeds``: a seed reaches a job as its ``{seed}`` wildcard (``--seed``),
so adding a seed adds jobs and reruns none."""

EVALUATION_STAGES = frozenset({"evaluate", "evaluate_sweep", "evaluate_cim", "cim_sweep", "evaluate_sr",
                               "evaluate_sr_cim"})
"""The only stages that may read a task's test split."""
