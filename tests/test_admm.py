"""ADMM pruning/quantization and the magnitude baseline: exact projections, feasibility, convergence."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pydantic import ValidationError
from torch import nn

from cimflow.compress.admm.solver import (
    AdmmPruneParams,
    AdmmQuantizeParams,
    HoldWeights,
    PhaseTrainer,
    admm_prune,
    admm_quantize,
    constrained_layers,
)
from cimflow.compress.admm.magnitude import magnitude_prune
from cimflow.compress.admm.projections import (
    dequantize,
    fit_scale,
    kept_count,
    level_count,
    nearest_codes,
    prune_mask,
    quantize,
    quantize_projection,
    top_k_mask,
)
from cimflow.compress.admm.sweep import overall_ratio, rescale, sweep_schedule
from cimflow.errors import ParamsError
from cimflow.params.train import TrainParams
from cimflow.data.digits import load_digits
from cimflow.data.split import Split
from cimflow.models import build_model
from cimflow.preprocess import Preprocessor
from cimflow.shrink import shrink
from cimflow.train import seed_everything
from conftest import LENET5, ROOT, run

INPUT = 16  # smallest LeNet-5 input: keeps every training run well under a second
LAYERS = ("conv1", "conv2", "fc1", "fc2")
STEPS = [{"conv1": 0.3, "conv2": 0.5, "fc1": 0.7, "fc2": 0.5}, {"conv1": 0.5, "conv2": 0.8, "fc1": 0.9, "fc2": 0.7}]
BITS = {"conv1": 1, "conv2": 3, "fc1": 2, "fc2": 3}


@pytest.fixture(scope="module", autouse=True)
def single_thread():
    """One thread for every run here (float sums depend on it; two threads crawl on a shared machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def prune_params(**overrides) -> AdmmPruneParams:
    raw = {
        "granularity": "unstructured",
        "admm": {"periods": 4, "period_epochs": 1, "lr": 0.01, "rho": 4.0, "rho_growth": 1.5},
        "retrain": {"epochs": 1, "lr": 0.01},
        "steps": [{"ratios": ratios} for ratios in STEPS],
    }
    return AdmmPruneParams.model_validate(raw | overrides)


def quantize_params(**overrides) -> AdmmQuantizeParams:
    raw = {
        "bits": BITS,
        "admm": {"periods": 2, "period_epochs": 1, "lr": 0.01, "rho": 1.0, "rho_growth": 1.3},
        "freeze": {"fractions": [0.5, 1.0], "epochs": 1, "lr": 0.01},
    }
    return AdmmQuantizeParams.model_validate(raw | overrides)


# -- projections ---------------------------------------------------------------------------


def test_top_k_keeps_exactly_k_and_breaks_ties_by_index():
    scores = torch.tensor([1.0, 3.0, 3.0, 3.0, 2.0, 3.0])
    assert top_k_mask(scores, 2).tolist() == [False, True, True, False, False, False]
    flat = torch.ones(7, 7)
    assert int(prune_mask(flat, 0.5, "unstructured", flat > 0).sum()) == kept_count(49, 0.5)


@pytest.mark.parametrize("ratio", [0.0, 0.3, 0.9, 0.997])
@pytest.mark.parametrize("shape", [(20, 1, 5, 5), (500, 800), (10, 500)])
def test_unstructured_pruning_keeps_exactly_the_largest(shape, ratio):
    # Rounded weights create many ties at the threshold.
    weight = torch.round(torch.randn(shape, generator=torch.Generator().manual_seed(0)) * 8) / 8
    keep = prune_mask(weight, ratio, "unstructured", torch.ones_like(weight, dtype=torch.bool))
    assert int(keep.sum()) == kept_count(weight.numel(), ratio)
    if not keep.all():
        assert weight[keep].abs().min() >= weight[~keep].abs().max()


def test_pruning_searches_only_allowed_entries():
    weight = torch.randn(50, 40, generator=torch.Generator().manual_seed(1))
    allowed = weight.abs() < 1.0  # the largest entries were pruned by an earlier step
    keep = prune_mask(weight, 0.9, "unstructured", allowed)
    assert int(keep.sum()) == kept_count(weight.numel(), 0.9)
    assert not (keep & ~allowed).any()


@pytest.mark.parametrize("shape", [(16, 8, 3, 3), (64, 30)])
def test_filter_pruning_keeps_exactly_the_strongest_whole_filters(shape):
    weight = torch.randn(shape, generator=torch.Generator().manual_seed(2))
    keep = prune_mask(weight, 0.75, "filter", torch.ones_like(weight, dtype=torch.bool))
    rows = keep.flatten(1)
    kept_rows = rows.all(dim=1)
    assert (rows.all(dim=1) | ~rows.any(dim=1)).all()  # each filter kept or dropped whole
    assert int(kept_rows.sum()) == kept_count(shape[0], 0.75)
    norms = weight.flatten(1).norm(dim=1)
    assert norms[kept_rows].min() >= norms[~kept_rows].max()


@pytest.mark.parametrize("bits", [2, 3, 4, 8])
def test_quantized_values_lie_on_the_level_set_and_pruned_stay_zero(bits):
    weight = torch.randn(30, 40, generator=torch.Generator().manual_seed(3))
    allowed = torch.rand(30, 40, generator=torch.Generator().manual_seed(4)) < 0.3
    codes, scale = quantize(weight, bits, allowed)
    levels = level_count(bits)
    assert codes.dtype == torch.int8
    assert (codes[~allowed] == 0).all()
    assert (codes[allowed].abs() >= 1).all() and (codes.abs() <= levels).all()
    projected = quantize_projection(weight, bits, allowed)
    assert torch.equal(projected, dequantize(codes, scale))
    level_set = dequantize(torch.arange(-levels, levels + 1, dtype=torch.int8), scale)
    assert torch.isin(projected, level_set).all()


def test_binarized_layer_has_exactly_one_magnitude():
    weight = torch.randn(20, 1, 5, 5, generator=torch.Generator().manual_seed(5))
    projected = quantize_projection(weight, 1, torch.ones_like(weight, dtype=torch.bool))
    assert torch.unique(projected.abs()).numel() == 1
    assert torch.equal(torch.sign(projected), torch.sign(weight))
    assert float(projected.abs()[0, 0, 0, 0]) == pytest.approx(float(weight.abs().mean()), rel=1e-5)


@pytest.mark.parametrize("bits", [1, 2, 3, 4])
def test_scale_search_beats_the_max_based_scale(bits):
    values = torch.randn(4000, generator=torch.Generator().manual_seed(6))
    levels = level_count(bits)

    def error(scale: float) -> float:
        return float((values - dequantize(nearest_codes(values, scale, levels), scale)).pow(2).sum())

    assert error(fit_scale(values, levels)) < error(float(values.abs().max()) / levels)


# -- parameters ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("build", "field"),
    [
        (lambda: prune_params(steps=[{"ratios": {"fc1": 1.0}}]), "steps.0.ratios.fc1"),
        (lambda: prune_params(steps=[{"ratios": {"fc1": -0.1}}]), "steps.0.ratios.fc1"),
        (lambda: prune_params(steps=[]), "steps"),
        (lambda: prune_params(steps=[{"ratios": {"fc1": 0.9}}, {"ratios": {"fc1": 0.5}}]), "steps[1].ratios.fc1"),
        (lambda: prune_params(steps=[{"ratios": {"fc1": 0.5}}, {"ratios": {"fc2": 0.6}}]), "steps[1]"),
        (lambda: prune_params(granularity="column"), "granularity"),
        (lambda: quantize_params(bits={"fc1": 0}), "bits.fc1"),
        (lambda: quantize_params(freeze={"fractions": [0.5, 0.9], "epochs": 1, "lr": 0.01}), "fractions"),
        (lambda: quantize_params(admm={"periods": 2, "period_epochs": 1, "lr": 0.01, "rho": 0.0,
                                       "rho_growth": 1.3}), "admm.rho"),
    ],
)
def test_bad_settings_fail_naming_the_field(build, field):
    with pytest.raises(ValidationError) as info:
        build()
    assert field in str(info.value)


