rule train:
    input:
        code=code("train"),
        train=layout.PREPARED_TRAIN,
        val=layout.PREPARED_VAL,
    output:
        model=layout.for_method(layout.MODEL, "baseline"),
        history=layout.for_method(layout.HISTORY, "baseline"),
    params:
        values=stage_params("train"),
    log:
        "logs/train/{task}-{seed}.log",
    threads: config["threads"]
    resources:
        mem_mb=8000,
        runtime=720,
    conda:
        "../envs/cimflow.yaml"
    shell:
        "cimflow train --task {wildcards.task} --seed {wildcards.seed} --method baseline --log {log}"
