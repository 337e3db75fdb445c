"""DYNASTY: BFP block quantizer, map generator, cost model, gradient quantization, determinism."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from pydantic import ValidationError
from torch import nn

from cimflow.compress.dynasty.hook import DynastyHook
from cimflow.compress.dynasty.blocks import BlockLayout, quantize_blocks, relative_errors
from cimflow.compress.dynasty.cost import CostMeter, LayerGeometry, OperandWidths, width_products
from cimflow.compress.dynasty.maps import BitWidthMapGenerator
from cimflow.compress.dynasty.params import BudgetTarget, CostParams, DynastyParams, StabilityParams, ThresholdTarget
from cimflow.params.train import TrainParams
from cimflow.data.digits import load_digits
from cimflow.models import build_model
from cimflow.preprocess import Preprocessor
from cimflow.train import TrainState, seed_everything, train
from conftest import LENET5

CANDIDATES = (2, 4, 6, 8)
RAW_PARAMS = {
    "block_size": 16,
    "candidate_bits": list(CANDIDATES),
    "min_bits": {"weight": 2, "activation": 2, "gradient": 2},
    "widest_mac_share": 0.0,
    "stochastic_gradient_rounding": True,
    "target": {"mode": "budget", "average_bits": 4.0, "ramp_bits": 0.0},
    "refresh_interval": 2,
    "hysteresis": 2,
    "warmup_epochs": 0,
    "stability": {"loss_ema_decay": 0.9, "divergence_tolerance": 0.1, "stall_patience": 3,
                  "min_improvement": 0.01, "tighten_factor": 4.0, "max_level": 3},
    "cost": {"baseline_bits": 8, "exponent_bits": 8, "mac_energy_pj": 0.2, "memory_energy_pj_per_bit": 0.1,
             "brick_bits": 2},
}


def _params(**overrides) -> DynastyParams:
    return DynastyParams.model_validate(RAW_PARAMS | overrides)


# ---------------------------------------------------------------- block quantizer


@pytest.mark.parametrize("bits", [2, 3, 4, 6, 8])
@pytest.mark.parametrize("stochastic", [False, True])
def test_bfp_values_lie_on_each_widths_grid(bits, stochastic):
    gen = torch.Generator().manual_seed(0)
    blocks = torch.randn(3, 50, 16, generator=gen) * torch.rand(3, 50, 1, generator=gen) * 10
    noise = torch.rand(blocks.shape, generator=gen) if stochastic else None
    q = quantize_blocks(blocks, torch.tensor(float(bits)), noise)
    step = 2.0 ** (torch.floor(torch.log2(blocks.abs().amax(-1, keepdim=True))) + 2 - bits)
    codes = q / step
    assert torch.equal(codes, torch.round(codes))
    assert codes.abs().max() <= 2 ** (bits - 1) - 1
    assert codes.abs().amax(-1).min() >= 2 ** (bits - 2)  # each block's largest entry keeps m-1 bits


def test_bfp_error_falls_as_bits_rise_and_matches_closed_form_at_8_bits():
    blocks = torch.randn(3, 4000, 16, generator=torch.Generator().manual_seed(1))
    widths = (2, 3, 4, 5, 6, 8)
    errors = relative_errors(blocks, widths)
    assert torch.all(errors.mean(0)[1:] < errors.mean(0)[:-1])
    for i, m in enumerate(widths):  # the analytics measure exactly what the quantizer does
        noise = (quantize_blocks(blocks, torch.tensor(float(m))) - blocks).pow(2).sum((0, 2))
        assert torch.allclose(errors[:, i], (noise / blocks.pow(2).sum((0, 2))).double(), rtol=1e-4)
    blocks = blocks[:1]
    step = 2.0 ** (torch.floor(torch.log2(blocks.abs().amax(-1))) + 2 - 8)
    closed_form = (step**2 / 12 * 16).sum() / blocks.pow(2).sum()  # uniform rounding noise, no clipping
    assert float((relative_errors(blocks, (8,)) * blocks.pow(2).sum((0, 2))[:, None]).sum()
                 / blocks.pow(2).sum()) == pytest.approx(float(closed_form), rel=0.1)


def test_blocks_below_the_exponent_range_flush_to_zero_without_nans():
    blocks = torch.tensor([[[1e-44] * 16, [1e-30] * 16]])
    q = quantize_blocks(blocks, torch.tensor(8.0))
    assert torch.equal(q[0, 0], torch.zeros(16)) and torch.allclose(q[0, 1], blocks[0, 1], rtol=1e-2)
    assert torch.isfinite(relative_errors(blocks, CANDIDATES)).all()


def test_stochastic_rounding_is_unbiased():
    x = torch.full((1, 1, 16), 0.3)
    x[0, 0, 0] = 1.0  # exponent 0: step 2^-2 at 4 bits, 0.3 lies between grid points 0.25 and 0.5
    draws = torch.rand(20000, 1, 16, generator=torch.Generator().manual_seed(2))
    q = quantize_blocks(x.expand(20000, 1, 16), torch.tensor(4.0), draws)
    assert set(q[:, 0, 1].unique().tolist()) == {0.25, 0.5}
    assert float(q[:, 0, 1].mean()) == pytest.approx(0.3, abs=0.005)


@pytest.mark.parametrize(("shape", "per_sample"), [((5, 20, 12, 12), True), ((50, 20, 5, 5), False),
                                                   ((5, 500), True), ((10, 37), False)])
def test_block_layout_round_trips_and_blocks_follow_the_reduction_axis(shape, per_sample):
    t = torch.randn(shape)
    layout = BlockLayout(tuple(shape[1:]) if per_sample else shape, 16, per_sample)
    blocks = layout.to_blocks(t)
    assert blocks.shape == (shape[0] if per_sample else 1, layout.num_blocks, 16)
    assert torch.equal(layout.from_blocks(blocks), t)
    assert float(layout.block_sizes().sum()) == math.prod(layout.item_shape)
    if len(shape) == 4:  # channel-last: a row starts with the channels of its first pixel (kernel tap)
        assert torch.equal(blocks[0, 0], t[0, :16, 0, 0])
    index = torch.arange(layout.num_blocks, dtype=torch.float64)
    widths = layout.expand(index)
    assert widths.shape == layout.item_shape
    assert torch.equal(layout.to_blocks(widths[None] if per_sample else widths).amax(-1)[0], index)


def test_params_errors_name_the_field():
    with pytest.raises(ValidationError, match="candidate_bits must be strictly increasing"):
        _params(candidate_bits=[4, 2, 8])
    with pytest.raises(ValidationError, match=r"target.average_bits \(9.0\)"):
        _params(target={"mode": "budget", "average_bits": 9.0, "ramp_bits": 0.0})
    with pytest.raises(ValidationError, match=r"target.ramp_bits \(2.5\)"):
        _params(target={"mode": "budget", "average_bits": 4.0, "ramp_bits": 2.5})
    with pytest.raises(ValidationError, match="min_bits.gradient"):
        _params(min_bits={"weight": 2, "activation": 2, "gradient": 12})
    with pytest.raises(ValidationError, match="block_size"):
        _params(block_size=1)
    with pytest.raises(ValidationError, match="widest_mac_share"):
        _params(widest_mac_share=1.0)
    with pytest.raises(ValidationError, match="refresh_interval"):
        _params(refresh_interval=True)


# ---------------------------------------------------------------- map generator


def _sensitivities(n: int, seed: int) -> np.ndarray:
    """Decreasing in width by 16x per 2 bits, with a per-block level spread over 3 decades."""
    rng = np.random.default_rng(seed)
    level = 10 ** rng.uniform(-3, 0, n)
    return level[:, None] * 16.0 ** -np.arange(len(CANDIDATES))[None, :]


def _generator(target, hysteresis: int = 2, n: int = 500, weights: np.ndarray | None = None,
               feedback: bool = False) -> BitWidthMapGenerator:
    """Without ``feedback`` the stability level is pinned at 0 (max_level 0)."""
    stability = _params().stability
    if not feedback:
        stability = StabilityParams.model_validate(stability.model_dump() | {"max_level": 0})
    weights = np.ones(n) if weights is None else weights
    return BitWidthMapGenerator(CANDIDATES, target, hysteresis, stability, weights, np.full(n, 2))


def test_budget_is_met_with_the_mac_weighted_mean():
    weights = np.random.default_rng(3).uniform(0.1, 10, 500)
    gen = _generator(_params().target, weights=weights)
    sensitivity = _sensitivities(500, 0)
    for _ in range(3):
        bits = gen.update(sensitivity, loss_ema=1.0, progress=0.5)
    mean = weights @ bits / weights.sum()
    assert 3.8 <= mean <= 4.0
    assert len(np.unique(bits)) > 1  # a real mix, not one width everywhere


def test_a_ramped_budget_is_met_at_every_point_of_training():
    target = BudgetTarget(mode="budget", average_bits=4.0, ramp_bits=0.5)
    gen = _generator(target, hysteresis=1)
    sensitivity = _sensitivities(500, 0)
    means = []
    for progress in np.linspace(0.0, 1.0, 11):
        gen.update(sensitivity, 1.0, float(progress))
        means.append(gen.mean_bits())
        assert target.at(progress) - 0.2 <= means[-1] <= target.at(progress)
    assert np.all(np.diff(means) >= 0) and means[0] < 3.7 and means[-1] > 4.3
    assert np.mean([target.at(p) for p in np.linspace(0.0, 1.0, 11)]) == pytest.approx(4.0)


def test_hysteresis_keeps_a_constant_sensitivity_map_constant():
    gen = _generator(_params().target, hysteresis=2)
    sensitivity = _sensitivities(500, 1)
    maps = [gen.update(sensitivity, 1.0, 0.5).copy() for _ in range(6)]
    assert all(np.array_equal(m, maps[0]) for m in maps) and maps[0].mean() < 8


def test_hysteresis_stops_a_block_flapping_around_the_threshold():
    def run(hysteresis: int) -> list[int]:
        gen = _generator(ThresholdTarget(mode="threshold", max_sensitivity=1e-2), hysteresis, n=1)
        out = []
        for i in range(8):  # at 4 bits the block sits just above, then just below, the threshold
            at_four = 1.1e-2 if i % 2 == 0 else 0.9e-2
            out.append(int(gen.update(np.array([[1.0, at_four, 1e-4, 1e-6]]), 1.0, 0.5)[0]))
        return out

    assert run(hysteresis=1) == [6, 4, 6, 4, 6, 4, 6, 4]
    assert run(hysteresis=2) == [6, 6, 6, 6, 6, 6, 6, 6]  # the warm-up map gives way at once, then no flapping


def test_diverging_loss_raises_precision_and_recovery_lowers_it():
    gen = _generator(_params().target, hysteresis=1, feedback=True)
    sensitivity = _sensitivities(500, 2)
    gen.update(sensitivity, 1.0, 0.5)
    steady = gen.mean_bits()
    for loss in (1.3, 1.7, 2.2):  # the loss EMA grows >10% per refresh
        gen.update(sensitivity, loss, 0.5)
    assert gen.level == 3 and gen.mean_bits() > steady + 1.0
    for loss in np.geomspace(2.0, 0.2, 12):  # steady progress: the level decays, back to the budget
        gen.update(sensitivity, float(loss), 0.5)
    assert gen.level == 0 and gen.mean_bits() <= 4.0


def test_stalled_loss_raises_precision():
    gen = _generator(_params().target, hysteresis=1, feedback=True)
    sensitivity = _sensitivities(500, 4)
    for _ in range(4):  # stall_patience = 3 refreshes without 1% improvement
        gen.update(sensitivity, 0.5, 0.5)
    assert gen.level == 1


# ---------------------------------------------------------------- cost model


def _linear_widths(bits: float) -> OperandWidths:
    """Linear 32 -> 4 at block size 16: 8 weight blocks, 2 activation and 1 gradient block per sample."""
    return OperandWidths(torch.full((4, 32), bits), torch.full((32,), bits), torch.full((4,), bits), 8, 2, 1)


LINEAR = LayerGeometry("fc", (4, 32), (32,), (4,), (), (), (), 1, computes_input_gradient=True)


def test_uniform_baseline_costs_exactly_one():
    meter = CostMeter([LINEAR], _params().cost, metadata_bits=0, block_size=16)
    meter.set_widths({"fc": _linear_widths(8.0)})
    meter.add_step(64)
    meter.add_step(3)
    total = meter.table().iloc[-1]
    assert total["relative_time"] == 1.0 and total["relative_energy"] == 1.0


def test_all_four_bit_maps_give_the_hand_computed_ratios():
    meter = CostMeter([LINEAR], CostParams(baseline_bits=8, exponent_bits=8, mac_energy_pj=0.2,
                                           memory_energy_pj_per_bit=0.1, brick_bits=2), metadata_bits=2,
                      block_size=16)
    meter.set_widths({"fc": _linear_widths(4.0)})
    meter.add_step(2)
    total = meter.table().iloc[-1]
    # 3 GEMMs x 2 samples x 128 MACs; width product 16 vs 64.
    assert total["macs"] == 768 and total["relative_time"] == 0.25
    # Bits per read (payload + blocks x (exponent 8 + width metadata 2)), baseline without metadata:
    # W 128*4 + 8*10 = 592 (1088); A 32*4 + 2*10 = 148 (272); G 4*4 + 10 = 26 (40) per sample.
    # forward W + 2A, grad_input W + 2G, grad_weight 2(G + A):
    moved = (592 + 2 * 148) + (592 + 2 * 26) + 2 * (26 + 148)
    baseline = (1088 + 2 * 272) + (1088 + 2 * 40) + 2 * (40 + 272)
    assert (total["bits_moved"], total["baseline_bits_moved"]) == (moved, baseline) == (1880, 3424)
    energy = 0.2 * 768 * 16 / 64 + 0.1 * 1880
    baseline_energy = 0.2 * 768 + 0.1 * 3424
    assert total["relative_energy"] == pytest.approx(energy / baseline_energy)  # 226.4 / 496


def test_conv_width_products_equal_the_im2col_sum():
    gen = torch.Generator().manual_seed(5)
    geom = LayerGeometry("c", (6, 3, 3, 3), (3, 9, 9), (6, 5, 5), (2, 2), (1, 1), (1, 1), 1, True)
    w = torch.randint(2, 9, geom.weight_shape, generator=gen).double()
    a = torch.randint(2, 9, geom.input_shape, generator=gen).double()
    g = torch.randint(2, 9, geom.output_shape, generator=gen).double()
    cols = F.unfold(a[None], 3, padding=1, stride=2)[0]  # [C*9, L]; padding entries are 0
    valid = F.unfold(torch.ones_like(a)[None], 3, padding=1, stride=2)[0]
    wm, gm = w.reshape(6, -1), g.reshape(6, -1)
    expected = {
        "forward": float((wm @ cols).sum()),
        "grad_input": float(((gm.T @ wm).T * valid).sum()),
        "grad_weight": float((gm @ cols.T).sum()),
    }
    assert width_products(geom, w, a, g) == pytest.approx(expected, rel=1e-12)


# ---------------------------------------------------------------- hook on a network


def _install(model: nn.Module, hook: DynastyHook) -> TrainState:
    train_params = TrainParams(model=LENET5, input_size=28, epochs=1, batch_size=1, lr=0.1, momentum=0.0,
                               weight_decay=0.0, schedule="cosine", warmup_epochs=0, crop_padding=0, hflip=False)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    state = TrainState(model, optimizer, train_params, torch.device("cpu"), steps_per_epoch=1)
    hook.on_train_start(state)
    return state


def test_output_gradients_are_block_quantized_before_the_gradient_gemms():
    torch.manual_seed(0)
    layer = nn.Linear(40, 24)
    hook = DynastyHook(_params(stochastic_gradient_rounding=False), seed=0, fixed_bits=4)
    state = _install(nn.Sequential(layer), hook)
    x = torch.randn(1, 40)
    upstream = torch.randn(1, 24)  # dL/dy exactly, in fp32
    (layer(x) * upstream).sum().backward()
    g = layer.bias.grad  # = the quantized G for a batch of one
    layout = BlockLayout((24,), 16, True)
    expected_g = layout.from_blocks(quantize_blocks(layout.to_blocks(upstream), torch.tensor(4.0)))[0]
    assert torch.equal(g, expected_g) and not torch.allclose(g, upstream[0])
    x_layout = BlockLayout((40,), 16, True)
    a_q = x_layout.from_blocks(quantize_blocks(x_layout.to_blocks(x), torch.tensor(4.0)))
    assert torch.allclose(layer.parametrizations.weight.original.grad, expected_g[:, None] * a_q, atol=0, rtol=1e-6)
    hook.on_train_end(state)
    assert "weight" in dict(layer.named_parameters()) and not hasattr(layer, "parametrizations")


def test_the_trained_network_keeps_its_weights_on_the_final_grid():
    torch.manual_seed(0)
    layer = nn.Linear(40, 24)
    hook = DynastyHook(_params(), seed=0, fixed_bits=4)
    state = _install(nn.Sequential(layer), hook)
    layer(torch.randn(2, 40)).sum().backward()
    master = layer.parametrizations.weight.original.detach().clone()
    hook.on_train_end(state)
    w_layout = BlockLayout(tuple(master.shape), 16, False)
    trained = w_layout.from_blocks(quantize_blocks(w_layout.to_blocks(master), torch.tensor(4.0)))
    assert torch.equal(layer.weight.detach(), trained) and not torch.equal(trained, master)
    assert isinstance(layer.weight, nn.Parameter)


@pytest.fixture(scope="module")
def digits():
    return load_digits(0.25, 0)


def _train_lenet(digits, hook: DynastyHook) -> nn.Module:
    train_split, test_split = digits
    torch.set_num_threads(1)
    seed_everything(0)
    model = build_model("lenet5", 1, 10, 28)
    params = TrainParams(model=LENET5, input_size=28, epochs=2, batch_size=64, lr=0.02, momentum=0.9,
                         weight_decay=5e-4, schedule="cosine", warmup_epochs=0, crop_padding=2, hflip=False)
    train(model, train_split.images[:320], train_split.labels[:320], test_split.images[:200],
          test_split.labels[:200], Preprocessor.fit(train_split.images, 28), params, seed=0, hooks=[hook],
          device=torch.device("cpu"))
    return model


def test_same_seed_gives_identical_weights_and_map_history(digits):
    runs = [(hook := DynastyHook(_params(warmup_epochs=1), seed=0), _train_lenet(digits, hook)) for _ in range(2)]
    (hook_a, model_a), (hook_b, model_b) = runs
    for (name, wa), wb in zip(model_a.state_dict().items(), model_b.state_dict().values(), strict=True):
        assert torch.equal(wa, wb), name
    history = hook_a.map_history()
    assert history.equals(hook_b.map_history())
    assert set(history["kind"]) == {"weight", "activation", "gradient"}
    # 5 steps per epoch: 8 bits through the warm-up epoch, refreshes after its last step, then every 2 steps.
    assert hook_a.refresh_log()["step"].tolist() == [5, 7, 9]
    assert sorted(history["step"].unique()) == [0, 5, 7, 9]
    assert history.loc[history["step"] == 0, "bits"].eq(8).all()
    assert history.loc[history["step"] > 0, "bits"].mean() < 8  # the maps did move off 8 bits
    assert hook_a.summary()["modeled_speedup"] > 1.0


@pytest.mark.parametrize(("share", "pinned"), [(0.01, ["fc2"]), (0.15, ["conv1", "fc2"])])
def test_layers_with_a_small_mac_share_keep_the_widest_width(share, pinned):
    torch.manual_seed(0)  # LeNet-5's forward MACs: conv1 12.6%, conv2 69.8%, fc1 17.4%, fc2 0.2%
    model = build_model("lenet5", 1, 10, 28)
    hook = DynastyHook(_params(refresh_interval=1, hysteresis=1, widest_mac_share=share), seed=0)
    state = _install(model, hook)
    x, y = torch.randn(4, 1, 28, 28), torch.tensor([1, 7, 3, 0])
    logits = model(x)
    hook.extra_loss(state, logits, y)
    F.cross_entropy(logits, y).backward()
    hook.after_step(state)
    mean_bits = hook.map_history().query("step == 1").groupby("layer", observed=True)["bits"].mean()
    assert (mean_bits[pinned] == 8).all()
    assert (mean_bits.drop(pinned) < 8).all()  # the others moved off the starting width


def test_uniform_baseline_hook_is_exactly_one_and_records_one_map(digits):
    hook = DynastyHook(_params(), seed=0, fixed_bits=8)
    _train_lenet(digits, hook)
    summary = hook.summary()
    assert summary["modeled_speedup"] == 1.0 and summary["modeled_energy_reduction"] == 1.0
    assert set(hook.map_history()["bits"]) == {8} and hook.refresh_log().empty
    table = hook.cost_table()
    assert set(table["phase"]) == {"forward", "grad_input", "grad_weight", "all"}
    assert not ((table["layer"] == "conv1") & (table["phase"] == "grad_input")).any()  # images get no gradient


def test_resnet20_trains_a_step_with_every_conv_quantized_and_metered():
    torch.manual_seed(0)
    model = build_model("resnet20", 3, 10, 32)
    hook = DynastyHook(_params(refresh_interval=1), seed=0)
    state = _install(model, hook)
    x, y = torch.randn(2, 3, 32, 32), torch.tensor([1, 7])
    logits = model(x)
    loss = F.cross_entropy(logits, y)
    hook.extra_loss(state, logits, y)
    loss.backward()
    state.optimizer.step()
    hook.after_step(state)
    table = hook.cost_table()
    layers = [n for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert len(layers) == 20 and set(table["layer"]) == {*layers, "total"}
    assert table.loc[table["phase"] == "grad_input", "layer"].tolist() == layers[1:]
    assert table.iloc[-1]["relative_time"] == 1.0  # the step ran on the initial 8-bit maps ...
    history = hook.map_history()
    assert history.loc[history["step"] == 1, "bits"].mean() < 8  # ... which its analytics then lowered
