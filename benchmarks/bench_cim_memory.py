"""Peak memory of simulating ResNet-20 on the CD-CiM macro against its float inference.

Each mode runs in its own child process (so peaks do not mix) on the same random
ResNet-20 and batch: ``float`` is plain torch inference; ``cim`` is the int8 export
routed through a calibrated simulated chip with per-conversion noise (the full model).
Prints both peaks (ru_maxrss) and their increments over the process after imports and
model construction, and, as the last line, one JSON object with ``peak_rss_ratio``.

    python benchmarks/bench_cim_memory.py [--batch 256] [--params params.yaml]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
from pathlib import Path


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(mode: str, batch: int, params_file: Path) -> None:
    import torch

    from cimflow.cim.calibration import calibrate
    from cimflow.cim.simulator import CimMacro
    from cimflow.config import load_params
    from cimflow.hardware import attach_cim, full_scales
    from cimflow.models import build_model
    from cimflow.graph import relu_follows
    from cimflow.quantize import fold_batchnorm, quantize_model

    torch.manual_seed(0)
    params = load_params(params_file)
    torch.set_num_threads(params.threads)
    model = build_model("resnet20", 3, 10, 32).eval()
    x = torch.randn(batch, 3, 32, 32)
    if mode == "cim":
        cim = params.cim
        model = quantize_model(model, [x[:64]], 8, 8, 99.99)
        fused = relu_follows(fold_batchnorm(build_model("resnet20", 3, 10, 32).eval()))
        scales = full_scales(model, [x[:32]], cim.macro, cim.mapping, fused, cim.full_scale_percentile)
        chip = CimMacro(cim.macro, cim.chip_seed, calibrate(cim.macro, cim.chip_seed, 16, 256))
        attach_cim(model, chip, scales, fused, cim.mapping, True, 0)
    before = _peak_mib()
    with torch.no_grad():
        model(x)
    print(json.dumps({"peak_mib": _peak_mib(), "before_mib": before}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--mode", choices=["float", "cim"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.mode:
        child(args.mode, args.batch, args.params)
        return
    result = {}
    for mode in ("float", "cim"):
        out = subprocess.run([sys.executable, __file__, "--mode", mode, "--batch", str(args.batch),
                              "--params", str(args.params)], capture_output=True, text=True, check=True)
        result[mode] = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"{mode}: peak {result[mode]['peak_mib']:.0f} MiB "
              f"(+{result[mode]['peak_mib'] - result[mode]['before_mib']:.0f} MiB during inference)")
    print(json.dumps({
        "batch": args.batch,
        "float_peak_mib": round(result["float"]["peak_mib"], 1),
        "cim_peak_mib": round(result["cim"]["peak_mib"], 1),
        "peak_rss_ratio": round(result["cim"]["peak_mib"] / result["float"]["peak_mib"], 3),
        "inference_increment_ratio": round(
            (result["cim"]["peak_mib"] - result["cim"]["before_mib"])
            / max(result["float"]["peak_mib"] - result["float"]["before_mib"], 1.0), 3),
    }))


if __name__ == "__main__":
    main()
