# One rule per method, made from the method table (cimflow.methods): which stage builds
# it, the prepared data and source artifacts it reads and the artifacts it writes. Adding a method there
# adds its rule here; this file does not change.
from pathlib import Path

from cimflow.methods import METHODS, source_inputs

for _method in METHODS.values():

    rule:
        name:
            _method.name
        input:
            code=code(_method.stage),
            **{Path(p).stem: p for p in _method.data},
            **source_inputs(_method.name),
        output:
            **{Path(p).stem: layout.for_method(p, _method.name) for p in _method.outputs},
        params:
            values=stage_params(_method.stage),
            stage=_method.stage,  # the shell command runs after the loop: pass loop values as params
            method=_method.name,
        log:
            f"logs/{_method.stage}/{{task}}-{{seed}}-{_method.name}.log",
        threads: config["threads"]
        resources:
            mem_mb=8000,
            runtime=720,
        conda:
            "../envs/cimflow.yaml"
        shell:
            "cimflow {params.stage} --task {wildcards.task} --seed {wildcards.seed} --method {params.method} --log {log}"
