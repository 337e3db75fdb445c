rule calibrate:
    input:
        code=code("calibrate"),
        inl=measured_inl(),
    output:
        codes=layout.CIM_CODES,
        trim=layout.CIM_TRIM,
    params:
        values=stage_params("calibrate"),
    log:
        "logs/calibrate/calibrate.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../envs/cimflow.yaml"
    shell:
        "cimflow calibrate --log {log}"


rule map:
    input:
        code=code("map"),
        inl=measured_inl(),
        int8=layout.INT8_MODEL,
        train=layout.PREPARED_TRAIN,
        codes=layout.CIM_CODES,
        trim=layout.CIM_TRIM,
    output:
        mapping=layout.CIM_MAPPING,
        system=layout.CIM_SYSTEM,
    params:
        values=stage_params("map"),
    log:
        "logs/map/{task}-{seed}-{method}.log",
    threads: config["threads"]
    resources:
        mem_mb=8000,
        runtime=60,
    conda:
        "../envs/cimflow.yaml"
    shell:
        "cimflow map --task {wildcards.task} --seed {wildcards.seed} --method {wildcards.method} --log {log}"


rule evaluate_cim:
    input:
        code=code("evaluate_cim"),
        inl=measured_inl(),
        int8=layout.INT8_MODEL,
        mapping=layout.CIM_MAPPING,
        system=layout.CIM_SYSTEM,
        test=layout.PREPARED_TEST,
        codes=layout.CIM_CODES,
        trim=layout.CIM_TRIM,
    output:
        metrics=layout.CIM_METRICS,
    params:
        values=stage_params("evaluate_cim"),
    log:
        "logs/evaluate_cim/{task}-{seed}-{method}.log",
    threads: config["threads"]
    resources:
        mem_mb=8000,
        runtime=120,
    conda:
        "../envs/cimflow.yaml"
    shell:
        "cimflow evaluate_cim --task {wildcards.task} --seed {wildcards.seed} --method {wildcards.method} --log {log}"


rule cim_sweep:
    input:
        code=code("cim_sweep"),
        inl=measured_inl(),
        int8=layout.INT8_MODEL,
        mapping=layout.CIM_MAPPING,
        train=layout.PREPARED_TRAIN,
        test=layout.PREPARED_TEST,
    output:
        sweep=layout.CIM_SWEEP,
    params:
        values=stage_params("cim_sweep"),
    log:
        "logs/cim_sweep/{task}-{seed}-{method}.log",
    threads: config["threads"]
    resources:
        mem_mb=8000,
        runtime=240,
    conda:
        "../envs/cimflow.yaml"
    shell:
        "cimflow cim_sweep --task {wildcards.task} --seed {wildcards.seed} --method {wildcards.method} --log {log}"


rule map_sr:
    input:
        code=code("map_sr"),
        int8=layout.INT8_MODEL,
        train=layout.PREPARED_TRAIN,
        thresholds=thresholds,
    output:
        mapping=layout.SR_CIM_MAPPING,
    params:
        values=stage_params("map_sr"),
    log:
        "logs/map_sr/{task}-{seed}-{method}.log",
    threads: config["threads"]
    resources:
        mem_mb=8000,
        runtime=60,
    conda:
        "../envs/cimflow.yaml"
    shell:
        "cimflow map_sr --task {wildcards.task} --seed {wildcards.seed} --method {wildcards.method} --log {log}"


rule evaluate_sr_cim:
    input:
        code=code("evaluate_sr_cim"),
        inl=measured_inl(),
        int8=layout.INT8_MODEL,
        mapping=layout.SR_CIM_MAPPING,
        thresholds=thresholds,
        test=layout.PREPARED_TEST,
        codes=layout.CIM_CODES,
        trim=layout.CIM_TRIM,
    output:
        metrics=layout.SR_CIM_METRICS,
        layers=layout.SR_CIM_LAYERS,
    params:
        values=stage_params("evaluate_sr_cim"),
    log:
        "logs/evaluate_sr_cim/{task}-{seed}-{method}.log",
    threads: config["threads"]
    resources:
        mem_mb=8000,
        runtime=240,
    conda:
        "../envs/cimflow.yaml"
    shell:
        "cimflow evaluate_sr_cim --task {wildcards.task} --seed {wildcards.seed} --method {wildcards.method} --log {log}"