def test_unknown_layer_fails_listing_the_valid_ones():
    with pytest.raises(ParamsError, match="'fc3'.*conv1, conv2, fc1, fc2"):
        constrained_layers(build_model("lenet5", 1, 10, INPUT), ["fc1", "fc3"])


# -- training ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def data():
    train_split, test_split = load_digits(0.25, 0)
    small = Split(train_split.images[:512], train_split.labels[:512], train_split.class_names)
    return small, test_split, Preprocessor.fit(small.images, INPUT)


@pytest.fixture(scope="module")
def base() -> TrainParams:
    return TrainParams(model=LENET5, input_size=INPUT, epochs=1, batch_size=64, lr=0.02, momentum=0.9,
                       weight_decay=5e-4, schedule="cosine", warmup_epochs=0, crop_padding=2, hflip=False)


def pretrained(data, base) -> nn.Module:
    seed_everything(0)
    model = build_model("lenet5", 1, 10, INPUT)
    PhaseTrainer(model, *data, base, seed=0, device=torch.device("cpu")).train(4, 0.02, [])
    return model


def run_admm(data, base):
    model = pretrained(data, base)
    pruned = admm_prune(model, *data, base, prune_params(), seed=0, device=torch.device("cpu"))
    quantized = admm_quantize(model, *data, base, quantize_params(), seed=0, masks=pruned.masks,
                              device=torch.device("cpu"))
    return model, pruned, quantized


