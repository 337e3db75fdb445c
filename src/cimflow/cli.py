"""`cimflow <command>`: the only entry point Snakemake rules and DVC stages call.

Stage commands read params.yaml (validated whole), their input artifacts and write
their outputs atomically, logging one MLflow run each. Errors in user input (params,
data, artifacts) print one clear message and exit with status 2.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
from pathlib import Path
from typing import TextIO, get_args

from cimflow.compress.admm.params import SweepMethod
from cimflow.config import PARAMS_FILE, load_params
from cimflow.errors import CimflowError
from cimflow.methods import METHODS, SUPER_RESOLUTION, built_by, for_kind

COMPRESSION_STAGES = ("admm_prune", "admm_filter", "admm_quantize", "admm_binarize", "magnitude_prune")
ADAPTATION_STAGES = ("dann_train", "admp_prune", "channel_prune")
SR_TRAINING = {"sr_train": "run_train", "featreg_train": "run_featreg"}  # functions of cimflow.stages.sr
SR_CHIP = {"map_sr": "run_map", "evaluate_sr_cim": "run_evaluate"}  # functions of cimflow.stages.sr_chip
SR_METHODS = for_kind(list(METHODS), SUPER_RESOLUTION)


def _seed(text: str) -> int:
    """A training seed: a non-negative 31-bit integer, as params.yaml `seeds` allows."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if not 0 <= value < 2**31:
        raise argparse.ArgumentTypeError(f"{value} is outside [0, 2**31)")
    return value


