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


rule evaluate_sr:
    input:
        code=code("evaluate_sr"),
        model=layout.MODEL,
        thresholds=thresholds,
        test=layout.PREPARED_TEST,
    output:
        metrics=layout.SR_METRICS,
        sparsity=layout.SR_SPARSITY,
        samples=layout.SR_SAMPLES,
    params:
        values=stage_params("evaluate_sr"),
    log:
        "logs/evaluate_sr/{task}-{seed}-{method}.log",
    threads: config["threads"]
    resources:
        mem_mb=4000,
        runtime=60,
    conda:
        "../envs/cimflow.yaml"
    shell:
        "cimflow evaluate_sr --task {wildcards.task} --seed {wildcards.seed} --method {wildcards.method} --log {log}"