@pytest.fixture(scope="module")
def compressed(data, base):
    return run_admm(data, base)


def test_final_sparsity_equals_each_layer_target(compressed):
    model, pruned, _ = compressed
    retrained = [r for r in pruned.rows if r["phase"] == "retrain" and r["step"] == len(STEPS)]
    for name in LAYERS:
        weight = getattr(model, name).weight.detach()
        mask = pruned.masks[name]
        assert mask.dtype == np.bool_ and mask.shape == tuple(weight.shape)
        assert int(mask.sum()) == kept_count(weight.numel(), STEPS[-1][name])
        row = next(r for r in retrained if r["layer"] == name)
        assert row["nonzeros"] == int(mask.sum()) and row["primal_residual"] == 0.0


def test_admm_primal_residual_shrinks_over_periods(compressed):
    _, pruned, _ = compressed
    for step in range(1, len(STEPS) + 1):
        for name in LAYERS:
            gaps = [r["primal_residual"] for r in pruned.rows
                    if r["phase"] == "admm" and r["step"] == step and r["layer"] == name]
            assert len(gaps) == prune_params().admm.periods
            assert gaps[-1] < 0.5 * gaps[0], (step, name, gaps)


def test_quantized_model_is_codes_times_scale_on_the_pruned_support(compressed):
    model, pruned, quantized = compressed
    for name in LAYERS:
        weight = getattr(model, name).weight.detach()
        codes = quantized.codes[name]
        assert codes.dtype == np.int8 and np.abs(codes).max() <= level_count(BITS[name])
        assert torch.equal(weight, dequantize(torch.from_numpy(codes), quantized.scales[name]))
        assert np.array_equal(codes != 0, pruned.masks[name])  # pruned stay 0, kept never snap to 0
    assert torch.unique(model.conv1.weight.abs()[model.conv1.weight != 0]).numel() == 1  # 1 bit: binary


def test_same_seed_gives_identical_masks_and_weights(data, base, compressed):
    model, pruned, quantized = compressed
    model_b, pruned_b, quantized_b = run_admm(data, base)
    for name in LAYERS:
        assert np.array_equal(pruned.masks[name], pruned_b.masks[name])
        assert np.array_equal(quantized.codes[name], quantized_b.codes[name])
    for (key, a), b in zip(model.state_dict().items(), model_b.state_dict().values(), strict=True):
        assert torch.equal(a, b), key


def test_held_weights_stay_exact_through_momentum_and_weight_decay(data, base):
    model = pretrained(data, base)
    layers = constrained_layers(model, ["fc1"])
    trainable = torch.rand(model.fc1.weight.shape, generator=torch.Generator().manual_seed(7)) < 0.5
    with torch.no_grad():
        model.fc1.weight[~trainable & (torch.arange(model.fc1.weight.shape[1]) % 2 == 0)] = 0.0
    before = model.fc1.weight.detach().clone()  # held entries: zeros (pruned) and values (frozen levels)
    heavy = base.model_copy(update={"weight_decay": 0.1, "momentum": 0.99})
    PhaseTrainer(model, *data, heavy, seed=0, device=torch.device("cpu")).train(2, 0.05, [
        HoldWeights(layers, {"fc1": trainable})])
    after = model.fc1.weight.detach()
    assert torch.equal(after[~trainable], before[~trainable])
    assert not torch.equal(after[trainable], before[trainable])


@pytest.mark.parametrize("schedule", ["one_shot", "iterative"])
def test_magnitude_baseline_meets_targets_within_admm_epoch_budget(data, base, compressed, schedule):
    _, admm_result, _ = compressed
    model = pretrained(data, base)
    result = magnitude_prune(model, *data, base, prune_params(), seed=0, schedule=schedule,
                             device=torch.device("cpu"))
    for name in LAYERS:
        assert int(result.masks[name].sum()) == kept_count(result.masks[name].size, STEPS[-1][name])
        assert int(torch.count_nonzero(getattr(model, name).weight)) == int(result.masks[name].sum())
    assert result.rows[-1]["epochs"] == admm_result.rows[-1]["epochs"]
    assert max(r["step"] for r in result.rows) == (len(STEPS) if schedule == "iterative" else 1)


# -- filter pruning and the ratio sweep ------------------------------------------------------

FILTER_STEPS = [{"conv1": 0.25, "conv2": 0.3, "fc1": 0.5}, {"conv1": 0.5, "conv2": 0.6, "fc1": 0.8}]


