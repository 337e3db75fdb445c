rule admm_prune:
    input:
        code=code("admm_prune"),
        train=layout.PREPARED_TRAIN,
        val=layout.PREPARED_VAL,
        model=layout.for_method(layout.MODEL, "baseline"),
    output:
        model=layout.for_method(layout.MODEL, "admm_prune"),
        masks=layout.for_method(layout.MASKS, "admm_prune"),
        steps=layout.for_method(layout.STEPS, "admm_prune"),
    params:
        values=stage_params("admm_prune"),
    log:
        "logs/admm_prune/{task}-{seed}.log",
    threads: config["threads"]
    resources:
        mem_mb=8000,
        runtime=720,
    conda:
        "../envs/cimflow.yaml"
    shell:
        "cimflow admm_prune --task {wildcards.task} --seed {wildcards.seed} --method admm_prune --log {log}"


rule admm_quantize:
    input:
        code=code("admm_quantize"),
        train=layout.PREPARED_TRAIN,
        val=layout.PREPARED_VAL,
        model=layout.for_method(layout.MODEL, "admm_prune"),
        masks=layout.for_method(layout.MASKS, "admm_prune"),
    output:
        model=layout.for_method(layout.MODEL, "admm_quant"),
        quantized=layout.for_method(layout.QUANTIZED, "admm_quant"),
        steps=layout.for_method(layout.STEPS, "admm_quant"),
    params:
        values=stage_params("admm_quantize"),
    log:
        "logs/admm_quantize/{task}-{seed}.log",
    threads: config["threads"]
    resources:
        mem_mb=8000,
        runtime=720,
    conda:
        "../envs/cimflow.yaml"
    shell:
        "cimflow admm_quantize --task {wildcards.task} --seed {wildcards.seed} --method admm_quant --log {log}"


rule admm_binarize:
    input:
        code=code("admm_binarize"),
        train=layout.PREPARED_TRAIN,
        val=layout.PREPARED_VAL,
        model=layout.for_method(layout.MODEL, "baseline"),
    output:
        model=layout.for_method(layout.MODEL, "admm_binary"),
        quantized=layout.for_method(layout.QUANTIZED, "admm_binary"),
        steps=layout.for_method(layout.STEPS, "admm_binary"),
    params:
        values=stage_params("admm_binarize"),
    log:
        "logs/admm_binarize/{task}-{seed}.log",
    threads: config["threads"]
    resources:
        mem_mb=8000,
        runtime=720,
    conda:
        "../envs/cimflow.yaml"
    shell:
        "cimflow admm_binarize --task {wildcards.task} --seed {wildcards.seed} --method admm_binary --log {log}"


rule magnitude_prune:
    input:
        code=code("magnitude_prune"),
        train=layout.PREPARED_TRAIN,
        val=layout.PREPARED_VAL,
        model=layout.for_method(layout.MODEL, "baseline"),
    output:
        model=layout.for_method(layout.MODEL, "magnitude_{schedule}"),
        masks=layout.for_method(layout.MASKS, "magnitude_{schedule}"),
        steps=layout.for_method(layout.STEPS, "magnitude_{schedule}"),
    params:
        values=stage_params("magnitude_prune"),
    wildcard_constraints:
        schedule="one_shot|iterative",
    log:
        "logs/magnitude_prune/{task}-{seed}-{schedule}.log",
    threads: config["threads"]
    resources:
        mem_mb=8000,
        runtime=720,
    conda:
        "../envs/cimflow.yaml"
    shell:
        "cimflow magnitude_prune --task {wildcards.task} --seed {wildcards.seed} --method magnitude_{wildcards.schedule} --log {log}"
