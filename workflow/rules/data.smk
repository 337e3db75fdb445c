rule prepare:
    input:
        code=code("prepare"),
    output:
        train=layout.PREPARED_TRAIN,
        val=layout.PREPARED_VAL,
        test=layout.PREPARED_TEST,
        manifest=layout.MANIFEST,
    params:
        values=stage_params("prepare"),
    log:
        "logs/prepare/{task}.log",
    threads: config["threads"]
    resources:
        mem_mb=4000,
        runtime=30,
    conda:
        "../envs/cimflow.yaml"
    shell:
        "cimflow prepare --task {wildcards.task} --log {log}"


rule prepare_target:
    input:
        code=code("prepare_target"),
    output:
        target_train=layout.TARGET_TRAIN,
        target_val=layout.TARGET_VAL,
    params:
        values=stage_params("prepare_target"),
    log:
        "logs/prepare_target/{task}.log",
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    conda:
        "../envs/cimflow.yaml"
    shell:
        "cimflow prepare_target --task {wildcards.task} --log {log}"
