"""Peers side by side: IBM aihwkit 1.2.0 analog inference on ResNet-20's conv GEMMs, beside cimflow's simulator.

The same workload as bench_cim_resnet20.py (every ResNet-20 conv layer as its im2col GEMM at
batch 64, the same random int8 inputs and weights), in one process:

* torch float32 GEMMs (the physical limit both simulators are measured against);
* cimflow's CD-CiM simulator (default macro, calibrated, ReLU), without and with
  per-conversion noise;
* aihwkit's inference tiles, the C++ RPUCuda tile (InferenceRPUConfig) and the pure-torch
  tile (TorchInferenceRPUConfig), each with its forward non-idealities (7-bit DAC,
  9-bit ADC, input/output scaling) without and with its default output noise. Tiles are
  128 inputs tall like the macro's columns (``mapping.max_input_size``), partial results
  added digitally, weights programmed once, eval mode.

The two simulators model different hardware (aihwkit: resistive crossbars, per-tile
noise management; cimflow: a charge-domain SAR macro per conversion), so the ratios
compare simulation cost on the same GEMMs, not fidelity. Optional and not run in CI;
what is not installed is skipped with a line saying so. Install aihwkit into the venv
(about 10 minutes of compiling on 2 cores): ``apt-get install libopenblas-dev``,
``.venv/bin/pip install mypy scikit-build pybind11``, then, with the venv's ``stubgen`` on
PATH, ``PATH=$PWD/.venv/bin:$PATH USE_CUDA=OFF .venv/bin/pip install --no-deps
--no-build-isolation aihwkit==1.2.0``.
Run: python benchmarks/bench_peers.py [--repeats N] [--threads N]. The last line is one
JSON object with the times and the ratios to the float32 GEMMs.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
from collections.abc import Callable

import numpy as np
import torch
from bench_cim_resnet20 import default_macro_params, median_seconds, random_layers

from cimflow.cim import CimMacro, MacroConfig, calibrate


def aihwkit_runs(layers: list[tuple[np.ndarray, np.ndarray, float]], rows: int) -> dict[str, Callable[[], None]]:
    """aihwkit forward passes over the layers: {name: run}, one per tile kind and noise setting."""
    from aihwkit.nn import AnalogLinear
    from aihwkit.simulator.configs import InferenceRPUConfig, TorchInferenceRPUConfig

    inputs = [torch.from_numpy(x.astype(np.float32) / 127.0) for x, _, _ in layers]
    runs = {}
    for tile, config_class in (("rpucuda", InferenceRPUConfig), ("torch", TorchInferenceRPUConfig)):
        for noise in (False, True):
            modules = []
            for _, w, _ in layers:
                config = config_class()
                config.mapping.max_input_size = rows
                config.mapping.max_output_size = 512
                if not noise:
                    config.forward.out_noise = 0.0
                module = AnalogLinear(w.shape[0], w.shape[1], bias=False, rpu_config=config)
                module.set_weights(torch.from_numpy(w.T.astype(np.float32) / 127.0))
                modules.append(module.eval())

            def run(modules: list[torch.nn.Module] = modules) -> None:
                with torch.no_grad():
                    for module, x in zip(modules, inputs):
                        module(x)

            runs[f"aihwkit_{tile}{'_noise' if noise else ''}"] = run
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    config = MacroConfig.from_mapping(default_macro_params())
    macro = CimMacro(config, 1, calibrate(config, 1))
    layers = random_layers(config)
    mapped = [macro.map_weights(w) for _, w, _ in layers]
    floats = [(torch.from_numpy(x.astype(np.float32)), torch.from_numpy(w.astype(np.float32))) for x, w, _ in layers]

    def gemms() -> None:
        for x, w in floats:
            torch.mm(x, w)

    def cimflow(noise: bool) -> Callable[[], None]:
        def run() -> None:
            for i, ((x, _, full_scale), weights) in enumerate(zip(layers, mapped)):
                macro.matmul(x, weights, full_scale, True, noise, i)

        return run

    runs = {"fp32_gemm": gemms, "cimflow": cimflow(False), "cimflow_noise": cimflow(True)}
    if importlib.util.find_spec("aihwkit") is None:
        print("aihwkit not installed: skipped (see this file's docstring for the build steps)")
    else:
        runs |= aihwkit_runs(layers, config.rows)
    seconds = dict(zip(runs, median_seconds(list(runs.values()), args.repeats)))

    print(f"ResNet-20 conv GEMMs at batch 64 ({len(layers)} layers), {args.threads} threads, median of {args.repeats}")
    for name, value in seconds.items():
        print(f"  {name:22s} {value * 1e3:9.1f} ms  ({value / seconds['fp32_gemm']:6.2f}x fp32 GEMM)")
    result = {f"{name}_ms": round(value * 1e3, 2) for name, value in seconds.items()}
    result |= {f"{name}_vs_fp32_gemm": round(value / seconds["fp32_gemm"], 3)
               for name, value in seconds.items() if name != "fp32_gemm"}
    print(json.dumps({"threads": args.threads, **result}))


if __name__ == "__main__":
    main()
