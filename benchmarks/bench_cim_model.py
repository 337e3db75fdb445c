"""Whole-network speed: ResNet-20 in float, on the int8 digital engine and on the simulated chip.

One process, one batch of CIFAR-10-sized inputs (random images; the timing does not
depend on the data), ResNet-20 with random weights quantized by the pipeline's int8
export (per-channel weights, per-tensor activations calibrated on the batch):

* float: the BN-folded float32 model;
* int8 digital: the exported integer model on its exact digital engine;
* CiM: the same model on one simulated chip (params.yaml ``cim``: macro, mapping policy,
  calibration, noise on), ranges set on the batch.

Times are medians over repeats, rounds interleaved so load drifts hit all alike. The last
line is one JSON object with the times and the ratios int8 / float and CiM / float
(targets of the CiM fidelity issue: <= 1.5 and <= 3). Run: python
benchmarks/bench_cim_model.py [--batch N] [--repeats N] [--threads N]. Wall clock: other
load on the machine inflates every side.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path

import torch
from bench_cim_resnet20 import median_seconds  # same interleaved-median timing

from cimflow.cim.calibration import calibrate
from cimflow.cim.simulator import CimMacro
from cimflow.config import load_params
from cimflow.graph import relu_follows
from cimflow.hardware import attach_cim, full_scales
from cimflow.models import build_model
from cimflow.quantize import fold_batchnorm, quantize_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cim = load_params(args.params).cim
    model = build_model("resnet20", 3, 10, 32).eval()
    x = torch.randn(args.batch, 3, 32, 32)
    folded = fold_batchnorm(model)
    digital = quantize_model(model, [x], 8, 8, 99.99)
    on_chip = quantize_model(model, [x], 8, 8, 99.99)
    relu = relu_follows(folded)
    scales = full_scales(on_chip, [x], cim.macro, cim.mapping, relu, cim.full_scale_percentile)
    chip = CimMacro(cim.macro, cim.chip_seed, calibrate(cim.macro, cim.chip_seed, 16, 256))
    attach_cim(on_chip, chip, scales, relu, cim.mapping, cim.noise, cim.noise_seed)

    def infer(net: torch.nn.Module) -> Callable[[], object]:
        def run() -> object:
            with torch.no_grad():
                return net(x)
        return run

    float_s, int8_s, cim_s = median_seconds([infer(folded), infer(digital), infer(on_chip)], args.repeats)
    print(f"ResNet-20, batch {args.batch}, {args.threads} threads, median of {args.repeats}")
    print(f"  float32       {float_s * 1e3:8.1f} ms")
    print(f"  int8 digital  {int8_s * 1e3:8.1f} ms  ({int8_s / float_s:.2f}x float)")
    print(f"  CiM           {cim_s * 1e3:8.1f} ms  ({cim_s / float_s:.2f}x float)")
    print(json.dumps({"batch": args.batch, "threads": args.threads, "float_s": float_s, "int8_s": int8_s,
                      "cim_s": cim_s, "int8_vs_float": int8_s / float_s, "cim_vs_float": cim_s / float_s}))


if __name__ == "__main__":
    main()
