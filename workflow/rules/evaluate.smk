rule export:
    input:
        code=code("export"),
        model=layout.MODEL,
        train=layout.PREPARED_TRAIN,
        codes=exact_codes,
    output:
        int8=layout.INT8_MODEL,
    params:
        values=stage_params("export"),
    log:
        "logs/export/{task}-{seed}-{method}.log",
    threads: config["threads"]
    resources:
        mem_mb=4000,
        runtime=30,
    conda:
        "../envs/cimflow.yaml"
    shell:
        "cimflow export --task {wildcards.task} --seed {wildcards.seed} --method {wildcards.method} --log {log}"


rule evaluate:
    input:
        code=code("evaluate"),
        model=layout.MODEL,
        int8=layout.INT8_MODEL,
        test=layout.PREPARED_TEST,
    output:
        metrics=layout.METRICS,
    params:
        values=stage_params("evaluate"),
    log:
        "logs/evaluate/{task}-{seed}-{method}.log",
    threads: config["threads"]
    resources:
        mem_mb=4000,
        runtime=30,
    conda:
        "../envs/cimflow.yaml"
    shell:
        "cimflow evaluate --task {wildcards.task} --seed {wildcards.seed} --method {wildcards.method} --log {log}"
