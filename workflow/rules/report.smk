rule report:
    input:
        code=code("report"),
        metrics=run_metrics(),
        histories=run_histories(),
        steps=run_steps(),
        periods=run_periods(),
        dynasty=run_dynasty(),
        cim_metrics=run_cim_metrics(),
        cim_layers=run_cim_layers(),
        cim_sweeps=run_cim_sweeps(),
        sr_metrics=run_sr(layout.SR_METRICS),
        sr_sparsity=run_sr(layout.SR_SPARSITY),
        sr_samples=run_sr(layout.SR_SAMPLES),
    output:
        markdown=layout.REPORT_MD,
        html=layout.REPORT_HTML,
        accuracy_size=layout.PLOT_ACCURACY_SIZE,
        training=layout.PLOT_TRAINING,
        cim_sweep=layout.PLOT_CIM_SWEEP,
        cim_layers=layout.PLOT_CIM_LAYERS,
        compression=layout.PLOT_COMPRESSION,
        bitwidths=layout.PLOT_BITWIDTHS,
        domain=layout.PLOT_DOMAIN,
        sr=layout.PLOT_SR,
        sr_crops=layout.PLOT_SR_CROPS,
    params:
        values=stage_params("report"),
    log:
        "logs/report/report.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../envs/cimflow.yaml"
    shell:
        "cimflow report {input.metrics} --sr {input.sr_metrics} --log {log}"
