"""Simulator speed against its physical limit: the float32 GEMMs of ResNet-20's conv layers.

Every conv layer of ResNet-20 on CIFAR-10 (32x32) at batch 64 is run as its im2col GEMM
(B*H*W, 9*C_in) x (9*C_in, C_out) three ways, in one process:

* plain torch float32 GEMMs of the same shapes (float inputs already in memory);
* the full non-ideal simulator at the default macro parameters, calibrated, with ReLU,
  without and with per-conversion noise (int8 codes in, weights mapped beforehand);
* the numpy reference backend of the same simulator (with noise).

Times are medians over repeats. The last line is one JSON object:
ratio_vs_fp32_gemm, ratio_vs_fp32_gemm_noise (simulator / GEMM; targets <= 2 and <= 3)
and speedup_vs_numpy_reference (numpy backend / Cython backend; target >= 5).
Run: python benchmarks/bench_cim_resnet20.py [--repeats N] [--threads N] (after building the
kernels in place). Time is wall clock, so other load on the machine inflates both sides.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import yaml

from cimflow.cim import CimMacro, MacroConfig, calibrate
from cimflow.cim.kernels import compiled

README = Path(__file__).resolve().parents[1] / "src" / "cimflow" / "cim" / "README.md"
BATCH = 64


def default_macro_params() -> dict:
    """The documented default parameter block (the ```yaml block of cim/README.md)."""
    text = README.read_text()
    block = text.split("```yaml\n", 1)[1].split("```", 1)[0]
    return yaml.safe_load(block)["macro"]


def resnet20_conv_shapes() -> list[tuple[int, int, int]]:
    """(rows of im2col = B*H*W, K = 9*C_in, M = C_out) of every conv layer, in order."""
    shapes = [(BATCH * 32 * 32, 9 * 3, 16)]
    c_in = 16
    for c_out, side in ((16, 32), (32, 16), (64, 8)):
        for block in range(3):
            shapes.append((BATCH * side * side, 9 * c_in, c_out))
            shapes.append((BATCH * side * side, 9 * c_out, c_out))
            c_in = c_out
    return shapes


def random_layers(config: MacroConfig) -> list[tuple[np.ndarray, np.ndarray, float]]:
    """(int8 inputs (N, K), int8 weights (K, M), ADC full scale) per conv layer, seed 0."""
    rng = np.random.default_rng(0)
    layers = []
    for n, k, m in resnet20_conv_shapes():
        x = rng.integers(-128, 128, (n, k), dtype=np.int8)
        w = rng.integers(-128, 128, (k, m), dtype=np.int8)
        full_scale = 4.0 * float(np.sqrt(min(k, config.rows))) * 73.9**2  # ~4 sigma of a partial sum
        layers.append((x, w, full_scale))
    return layers


def median_seconds(runs: list[Callable[[], object]], repeats: int) -> list[float]:
    """Median wall time of each run; rounds interleave the runs so load drifts hit all alike."""
    for run in runs:
        run()  # warm-up: thread pools, page faults, reused buffers
    times: list[list[float]] = [[] for _ in runs]
    for _ in range(repeats):
        for run, samples in zip(runs, times):
            start = time.perf_counter()
            run()
            samples.append(time.perf_counter() - start)
    return [statistics.median(samples) for samples in times]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--numpy-repeats", type=int, default=1)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch and OpenMP threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)  # also sets the OpenMP threads of the compiled kernels

    config = MacroConfig.from_mapping(default_macro_params())
    chip_seed = 1
    calibration = calibrate(config, chip_seed)
    fast = CimMacro(config, chip_seed, calibration)
    slow = CimMacro(config, chip_seed, calibration, backend="numpy")

    layers = []
    for x, w, full_scale in random_layers(config):
        layers.append(
            {
                "x": x,
                "full_scale": full_scale,
                "mapped": fast.map_weights(w),
                "mapped_numpy": slow.map_weights(w),
                "x_float": torch.from_numpy(x.astype(np.float32)),
                "w_float": torch.from_numpy(w.astype(np.float32)),
            }
        )

    def gemms() -> None:
        for layer in layers:
            torch.mm(layer["x_float"], layer["w_float"])

    def simulate(macro: CimMacro, mapped_key: str, noise: bool) -> Callable[[], None]:
        def run() -> None:
            for i, layer in enumerate(layers):
                macro.matmul(layer["x"], layer[mapped_key], layer["full_scale"], True, noise, i)

        return run

    gemm, quiet, noisy = median_seconds(
        [gemms, simulate(fast, "mapped", False), simulate(fast, "mapped", True)], args.repeats
    )
    (numpy_noisy,) = median_seconds([simulate(slow, "mapped_numpy", True)], args.numpy_repeats)

    conversions = sum(n * m * -(-k // config.rows) for n, k, m in resnet20_conv_shapes())
    print(f"layers {len(layers)}, conversions {conversions / 1e6:.1f} M, threads {torch.get_num_threads()}, "
          f"kernels {compiled.__name__}")
    print(f"fp32 GEMMs        {gemm * 1e3:8.1f} ms")
    print(f"simulator         {quiet * 1e3:8.1f} ms")
    print(f"simulator + noise {noisy * 1e3:8.1f} ms")
    print(f"numpy reference   {numpy_noisy * 1e3:8.1f} ms (with noise)")
    print(
        json.dumps(
            {
                "fp32_gemm_ms": round(gemm * 1e3, 2),
                "simulator_ms": round(quiet * 1e3, 2),
                "simulator_noise_ms": round(noisy * 1e3, 2),
                "numpy_reference_noise_ms": round(numpy_noisy * 1e3, 2),
                "threads": args.threads,
                "ratio_vs_fp32_gemm": round(quiet / gemm, 3),
                "ratio_vs_fp32_gemm_noise": round(noisy / gemm, 3),
                "speedup_vs_numpy_reference": round(numpy_noisy / noisy, 2),
            }
        )
    )


if __name__ == "__main__":
    main()
