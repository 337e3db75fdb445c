"""What DYNASTY's online analytics cost: a LeNet-5 training step with and without them.

Both variants train LeNet-5 on the digits (batch 64) through cimflow.train.train, in one
process, with the same hook class quantizing the same tensors (weights, input
activations, output gradients) to block floating point:

* 8-bit: the map pinned at ``cost.baseline_bits``: plain fake-quantization, no
  analytics, no map updates;
* DYNASTY: the ``dynasty`` parameters (warm-up set to 0, so every epoch is measured)
  with per-block error analytics every ``refresh_interval`` steps, the map generator and
  the cost meter's re-rating.

A timing hook placed after them stamps the end of every step; a step's time is the gap
to the previous stamp within an epoch (evaluation between epochs is left out). Runs
alternate between the variants after one untimed warm-up run each; step times are
pooled over the repeats and summarised by medians, which shrug off the bursts of a
shared machine. DYNASTY's step is amortized as in training: one refresh step (analytics,
map update, cost re-rating) per ``refresh_interval`` steps,
(median ordinary step * (K - 1) + median refresh step) / K.

The last line is one JSON object: overhead_ratio (amortized DYNASTY step / median 8-bit
step; target <= 1.30), analytics_step_ratio (median refresh step / median 8-bit step,
the un-amortized worst case) and the step times.
Run: python benchmarks/bench_dynasty_overhead.py [--params params.yaml] [--repeats N]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
import yaml

from cimflow.compress.dynasty.hook import DynastyHook
from cimflow.compress.dynasty.params import DynastyParams
from cimflow.params.train import TrainParams
from cimflow.data.digits import load_digits
from cimflow.models import build_model
from cimflow.preprocess import Preprocessor
from cimflow.train import Hook, TrainState, seed_everything, train

ROOT = Path(__file__).resolve().parents[1]


class StepTimer(Hook):
    """Seconds per training step, and whether the step ended a DYNASTY refresh period."""

    def __init__(self, refresh_interval: int) -> None:
        self.refresh_interval = refresh_interval
        self.steps: list[tuple[float, bool]] = []
        self._last = 0.0

    def on_epoch_start(self, state: TrainState) -> None:
        self._last = time.perf_counter()

    def after_step(self, state: TrainState) -> None:
        now = time.perf_counter()
        self.steps.append((now - self._last, (state.step + 1) % self.refresh_interval == 0))
        self._last = now


def timed_run(hook: DynastyHook, epochs: int, threads: int) -> StepTimer:
    train_split, test_split = load_digits(0.25, 0)
    params = TrainParams(model="lenet5", input_size=28, epochs=epochs, batch_size=64, lr=0.02, momentum=0.9,
                         weight_decay=5e-4, schedule="cosine", warmup_epochs=0, crop_padding=2, hflip=False)
    torch.set_num_threads(threads)
    seed_everything(0)
    model = build_model("lenet5", 1, 10, 28)
    timer = StepTimer(hook.params.refresh_interval)
    train(model, train_split.images, train_split.labels, test_split.images[:64], test_split.labels[:64],
          Preprocessor.fit(train_split.images, 28), params, seed=0, hooks=[hook, timer], device=torch.device("cpu"))
    return timer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=Path, default=ROOT / "params.yaml", help="YAML file with a `dynasty:` block")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=2, help="epochs per timed run (22 steps each)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    raw = yaml.safe_load(args.params.read_text())
    params = DynastyParams.model_validate(raw["dynasty"] | {"warmup_epochs": 0})

    def uniform() -> DynastyHook:
        return DynastyHook(params, 0, fixed_bits=params.cost.baseline_bits)

    def dynasty() -> DynastyHook:
        return DynastyHook(params, 0)

    timed_run(uniform(), 1, args.threads)
    timed_run(dynasty(), 1, args.threads)
    uniform_steps, ordinary_steps, refresh_steps = [], [], []
    for repeat in range(args.repeats):
        uniform_steps += [t for t, _ in timed_run(uniform(), args.epochs, args.threads).steps]
        steps = timed_run(dynasty(), args.epochs, args.threads).steps
        ordinary_steps += [t for t, refresh in steps if not refresh]
        refresh_steps += [t for t, refresh in steps if refresh]
        print(f"repeat {repeat + 1}/{args.repeats}: 8-bit {statistics.median(uniform_steps) * 1e3:.1f} ms/step, "
              f"DYNASTY {statistics.median(ordinary_steps) * 1e3:.1f} ms/step, "
              f"refresh step {statistics.median(refresh_steps) * 1e3:.1f} ms (medians so far)", flush=True)

    k = params.refresh_interval
    uniform_ms = statistics.median(uniform_steps) * 1e3
    refresh_ms = statistics.median(refresh_steps) * 1e3
    dynasty_ms = (statistics.median(ordinary_steps) * 1e3 * (k - 1) + refresh_ms) / k
    print(json.dumps({
        "overhead_ratio": round(dynasty_ms / uniform_ms, 4),
        "analytics_step_ratio": round(refresh_ms / uniform_ms, 4),
        "uniform_8bit_step_ms": round(uniform_ms, 3),
        "dynasty_step_ms": round(dynasty_ms, 3),
        "dynasty_refresh_step_ms": round(refresh_ms, 3),
        "refresh_interval": k,
        "repeats": args.repeats,
    }))


if __name__ == "__main__":
    main()
