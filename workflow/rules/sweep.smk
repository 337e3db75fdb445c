# The ratio sweep (admm.<task>.sweep): the baseline of each seed pruned by ADMM and by the
# magnitude baselines to each overall target, then scored on the test split.
# A sweep point's {method} is its pruner (admm_prune, magnitude_one_shot, magnitude_iterative).
wildcard_constraints:
    target=r"\d+",


rule sweep_prune:
    input:
        code=code("sweep_prune"),
        train=layout.PREPARED_TRAIN,
        val=layout.PREPARED_VAL,
        source_model=layout.for_method(layout.MODEL, "baseline"),
    output:
        model=layout.SWEEP_MODEL,
        steps=layout.SWEEP_STEPS,
    params:
        values=stage_params("sweep_prune"),
    log:
        "logs/sweep_prune/{task}-{seed}-{method}-x{target}.log",
    threads: config["threads"]
    resources:
        mem_mb=8000,
        runtime=720,
    conda:
        "../envs/cimflow.yaml"
    shell:
        "cimflow sweep_prune --task {wildcards.task} --seed {wildcards.seed} --method {wildcards.method}"
        " --target {wildcards.target} --log {log}"


rule evaluate_sweep:
    input:
        code=code("evaluate_sweep"),
        model=layout.SWEEP_MODEL,
        test=layout.PREPARED_TEST,
    output:
        metrics=layout.SWEEP_METRICS,
    params:
        values=stage_params("evaluate_sweep"),
    log:
        "logs/evaluate_sweep/{task}-{seed}-{method}-x{target}.log",
    threads: config["threads"]
    resources:
        mem_mb=4000,
        runtime=30,
    conda:
        "../envs/cimflow.yaml"
    shell:
        "cimflow evaluate_sweep --task {wildcards.task} --seed {wildcards.seed} --method {wildcards.method}"
        " --target {wildcards.target} --log {log}"
