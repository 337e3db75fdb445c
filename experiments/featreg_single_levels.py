"""One multi-level Feature Regularization model against models fine-tuned for one level each.

Issue 15's target: the shared model within 0.1 dB of separately trained single-level
models at every level. For each seed of a finished DAG run (`featreg` built) and each
level of `featreg.<task>.levels`, this fine-tunes that seed's `sr_dense` model with that
level alone (the same recipe, epochs, regularizer and seed; one forward per step instead
of the sandwich's three), sets its thresholds on the validation images and scores it on
the test sets. The multi-level numbers are the run's own `sr_metrics.json`. Prints, per
set and level, both mean PSNRs and the paired difference multi - single with a t interval
over the seeds, and writes the per-seed rows to `results/<task>/featreg_single_levels.parquet`.

    python experiments/featreg_single_levels.py --task sr_embedded --seeds 0 1 2
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd
import torch

from cimflow import layout
from cimflow.artifacts import load_json, save_table
from cimflow.compress.featreg.method import finetune
from cimflow.config import load_params
from cimflow.modelio import load_model
from cimflow.seedstats import paired_difference
from cimflow.sr import data as srdata
from cimflow.sr.evaluate import bicubic_scores, evaluate, summary
from cimflow.train import seed_everything


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="sr_embedded")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = parser.parse_args()
    params = load_params(args.params)
    torch.set_num_threads(params.threads)
    cfg, fr = params.train[args.task], params.featreg[args.task]
    split = {name: srdata.load_sr_set(layout.path(p, task=args.task))
             for name, p in (("train", layout.PREPARED_TRAIN), ("val", layout.PREPARED_VAL),
                             ("test", layout.PREPARED_TEST))}
    bicubic = bicubic_scores(split["test"])
    rows = []
    for seed in args.seeds:
        multi = load_json(layout.path(layout.SR_METRICS, task=args.task, seed=seed, method="featreg"))["sets"]
        for level in fr.levels:
            seed_everything(seed)
            model, _ = load_model(layout.path(layout.MODEL, task=args.task, seed=seed, method="sr_dense"))
            sparsifier, _ = finetune(model, split["train"], split["val"], cfg, fr, fr.mode, [level], seed)
            single = summary(evaluate(model, split["test"], sparsifier), bicubic)
            label = f"{level:g}"
            for set_name, entry in single.items():
                rows.append({"seed": seed, "set": set_name, "level": label,
                             "psnr_single": entry["levels"][label]["psnr"],
                             "psnr_multi": multi[set_name]["levels"][label]["psnr"],
                             "sparsity_single": entry["levels"][label]["feature_sparsity"],
                             "sparsity_multi": multi[set_name]["levels"][label]["feature_sparsity"]})
            print(rows[-1], flush=True)
    table = pd.DataFrame(rows)
    save_table(Path("results") / args.task / "featreg_single_levels.parquet", table)
    print("\n| set | level | seeds | single-level PSNR | multi-level PSNR | multi - single (95% t) |")
    print("|---|---|---|---|---|---|")
    for (set_name, label), group in table.groupby(["set", "level"], sort=False):
        group = group.set_index("seed")
        p = paired_difference(group["psnr_multi"], group["psnr_single"], 0.95)
        print(f"| {set_name} | {label} | {p.seeds} | {group['psnr_single'].mean():.2f} | "
              f"{group['psnr_multi'].mean():.2f} | {p.mean:+.2f} [{p.low:+.2f}, {p.high:+.2f}] |")


if __name__ == "__main__":
    main()
