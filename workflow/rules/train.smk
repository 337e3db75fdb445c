rule train:
    input:
        code=code("train"),
        train=layout.PREPARED_TRAIN,
        test=layout.PREPARED_TEST,
    output:
        model=layout.MODEL,
        history=layout.HISTORY,
    params:
        values=stage_params("train"),
    log:
        "logs/train/{task}-{method}.log",
    threads: config["threads"]
    resources:
        mem_mb=8000,
        runtime=720,
    conda:
        "../envs/cimflow.yaml"
    shell:
        "cimflow train --task {wildcards.task} --method {wildcards.method} --log {log}"
