"""DYNASTY's cost model: brick granularity, backward re-blocking, weight storage."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cimflow.compress.dynasty.hook import DynastyHook
from cimflow.compress.dynasty.cost import CostMeter, LayerGeometry, OperandWidths, macs_per_sample, width_products
from cimflow.compress.dynasty.params import CostParams, DynastyParams
from cimflow.params.train import TrainParams
from cimflow.train import TrainState
from test_dynasty import RAW_PARAMS as DYNASTY_PARAMS
from conftest import LENET5

COST = CostParams(baseline_bits=8, brick_bits=2, exponent_bits=8, mac_energy_pj=0.2, memory_energy_pj_per_bit=0.1)
# test_dynasty's parameters with a refresh every step and deterministic rounding.
RAW_PARAMS = DYNASTY_PARAMS | {"stochastic_gradient_rounding": False, "refresh_interval": 1, "hysteresis": 1,
                               "cost": COST.model_dump()}
LINEAR = LayerGeometry("fc", (4, 32), (32,), (4,), (), (), (), 1, computes_input_gradient=True)
CONV = LayerGeometry("conv", (6, 4, 3, 3), (8, 9, 9), (6, 5, 5), (2, 2), (1, 1), (1, 1), 2, True)  # 2 groups


def _uniform(geom: LayerGeometry, bits: float) -> OperandWidths:
    """Every entry at ``bits``; block counts as dynasty.blocks would cut them at block size 16."""
    shapes = (geom.weight_shape, geom.input_shape, geom.output_shape)
    return OperandWidths(*(torch.full(shape, bits, dtype=torch.float64) for shape in shapes), 8, 2, 1)


def _random_maps(geom: LayerGeometry, seed: int) -> tuple[torch.Tensor, ...]:
    gen = torch.Generator().manual_seed(seed)
    shapes = (geom.weight_shape, geom.input_shape, geom.output_shape)
    return tuple(torch.tensor([2.0, 3.0, 4.0, 6.0, 8.0])[torch.randint(0, 5, s, generator=gen)] for s in shapes)


def _total(geom: LayerGeometry, widths: OperandWidths, batch_sizes=(64, 3)):
    meter = CostMeter([geom], COST, metadata_bits=0, block_size=16)
    meter.set_widths({geom.name: widths})
    for batch in batch_sizes:
        meter.add_step(batch)
    return meter.table().iloc[-1]


# ---------------------------------------------------------------- brick granularity


@pytest.mark.parametrize("geom", [LINEAR, CONV], ids=["linear", "conv"])
def test_three_bit_bricks_cost_what_four_bits_cost_bit_exact(geom):
    three, four = _total(geom, _uniform(geom, 3.0)), _total(geom, _uniform(geom, 4.0))
    assert three["relative_time_brick"] == four["relative_time"] == 0.25
    assert three["compute_energy_pj_brick"] == four["compute_energy_pj"]
    assert three["relative_time"] == 9 / 64  # bit-exact keeps the 3-bit discount


@pytest.mark.parametrize("geom", [LINEAR, CONV], ids=["linear", "conv"])
def test_two_bit_operands_are_one_brick_each(geom):
    total = _total(geom, _uniform(geom, 2.0))
    assert total["relative_time_brick"] == (1 * 1) / (4 * 4)
    assert total["relative_time"] == (2 * 2) / (8 * 8)
    assert total["relative_energy_brick"] == pytest.approx(
        (0.2 * total["macs"] / 16 + total["memory_energy_pj"]) / total["baseline_energy_pj"])


@pytest.mark.parametrize("geom", [LINEAR, CONV], ids=["linear", "conv"])
def test_uniform_baseline_costs_exactly_one_under_both_granularities(geom):
    total = _total(geom, _uniform(geom, 8.0))
    for column in ("relative_time", "relative_energy", "relative_time_brick", "relative_energy_brick"):
        assert total[column] == 1.0, column


# ---------------------------------------------------------------- backward re-blocking


@pytest.mark.parametrize("geom", [LINEAR, CONV, LayerGeometry("c1", (20, 1, 5, 5), (1, 28, 28), (20, 24, 24),
                                                              (1, 1), (0, 0), (1, 1), 1, False)],
                         ids=["linear", "grouped-strided-padded-conv", "first-conv"])
def test_reblocked_backward_costs_at_least_the_entrywise_one(geom):
    maps = _random_maps(geom, 0)
    entrywise, reblocked = width_products(geom, *maps), width_products(geom, *maps, 16)
    assert reblocked["forward"] == entrywise["forward"]
    assert all(reblocked[p] >= entrywise[p] for p in geom.phases)
    assert reblocked["grad_weight" if geom.is_conv else "grad_input"] > entrywise[
        "grad_weight" if geom.is_conv else "grad_input"]
    ones = tuple(torch.ones_like(m) for m in maps)  # re-blocking neither adds nor drops MACs (padding stays free)
    assert width_products(geom, *ones, 16) == macs_per_sample(geom)


def test_reblocking_is_free_when_every_new_block_is_uniform():
    # Widths that vary only along the axes re-blocking does not mix: W by input channel
    # (grad_input re-blocks over output channels), A by channel and G by output channel
    # (grad_weight re-blocks over positions). The stored blocks themselves are not uniform.
    geom = LayerGeometry("conv", (32, 4, 3, 3), (4, 9, 9), (32, 9, 9), (1, 1), (1, 1), (1, 1), 1, True)
    w = torch.tensor([2.0, 4.0, 6.0, 8.0])[None, :, None, None].expand(geom.weight_shape)
    a = torch.tensor([8.0, 2.0, 3.0, 4.0])[:, None, None].expand(geom.input_shape)
    g = torch.arange(32.0)[:, None, None].remainder(7).add(2).expand(geom.output_shape)
    assert width_products(geom, w, a, g, 16) == width_products(geom, w, a, g)
    fc = LayerGeometry("fc", (32, 6), (6,), (32,), (), (), (), 1, True)
    w_fc = torch.tensor([2.0, 3, 4, 6, 8, 2]).expand(32, 6)  # by input: uniform over output channels
    a_fc, g_fc = torch.arange(6.0) + 2, torch.arange(32.0) % 7 + 2
    assert width_products(fc, w_fc, a_fc, g_fc, 16) == width_products(fc, w_fc, a_fc, g_fc)


def test_linear_grad_input_reblocks_the_weight_over_output_channels_by_hand():
    # W [4 out, 3 in] in blocks of 2 output channels per input column:
    # column 0 {2, 8} {2, 2} -> 8 8 2 2, column 1 {2, 2} {4, 2} -> 2 2 4 4, column 2 all 2.
    geom = LayerGeometry("fc", (4, 3), (3,), (4,), (), (), (), 1, True)
    w = torch.tensor([[2.0, 2, 2], [8, 2, 2], [2, 4, 2], [2, 2, 2]])
    a, g = torch.tensor([3.0, 4, 6]), torch.tensor([2.0, 4, 6, 8])
    reblocked, entrywise = width_products(geom, w, a, g, 2), width_products(geom, w, a, g)
    # sum_o g[o] * row sum of W': 2*12 + 4*12 + 6*8 + 8*8, entrywise 2*6 + 4*12 + 6*8 + 8*6.
    assert (reblocked["grad_input"], entrywise["grad_input"]) == (184, 156)
    assert reblocked["grad_weight"] == entrywise["grad_weight"] == 20 * 13  # one position per sample: no change
    assert reblocked["forward"] == entrywise["forward"] == float((w @ a).sum())


def test_conv_backward_reblocking_by_hand():
    # 1 input channel, 2 output channels, 1x2 kernel on a 1x3 image: 2 output positions; blocks of 2.
    geom = LayerGeometry("c", (2, 1, 1, 2), (1, 1, 3), (2, 1, 2), (1, 1), (0, 0), (1, 1), 1, True)
    w = torch.tensor([[2.0, 6.0], [4.0, 2.0]]).reshape(2, 1, 1, 2)  # [o, tap]
    a = torch.tensor([2.0, 3.0, 8.0]).reshape(1, 1, 3)
    g = torch.tensor([[2.0, 2.0], [4.0, 8.0]]).reshape(2, 1, 2)  # [o, position]
    reblocked, entrywise = width_products(geom, w, a, g, 2), width_products(geom, w, a, g)
    # grad_input: per input channel, runs of 2 over (tap, o): tap 0 {2, 4} -> 4, tap 1 {6, 2} -> 6.
    # sum_o (sum_p g) (sum_tap W'): 4*10 + 12*10; entrywise 4*(2+6) + 12*(4+2).
    assert (reblocked["grad_input"], entrywise["grad_input"]) == (160, 104)
    # grad_weight: positions re-blocked per row: G' o0 [2 2], o1 [8 8]; im2col(A) tap 0 [2 3] -> [3 3],
    # tap 1 [3 8] -> [8 8]. sum_p (sum_o G')(sum_tap A') = 2 * 10 * 11; entrywise 6*5 + 10*11.
    assert (reblocked["grad_weight"], entrywise["grad_weight"]) == (220, 140)


def _brute_force_backward(geom: LayerGeometry, w, a, g, block: int) -> dict[str, float]:
    """The re-blocking convention spelled out MAC by MAC (loops), for a tiny conv layer."""
    out, per_group, kh, kw = geom.weight_shape
    out_group = out // geom.groups
    (oh_n, ow_n), (s_h, s_w), (p_h, p_w), (d_h, d_w) = geom.output_shape[1:], geom.stride, geom.padding, geom.dilation

    def source(oh, ow, i, j):  # input position a MAC reads, or None in the padding
        ih, iw = oh * s_h - p_h + i * d_h, ow * s_w - p_w + j * d_w
        return (ih, iw) if 0 <= ih < geom.input_shape[1] and 0 <= iw < geom.input_shape[2] else None

    def w_reblocked(o, c, i, j):  # per input channel, runs over (tap, output channel of the group)
        run = ((i * kw + j) * out_group + o % out_group) // block
        members = [w[(o // out_group) * out_group + m % out_group, c, m // out_group // kw, m // out_group % kw]
                   for m in range(kh * kw * out_group) if m // block == run]
        return max(members)

    positions = [(oh, ow) for oh in range(oh_n) for ow in range(ow_n)]
    run_of = {pos: n // block for n, pos in enumerate(positions)}

    def g_reblocked(o, pos):
        return max(g[o, *q] for q in positions if run_of[q] == run_of[pos])

    def a_reblocked(c, i, j, pos):
        return max(a[c, *source(*q, i, j)] for q in positions if run_of[q] == run_of[pos] and source(*q, i, j))

    grad_input = grad_weight = 0.0
    for o in range(out):
        for c in range(per_group):
            channel = (o // out_group) * per_group + c
            for i in range(kh):
                for j in range(kw):
                    for pos in positions:
                        if source(*pos, i, j):
                            grad_input += g[o, *pos] * w_reblocked(o, c, i, j)
                            grad_weight += g_reblocked(o, pos) * a_reblocked(channel, i, j, pos)
    return {"grad_input": float(grad_input), "grad_weight": float(grad_weight)}


def test_grouped_strided_conv_reblocking_matches_the_convention_mac_by_mac():
    geom = LayerGeometry("c", (4, 2, 2, 3), (4, 5, 6), (4, 3, 2), (2, 2), (1, 0), (1, 1), 2, True)
    w, a, g = _random_maps(geom, 2)
    reblocked = width_products(geom, w, a, g, 3)  # runs of 3: ragged tails on every axis
    expected = _brute_force_backward(geom, w, a, g, 3)
    assert {p: reblocked[p] for p in expected} == expected


def test_the_table_charges_reblocked_products_and_records_entrywise_ones():
    maps = _random_maps(CONV, 1)
    total = _total(CONV, OperandWidths(*maps, 40, 10, 5), batch_sizes=(2,))
    charged, entrywise = width_products(CONV, *maps, 16), width_products(CONV, *maps)
    assert total["mac_bit_products"] == pytest.approx(2 * sum(charged.values()), rel=1e-12)
    assert total["entrywise_mac_bit_products"] == pytest.approx(2 * sum(entrywise.values()), rel=1e-12)
    bricks = tuple(torch.ceil(m / 2) for m in maps)
    assert total["mac_brick_products"] == pytest.approx(2 * sum(width_products(CONV, *bricks, 16).values()))
    assert total["relative_time"] == total["mac_bit_products"] / (64 * total["macs"])


# ---------------------------------------------------------------- the hook


def _hook_one_step(fixed_bits: int | None) -> tuple[DynastyHook, nn.Linear]:
    """A Linear 40 -> 24 trained one step (a refresh) by the hook, then handed back."""
    torch.manual_seed(0)
    layer = nn.Linear(40, 24)
    hook = DynastyHook(DynastyParams.model_validate(RAW_PARAMS), seed=0, fixed_bits=fixed_bits)
    train_params = TrainParams(model=LENET5, input_size=28, epochs=1, batch_size=4, lr=0.1, momentum=0.0,
                               weight_decay=0.0, schedule="cosine", warmup_epochs=0, crop_padding=0, hflip=False)
    state = TrainState(nn.Sequential(layer), torch.optim.SGD(layer.parameters(), lr=0.1), train_params,
                       torch.device("cpu"), steps_per_epoch=4)
    hook.on_train_start(state)
    x, y = torch.randn(4, 40), torch.tensor([1, 7, 3, 0])
    logits = state.model(x)
    hook.extra_loss(state, logits, y)
    F.cross_entropy(logits, y).backward()
    hook.after_step(state)
    hook.on_train_end(state)
    return hook, layer


def test_fixed_eight_bit_hook_summary_is_one_everywhere():
    summary = _hook_one_step(fixed_bits=8)[0].summary()
    for key in ("modeled_speedup", "modeled_energy_reduction", "modeled_speedup_brick",
                "modeled_energy_reduction_brick", "backward_reblock_time_ratio", "backward_reblock_time_ratio_brick"):
        assert summary[key] == 1.0, key
    assert summary["weight_storage_bytes"] == summary["weight_storage_bytes_baseline"]
    assert summary["weight_storage_bytes"] == (24 * 40 * 8 + 24 * 3 * 8 + 24 * 32) / 8


def test_weight_storage_of_a_hand_made_map():
    hook, _ = _hook_one_step(fixed_bits=None)
    weight = next(q for q in hook.quantizers if q.kind == "weight")
    assert weight.layout.num_blocks == 24 * 3  # rows of 40 in blocks of 16, 16, 8
    weight.set_bits(torch.tensor([2, 4, 8]).repeat(24).numpy())
    storage = hook.weight_storage()
    # payload 24 * (16*2 + 16*4 + 8*8) + 72 blocks x (exponent 8 + metadata 2) + 24 fp32 biases
    assert storage["weight_storage_bytes"] == (24 * 160 + 72 * 10 + 24 * 32) / 8 == 666
    assert storage["weight_storage_bytes_baseline"] == (24 * 40 * 8 + 72 * 8 + 24 * 32) / 8 == 1128