def test_filter_pruning_zeroes_whole_filters_with_their_bias_and_removes_them_exactly(data, base):
    model = pretrained(data, base)
    params = prune_params(granularity="filter", steps=[{"ratios": r} for r in FILTER_STEPS])
    result = admm_prune(model, *data, base, params, seed=0, device=torch.device("cpu"))
    keep = {}
    for name, ratio in FILTER_STEPS[-1].items():
        layer = getattr(model, name)
        kept = torch.as_tensor(result.masks[name]).flatten(1).any(dim=1)
        assert int(kept.sum()) == kept_count(kept.numel(), ratio)
        assert torch.equal(layer.weight[~kept], torch.zeros_like(layer.weight[~kept]))
        assert torch.equal(layer.bias[~kept], torch.zeros_like(layer.bias[~kept]))  # held at 0 through retraining
        keep[name] = kept
    small = shrink(model, keep)
    assert small.conv1.out_channels == kept_count(20, 0.5) and small.fc1.out_features == kept_count(500, 0.8)
    images = torch.randn(16, 1, INPUT, INPUT, generator=torch.Generator().manual_seed(3))
    model.eval(), small.eval()
    with torch.no_grad():
        torch.testing.assert_close(small(images), model(images), rtol=1e-5, atol=1e-5)


SIZES = {"conv1": 500, "conv2": 25000, "fc1": 400000, "fc2": 5000}  # LeNet-5 at 28x28
PAPER_STEPS = [{"conv1": 0.4, "conv2": 0.7, "fc1": 0.9, "fc2": 0.6},  # params.yaml's 246x schedule
               {"conv1": 0.55, "conv2": 0.85, "fc1": 0.97, "fc2": 0.8},
               {"conv1": 0.65, "conv2": 0.92, "fc1": 0.995, "fc2": 0.9},
               {"conv1": 0.7, "conv2": 0.96, "fc1": 0.999, "fc2": 0.96}]


@pytest.mark.parametrize("target", [50, 100, 246, 400, 1000])
def test_sweep_schedule_reaches_each_target_with_the_profile_and_budget_of_prune(target):
    prune = prune_params(steps=[{"ratios": r} for r in PAPER_STEPS])
    schedule = sweep_schedule(prune, SIZES, target)
    reached = [overall_ratio(SIZES, step.ratios) for step in schedule.steps]
    assert target <= reached[-1] < target * 1.01  # the largest kept counts that still reach it
    assert reached == sorted(reached)
    for before, after in zip(schedule.steps, schedule.steps[1:]):  # progressive: no layer loosens
        assert all(after.ratios[n] >= before.ratios[n] for n in SIZES)
    assert schedule.model_copy(update={"steps": prune.steps}) == prune  # only the ratios change
    final = schedule.steps[-1].ratios  # the profile: fc1 pruned hardest, conv1 least, as in prune
    assert sorted(SIZES, key=final.get) == sorted(SIZES, key=PAPER_STEPS[-1].get)


def test_sweep_schedule_at_prune_s_own_ratio_keeps_its_counts():
    prune = prune_params(steps=[{"ratios": r} for r in PAPER_STEPS])
    schedule = sweep_schedule(prune, SIZES, 246)
    for mine, theirs in zip(schedule.steps, prune.steps, strict=True):
        assert all(kept_count(SIZES[n], mine.ratios[n]) == kept_count(SIZES[n], theirs.ratios[n]) for n in SIZES)


def test_sweep_target_beyond_one_weight_per_layer_fails():
    with pytest.raises(ValueError, match="fewer weights than one per layer"):
        rescale(SIZES, PAPER_STEPS[-1], 200_000)


def test_a_sweep_point_outside_the_params_fails_naming_what_is_listed():
    result = run(["cimflow", "sweep_prune", "--task", "digits", "--seed", "0", "--method", "admm_prune",
                  "--target", "77"], cwd=ROOT)
    assert result.returncode == 2
    assert "admm.digits.sweep has methods" in result.stderr and "target 77" in result.stderr


TASK_SHAPES = {"digits": (1, 10), "mnist": (1, 10), "usps": (1, 10), "cifar10": (3, 10)}  # in_channels, classes


@pytest.mark.parametrize("task", sorted(TASK_SHAPES))
def test_every_admm_schedule_names_layers_of_its_task_s_network(task):
    """A misspelt layer would fail only when the stage runs (for cifar10, on a GPU)."""
    from cimflow.config import load_params
    from cimflow.shrink import channel_chains

    params = load_params(ROOT / "params.yaml")
    assert set(params.admm) == set(TASK_SHAPES)
    model = params.train[task].model.to_ref().build(*TASK_SHAPES[task], params.train[task].input_size)
    cfg = params.admm[task]
    for names in (*(s.ratios for s in cfg.prune.steps), cfg.quantize.bits, cfg.binarize.bits):
        constrained_layers(model, names)  # raises naming the valid layers
    prunable = {chain.layer for chain in channel_chains(model)}
    assert set(cfg.filter.steps[0].ratios) <= prunable  # admm_filter removes what it prunes
