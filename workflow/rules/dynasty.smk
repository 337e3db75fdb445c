rule dynasty_train:
    input:
        code=code("dynasty_train"),
        train=layout.PREPARED_TRAIN,
        val=layout.PREPARED_VAL,
    output:
        model=layout.for_method(layout.MODEL, "{dynasty}"),
        history=layout.for_method(layout.HISTORY, "{dynasty}"),
        bitmaps=layout.for_method(layout.BITMAPS, "{dynasty}"),
        refreshes=layout.for_method(layout.REFRESHES, "{dynasty}"),
        cost=layout.for_method(layout.COST, "{dynasty}"),
        summary=layout.for_method(layout.DYNASTY_SUMMARY, "{dynasty}"),
    params:
        values=stage_params("dynasty_train"),
    wildcard_constraints:
        dynasty="dynasty|dynasty_int8",
    log:
        "logs/dynasty_train/{task}-{seed}-{dynasty}.log",
    threads: config["threads"]
    resources:
        mem_mb=8000,
        runtime=720,
    conda:
        "../envs/cimflow.yaml"
    shell:
        "cimflow dynasty_train --task {wildcards.task} --seed {wildcards.seed} --method {wildcards.dynasty} --log {log}"