class _Tee:
    """Copy a stream into a log file (Snakemake's ``log:``) while still showing it."""

    def __init__(self, stream: TextIO, log: TextIO) -> None:
        self.stream, self.log = stream, log

    def write(self, text: str) -> int:
        self.log.write(text)
        return self.stream.write(text)

    def flush(self) -> None:
        self.log.flush()
        self.stream.flush()

    def isatty(self) -> bool:
        return self.stream.isatty()

    def fileno(self) -> int:
        return self.stream.fileno()


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--params", type=Path, default=PARAMS_FILE, help="parameter file (default: params.yaml)")
    common.add_argument("--log", type=Path, help="also write stdout/stderr to this file")
    parser = argparse.ArgumentParser(prog="cimflow", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add = functools.partial(sub.add_parser, parents=[common])

    def seeded(p: argparse.ArgumentParser) -> None:
        p.add_argument("--task", required=True)
        p.add_argument("--seed", type=_seed, required=True, help="training seed (one of params.yaml `seeds`, or any)")

    p = add("prepare", help="read a data set, write train/validation/test tensors and a manifest")
    p.add_argument("--task", required=True)
    p = add("prepare_target", help="a domain-adaptation task's unlabeled target train/validation tensors")
    p.add_argument("--task", required=True)
    add("calibrate", help="ADC correction tables and sign trim of the simulated chip")
    for name, text in (("train", "train a task's model"), ("export", "post-training int8 export"),
                       ("evaluate", "float/int8 accuracy, size and MACs"),
                       ("map", "place an int8 model on the CD-CiM macro (ADC ranges, tiles, work per inference)"),
                       ("evaluate_cim", "accuracy, energy and throughput on the simulated chip"),
                       ("cim_sweep", "accuracy and TOPS/W against ADC bits and capacitor mismatch")):
        p = add(name, help=text)
        seeded(p)
        p.add_argument("--method", required=True)
    for name, text in (("admm_prune", "ADMM progressive pruning of the baseline"),
                       ("admm_filter", "ADMM filter pruning of the baseline; pruned filters are removed"),
                       ("admm_quantize", "ADMM quantization of the pruned model"),
                       ("admm_binarize", "ADMM binarization of the baseline"),
                       ("magnitude_prune", "magnitude pruning at the ADMM ratios and budget")):
        p = add(name, help=text)
        seeded(p)
        p.add_argument("--method", required=True, choices=built_by(name))
    p = add("sweep_prune", help="one ratio-sweep point: the baseline pruned to --target x by --method")
    seeded(p)
    p.add_argument("--method", required=True, choices=list(get_args(SweepMethod)))
    p.add_argument("--target", type=int, required=True, help="overall compression (weights / nonzeros)")
    p = add("evaluate_sweep", help="test accuracy and compression of one ratio-sweep point")
    seeded(p)
    p.add_argument("--method", required=True, choices=list(get_args(SweepMethod)))
    p.add_argument("--target", type=int, required=True)
    for name, text in (("dann_train", "the unpruned UDA teacher: DANN on labeled source + unlabeled target"),
                       ("admp_prune", "ADMP: adversarial double-mask channel pruning of the teacher"),
                       ("channel_prune", "L1 channel pruning, then KD (adapt-then-prune) or DANN (prune-then-adapt)")):
        p = add(name, help=text)
        seeded(p)
        p.add_argument("--method", required=True, choices=built_by(name))
    for name, text in (("sr_train", "the dense super-resolution network (L1 on Y patches)"),
                       ("featreg_train", "Feature Regularization: per-pixel channel sparsity, one model, every level"),
                       ("evaluate_sr", "PSNR/SSIM on Y, bicubic baseline, MACs from non-zeros, feature sparsity"),
                       ("map_sr", "an int8 SR model on the CD-CiM macro: ADC full scales per sparsity level"),
                       ("evaluate_sr_cim", "an SR model on the simulated chip per level: PSNR, energy per image")):
        p = add(name, help=text)
        seeded(p)
        p.add_argument("--method", required=True, choices=built_by(name) or SR_METHODS)
    p = add("dynasty_train", help="DYNASTY dynamic-precision training (or its uniform 8-bit baseline)")
    seeded(p)
    p.add_argument("--method", required=True, choices=built_by("dynasty_train"))
    p = add("report", help="regenerate reports/ from metrics files")
    p.add_argument("metrics", nargs="*", type=Path, help="metrics.json files of the run (accuracy-scored tasks)")
    p.add_argument("--sr", nargs="*", type=Path, default=[], help="sr_metrics.json files (super-resolution tasks)")
    p.add_argument("--ratio-sweep", nargs="*", type=Path, default=[], help="metrics.json files of ratio-sweep points")

    add("check-params", help="validate params.yaml and print the tasks it defines")
    p = add("fingerprint", help="refresh the stages' code fingerprints (results/code/): what each stage runs")
    p.add_argument("tasks", nargs="*", help="tasks whose model code to fingerprint (default: params.yaml's tasks)")

    p = add("compare", help="compare tracked runs (MLflow) by task/method/stage/seed")
    p.add_argument("--task")
    p.add_argument("--method")
    p.add_argument("--stage")
    p.add_argument("--seed", type=_seed)
    p.add_argument("--over-seeds", action="store_true",
                   help="one row per stage/task/method: mean, std and count over the newest run of each seed")
    p.add_argument("--max-results", type=int, default=100)
    p.add_argument("--json", action="store_true", help="print runs as JSON (tags, params, metrics)")

    p = add("dvc-yaml", help="generate dvc.yaml from the Snakemake DAG")
    p.add_argument("--check", action="store_true", help="exit 1 if the committed dvc.yaml is stale")
    p.add_argument("--output", type=Path, default=Path("dvc.yaml"))
    p = add("verify", help="check every artifact's content hash (default: results/); exit 2 if any is damaged")
    p.add_argument("paths", nargs="*", type=Path, default=[Path("results")], help="files or folders to check")
    add("dvc-commit", help="record in dvc.lock every stage Snakemake considers current (run after Snakemake)")
    return parser


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "check-params":
        params = load_params(args.params)
        print(f"{args.params}: valid; tasks {params.tasks}; methods {params.methods}")
        return 0
    if args.command == "fingerprint":
        from cimflow.fingerprint import refresh_all, task_models

        params = load_params(args.params)
        written = refresh_all(task_models(params, args.tasks or params.tasks, args.params))
        print(f"fingerprints: {len(written)} rewritten" + "".join(f"\n  {w}" for w in written))
        return 0
    if args.command == "compare":
        from cimflow.compare import compare

        return compare(args.task, args.method, args.stage, args.seed, args.max_results, args.json, args.over_seeds)
    if args.command == "dvc-yaml":
        from cimflow.dvcgen import write_or_check

        return write_or_check(args.output, args.check)
    if args.command == "verify":
        from cimflow.verify import verify

        checked, problems = verify(args.paths)
        for problem in problems:
            print(problem, file=sys.stderr)
        print(f"verify: {checked} artifacts checked, {len(problems)} damaged")
        return 2 if problems else 0
    if args.command == "dvc-commit":
        from cimflow.dvclock import commit_current

        committed = commit_current()
        if committed is None:
            print("dvc.lock not recorded: this folder is not a git repository with DVC (.dvc/)", file=sys.stderr)
        else:
            print(f"dvc.lock: {len(committed)} stages recorded as Snakemake finished them")
        return 0
    if args.command == "report":
        from cimflow.stages import report

        report.run(args.metrics, args.params, args.sr, args.ratio_sweep)
        return 0
    if args.command in SR_TRAINING:
        from cimflow.stages import sr

        getattr(sr, SR_TRAINING[args.command])(args.task, args.method, args.seed, args.params)
        return 0
    if args.command in SR_CHIP:
        from cimflow.stages import sr_chip

        getattr(sr_chip, SR_CHIP[args.command])(args.task, args.method, args.seed, args.params)
        return 0
    if args.command in ("sweep_prune", "evaluate_sweep"):
        from cimflow.stages import compress, evaluate

        stage = compress if args.command == "sweep_prune" else evaluate
        stage.run_sweep(args.task, args.method, args.seed, args.target, args.params)
        return 0
    if args.command in COMPRESSION_STAGES:
        from cimflow.stages import compress

        compress.run(args.command, args.task, args.method, args.seed, args.params)
        return 0
    if args.command in ADAPTATION_STAGES:
        from cimflow.stages import adapt

        adapt.run(args.command, args.task, args.method, args.seed, args.params)
        return 0
    if args.command == "prepare_target":
        from cimflow.stages import prepare

        prepare.run_target(args.task, args.params)
        return 0
    from importlib import import_module

    stage = import_module(f"cimflow.stages.{args.command}")
    if args.command == "calibrate":
        stage.run(args.params)
    elif args.command == "prepare":
        stage.run(args.task, args.params)
    else:
        stage.run(args.task, args.method, args.seed, args.params)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    log = None
    if args.log:
        args.log.parent.mkdir(parents=True, exist_ok=True)
        log = open(args.log, "w")  # noqa: SIM115 - closed below
        sys.stdout, sys.stderr = _Tee(sys.stdout, log), _Tee(sys.stderr, log)
    try:
        return _dispatch(args)
    except CimflowError as exc:
        print(f"cimflow {args.command}: error: {exc}", file=sys.stderr)
        return 2
    finally:
        if log is not None:
            sys.stdout, sys.stderr = sys.stdout.stream, sys.stderr.stream
            log.close()


def entry() -> None:
    """The `cimflow` command. After an error it exits without interpreter teardown: a stage
    that stops early (a damaged input found right after reading it) sometimes aborted in a
    native library's thread-pool teardown (status 134, "terminate called without an active
    exception"), hiding the status 2 its message promises; the message and log are written
    and flushed first, and nothing else is pending then."""
    code = main()
    if code:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":
    entry()
