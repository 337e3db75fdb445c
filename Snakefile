# cimflow: data -> baseline -> int8 export -> evaluation -> CD-CiM mapping,
# calibration and evaluation -> report.
# The rules live in workflow/rules/; every rule is one `cimflow <stage>` call and all
# logic is in src/cimflow. The default target is declared here because a default
# target inside an included file is dropped by Snakemake.

configfile: "params.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/methods.smk"
include: "workflow/rules/sweep.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/hardware.smk"
include: "workflow/rules/report.smk"


# DVC learns what Snakemake finished (cimflow.dvclock), so `dvc status` and `dvc repro`
# agree with it; not run after a dry run or a run with nothing to do.
onsuccess:
    shell("cimflow dvc-commit")


rule all:
    default_target: True
    input:
        report_outputs(),
