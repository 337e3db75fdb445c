"""CimMacro: exact in ideal mode, backends identical, deterministic, zero weights skipped."""

from __future__ import annotations

import importlib

import numpy as np
import pytest
from test_cim_config import IDEAL, default_config

from cimflow.cim import ChipInstance, CimMacro, calibrate, kernels, simulator
from cimflow.cim import _kernels as baseline_kernels
from cimflow.cim.noise import normal_draws, stream_key

# 16-bit ADC with full scale 2**15: one LSB is one integer unit, and |partial sum| of
# codes in [-15, 15] over <= 128 rows is <= 28800 < 2**15 - 1, so every value is exact.
EXACT_BITS = 16
EXACT_FULL_SCALE = 2.0**15


def _codes(rng: np.random.Generator, shape: tuple[int, int], bound: int = 128) -> np.ndarray:
    return rng.integers(-bound, bound, shape).astype(np.int8)


def _ideal_macro(backend: str = "cython", **overrides: object) -> CimMacro:
    return CimMacro(default_config(**(IDEAL | {"adc_bits": EXACT_BITS} | overrides)), chip_seed=0, backend=backend)


@pytest.mark.parametrize("backend", ["cython", "numpy"])
@pytest.mark.parametrize("k", [1, 57, 128, 129, 300, 512])
def test_ideal_mode_is_bit_exact_integer_matmul(backend: str, k: int) -> None:
    rng = np.random.default_rng(k)
    x, w = _codes(rng, (200, k), 16), _codes(rng, (k, 24), 16)
    exact = x.astype(np.int64) @ w.astype(np.int64)
    macro = _ideal_macro(backend)
    signed, _ = macro.matmul(x, w, EXACT_FULL_SCALE, relu=False, noise=True, rng_seed=1)
    rectified, _ = macro.matmul(x, w, EXACT_FULL_SCALE, relu=True, noise=True, rng_seed=1)
    np.testing.assert_array_equal(signed, exact)
    np.testing.assert_array_equal(rectified, np.maximum(exact, 0))


def test_openblas_sgemm_fallback_is_exact(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without torch's MKL the kernels call scipy's OpenBLAS sgemm instead."""
    monkeypatch.setattr(simulator, "SGEMM", kernels._scipy_sgemm())
    rng = np.random.default_rng(2)
    x, w = _codes(rng, (300, 200), 16), _codes(rng, (200, 12), 16)
    for backend in ("cython", "numpy"):
        out, _ = _ideal_macro(backend).matmul(x, w, EXACT_FULL_SCALE, relu=True, noise=False, rng_seed=0)
        np.testing.assert_array_equal(out, np.maximum(x.astype(np.int64) @ w.astype(np.int64), 0))


def test_ideal_mode_is_exact_over_the_full_int8_range() -> None:
    rng = np.random.default_rng(3)
    x, w = _codes(rng, (500, 1)), _codes(rng, (1, 8))
    out, _ = _ideal_macro().matmul(x, w, EXACT_FULL_SCALE, relu=False, noise=False, rng_seed=0)
    np.testing.assert_array_equal(out, x.astype(np.int64) @ w.astype(np.int64))


def test_fused_relu_stops_negative_conversions_after_the_sign() -> None:
    rng = np.random.default_rng(4)
    x, w = _codes(rng, (300, 128), 16), _codes(rng, (128, 16), 16)
    exact = x.astype(np.int64) @ w.astype(np.int64)
    macro = _ideal_macro()
    fused, counts = macro.matmul(x, w, EXACT_FULL_SCALE, relu=True, noise=False, rng_seed=0)
    np.testing.assert_array_equal(fused, np.maximum(exact, 0))
    assert counts["conversions_sign_only"] == np.count_nonzero(exact < 0)
    assert counts["conversions_full"] == np.count_nonzero(exact >= 0)

    digital = _ideal_macro(fused_relu=False)
    unfused, counts = digital.matmul(x, w, EXACT_FULL_SCALE, relu=True, noise=False, rng_seed=0)
    np.testing.assert_array_equal(unfused, fused)
    assert counts["conversions_sign_only"] == 0


def test_split_layers_convert_signed_and_add_digitally() -> None:
    rng = np.random.default_rng(5)
    x, w = _codes(rng, (100, 300), 16), _codes(rng, (300, 8), 16)
    out, counts = _ideal_macro().matmul(x, w, EXACT_FULL_SCALE, relu=True, noise=False, rng_seed=0)
    np.testing.assert_array_equal(out, np.maximum(x.astype(np.int64) @ w.astype(np.int64), 0))
    assert counts["conversions_sign_only"] == 0
    assert counts["conversions_full"] == counts["accumulations"] == 100 * 3 * 8
    assert counts["cycles"] == 100 * 3 * 8  # one ADC: one column per cycle


def test_all_zero_weight_columns_and_segments_are_skipped() -> None:
    rng = np.random.default_rng(6)
    x, w = _codes(rng, (50, 256), 16), _codes(rng, (256, 6), 16)
    w[:, 1] = 0  # a pruned column: no conversion in either segment
    w[128:, 4] = 0  # its second segment is empty
    macro = _ideal_macro(adcs=2)
    out, counts = macro.matmul(x, w, EXACT_FULL_SCALE, relu=False, noise=True, rng_seed=0)
    np.testing.assert_array_equal(out, x.astype(np.int64) @ w.astype(np.int64))
    assert counts["conversions_full"] == 50 * (6 + 6 - 1 - 2)
    # Column groups of two ADCs: {0,1} {2,3} {4,5}; all active in segment 0 and 1.
    assert counts["cycles"] == 50 * (3 + 3)
    w[:, 0] = 0
    _, counts = macro.matmul(x, w, EXACT_FULL_SCALE, relu=False, noise=True, rng_seed=0)
    assert counts["cycles"] == 50 * (2 + 2)


def _kernel_builds() -> list[str]:
    builds = ["cimflow.cim._kernels"]
    builds += [
        f"cimflow.cim._kernels_{level.replace('-', '_')}"
        for level in ("x86-64-v3", "x86-64-v4")
        if baseline_kernels.cpu_supports(level)
    ]
    return builds


@pytest.mark.parametrize("build", _kernel_builds())
@pytest.mark.parametrize(("k", "relu"), [(96, True), (96, False), (200, True)])
@pytest.mark.parametrize("calibrated", [False, True])
def test_compiled_kernel_matches_numpy_reference(
    monkeypatch: pytest.MonkeyPatch, build: str, k: int, relu: bool, calibrated: bool
) -> None:
    """Every non-ideality on, noise on: same analog sums and draws give identical outputs."""
    monkeypatch.setattr(simulator, "compiled", importlib.import_module(build))
    config = default_config(adcs=4, adc_inl_lsb=3.0, charge_sharing_nonlinearity=4.0)
    tables = calibrate(config, 11) if calibrated else None
    rng = np.random.default_rng(k)
    x, w = _codes(rng, (700, k)), _codes(rng, (k, 10))
    w[:, 2] = 0
    full_scale = 3.0 * np.sqrt(min(k, 128)) * 74.0**2
    results = [
        CimMacro(config, 11, tables, backend).matmul(x, w, full_scale, relu, noise=True, rng_seed=9)
        for backend in ("cython", "numpy")
    ]
    np.testing.assert_array_equal(results[0][0], results[1][0])
    assert results[0][1] == results[1][1]


def test_chip_seed_fixes_every_static_error() -> None:
    config = default_config(adcs=3)
    first, again, other = ChipInstance(config, 5), ChipInstance(config, 5), ChipInstance(config, 6)
    for name in ("cap_error", "adc_offset_lsb", "adc_gain_error", "inl_coefficients", "sign_offset_lsb"):
        np.testing.assert_array_equal(getattr(first, name), getattr(again, name))
        assert not np.array_equal(getattr(first, name), getattr(other, name))
    # Each effect has its own stream: changing one magnitude leaves the others' draws alone.
    louder_inl = ChipInstance(default_config(adcs=3, adc_inl_lsb=2.0), 5)
    np.testing.assert_array_equal(louder_inl.cap_error, first.cap_error)
    np.testing.assert_array_equal(louder_inl.adc_offset_lsb, first.adc_offset_lsb)


def test_noise_seed_fixes_the_noisy_outputs() -> None:
    config = default_config()
    rng = np.random.default_rng(7)
    x, w = _codes(rng, (400, 128)), _codes(rng, (128, 12))
    macro = CimMacro(config, 2)
    run = [macro.matmul(x, w, 2.5e5, relu=False, noise=True, rng_seed=seed)[0] for seed in (1, 1, 2)]
    np.testing.assert_array_equal(run[0], run[1])
    assert not np.array_equal(run[0], run[2])
    quiet = CimMacro(config, 2).matmul(x, w, 2.5e5, relu=False, noise=False, rng_seed=1)[0]
    assert not np.array_equal(run[0], quiet)


def test_blocking_does_not_change_results(monkeypatch: pytest.MonkeyPatch) -> None:
    """Noise draws follow the conversion, not the block it is computed in."""
    config = default_config(cap_mismatch_sigma=0.0)  # integer analog sums: exact in any GEMM
    rng = np.random.default_rng(8)
    x, w = _codes(rng, (1000, 200)), _codes(rng, (200, 7))
    whole = CimMacro(config, 3).matmul(x, w, 3e5, relu=True, noise=True, rng_seed=4)
    monkeypatch.setattr(simulator, "BLOCK_INPUT_VALUES", 200 * 37)
    blocked = CimMacro(config, 3).matmul(x, w, 3e5, relu=True, noise=True, rng_seed=4)
    np.testing.assert_array_equal(whole[0], blocked[0])
    assert whole[1] == blocked[1]


def test_noise_draws_are_standard_normal() -> None:
    draws = normal_draws(stream_key(0), np.arange(400_000))
    assert abs(draws.mean()) < 0.01
    assert abs(draws.std() - 1.0) < 0.01
    assert np.abs(draws).max() < 4.4


def test_bad_calls_are_rejected() -> None:
    macro = _ideal_macro()
    x, w = np.zeros((4, 8), np.int8), np.ones((8, 3), np.int8)
    with pytest.raises(ValueError, match="int8"):
        macro.matmul(x.astype(np.int16), w, 1.0, relu=False, noise=False, rng_seed=0)
    with pytest.raises(ValueError, match="input length"):
        macro.matmul(x[:, :5], w, 1.0, relu=False, noise=False, rng_seed=0)
    with pytest.raises(ValueError, match="full_scale"):
        macro.matmul(x, w, 0.0, relu=False, noise=False, rng_seed=0)
    with pytest.raises(ValueError, match="different chip"):
        macro.matmul(x, CimMacro(macro.config, 1).map_weights(w), 1.0, relu=False, noise=False, rng_seed=0)
    with pytest.raises(ValueError, match="backend"):
        CimMacro(macro.config, 0, backend="cuda")  # type: ignore[arg-type]


@pytest.mark.parametrize("backend", ["cython", "numpy"])
@pytest.mark.parametrize("k", [129, 300, 512])
def test_analog_accumulation_is_exact_and_converts_once(backend: str, k: int) -> None:
    """Held segments are one conversion: ReLU fused, no digital additions, S-1 hold steps each."""
    rng = np.random.default_rng(20 + k)
    x, w = _codes(rng, (200, k), 16), _codes(rng, (k, 12), 16)
    exact = x.astype(np.int64) @ w.astype(np.int64)
    macro = _ideal_macro(backend)
    mapped = macro.map_weights(w, "balanced", "analog")
    out, counts = macro.matmul(x, mapped, EXACT_FULL_SCALE, relu=True, noise=True, rng_seed=3)
    np.testing.assert_array_equal(out, np.maximum(exact, 0))
    assert counts["conversions_sign_only"] == np.count_nonzero(exact < 0)
    assert counts["conversions_full"] + counts["conversions_sign_only"] == 200 * 12
    assert counts["accumulations"] == 0
    assert counts["hold_steps"] == 200 * 12 * (mapped.segments - 1)
    assert counts["cycles"] == 200 * 12 * mapped.segments  # every segment still takes its MAC cycle


def test_hold_steps_lose_charge_of_the_earlier_segments() -> None:
    """Two segments at 50% loss per step: out = p0 / 2 + p1, exact at an LSB of 1/2."""
    rng = np.random.default_rng(21)
    x, w = _codes(rng, (100, 256), 8), _codes(rng, (256, 5), 8)
    macro = _ideal_macro(hold_charge_loss=0.5)
    out, _ = macro.matmul(x, macro.map_weights(w, "greedy", "analog"), 2.0**14, relu=False, noise=False, rng_seed=0)
    p = [x[:, lo:hi].astype(np.int64) @ w[lo:hi].astype(np.int64) for lo, hi in ((0, 128), (128, 256))]
    np.testing.assert_array_equal(out, p[0] / 2 + p[1])


def test_balanced_segments_differ_by_at_most_one_row() -> None:
    from cimflow.cim.mapping import segment_bounds

    assert segment_bounds(144, 128, "balanced") == [(0, 72), (72, 144)]
    assert segment_bounds(144, 128, "greedy") == [(0, 128), (128, 144)]
    assert segment_bounds(577, 128, "balanced") == [(0, 116), (116, 232), (232, 347), (347, 462), (462, 577)]
    assert segment_bounds(100, 128, "balanced") == [(0, 100)]


def test_per_segment_full_scales_are_each_segments_own() -> None:
    """A small second segment gets its own range: exact at LSB 1 and LSB 1/4 side by side."""
    rng = np.random.default_rng(22)
    x, w = _codes(rng, (150, 144), 8), _codes(rng, (144, 6), 8)
    exact = x.astype(np.int64) @ w.astype(np.int64)
    for backend in ("cython", "numpy"):
        macro = _ideal_macro(backend)
        mapped = macro.map_weights(w, "greedy", "digital")
        out, _ = macro.matmul(x, mapped, np.array([2.0**15, 2.0**13]), relu=False, noise=False, rng_seed=0)
        np.testing.assert_array_equal(out, exact)
    with pytest.raises(ValueError, match="one value per conversion step"):
        macro.matmul(x, mapped, np.array([2.0**15]), relu=False, noise=False, rng_seed=0)


@pytest.mark.parametrize("backend", ["cython", "numpy"])
def test_bias_at_the_reference_is_exact_on_an_ideal_chip(backend: str) -> None:
    """Integer biases on DAC steps of exactly one LSB: relu(x @ w + b) bit for bit, fused."""
    rng = np.random.default_rng(23)
    x, w = _codes(rng, (300, 100), 16), _codes(rng, (100, 9), 16)
    # 16-bit DAC with range 32767/32768 full scales: one code is one LSB of the 16-bit ADC.
    macro = _ideal_macro(backend, bias_dac_bits=16, bias_dac_range=32767 / 32768)
    bias = rng.integers(-3000, 3000, 9).astype(np.float64)
    exact = x.astype(np.int64) @ w.astype(np.int64) + bias.astype(np.int64)
    out, counts = macro.matmul(x, w, EXACT_FULL_SCALE, relu=True, noise=False, rng_seed=0, bias=bias)
    np.testing.assert_array_equal(out, np.maximum(exact, 0))
    assert counts["conversions_sign_only"] == np.count_nonzero(exact < 0)
    assert counts["bias_conversions"] == 300 * 9
    assert macro.bias_saturation(bias, EXACT_FULL_SCALE) == 0
    assert macro.bias_saturation(np.array([4e4, 0.0]), EXACT_FULL_SCALE) == 1
    with pytest.raises(ValueError, match="one conversion per output"):
        macro.matmul(np.zeros((2, 200), np.int8), np.ones((200, 9), np.int8), EXACT_FULL_SCALE, relu=True,
                     noise=False, rng_seed=0, bias=bias)


@pytest.mark.parametrize("build", _kernel_builds())
@pytest.mark.parametrize("accumulation", ["digital", "analog"])
def test_compiled_kernel_matches_numpy_reference_in_every_mode(
    monkeypatch: pytest.MonkeyPatch, build: str, accumulation: str
) -> None:
    """Balanced segments, per-step full scales, bias DAC, hold loss and noise: bit-identical."""
    monkeypatch.setattr(simulator, "compiled", importlib.import_module(build))
    config = default_config(adcs=3, adc_inl_lsb=3.0, charge_sharing_nonlinearity=4.0, hold_charge_loss=0.01,
                            hold_noise_lsb_rms=0.5, bias_dac_gain_sigma=0.05)
    tables = calibrate(config, 12)
    rng = np.random.default_rng(24)
    x, w = _codes(rng, (500, 300)), _codes(rng, (300, 7))
    w[:, 3] = 0
    steps = 1 if accumulation == "analog" else 3
    scales = np.array([4e5, 3e5, 5e5][:steps])
    bias = rng.normal(0, 1e5, 7) if accumulation == "analog" else None
    results = []
    for backend in ("cython", "numpy"):
        macro = CimMacro(config, 12, tables, backend)
        mapped = macro.map_weights(w, "balanced", accumulation)
        results.append(macro.matmul(x, mapped, scales, relu=True, noise=True, rng_seed=5, bias=bias))
    np.testing.assert_array_equal(results[0][0], results[1][0])
    assert results[0][1] == results[1][1]


@pytest.mark.parametrize(("kernel", "stride", "padding", "dilation"),
                         [((3, 3), (1, 1), (1, 1), (1, 1)), ((3, 3), (2, 2), (1, 1), (1, 1)),
                          ((1, 1), (2, 2), (0, 0), (1, 1)), ((3, 2), (1, 2), (2, 0), (2, 1))])
def test_conv_input_vectors_match_torch_unfold(kernel, stride, padding, dilation) -> None:
    import torch
    import torch.nn.functional as F

    from cimflow.cim.kernels import ConvWindows

    images = np.random.default_rng(25).integers(-128, 128, (3, 5, 9, 8)).astype(np.int8)
    expected = F.unfold(torch.from_numpy(images).float(), kernel, dilation=dilation, padding=padding, stride=stride)
    expected = expected.transpose(1, 2).reshape(-1, expected.shape[1]).to(torch.int8).numpy()
    windows = ConvWindows(images, kernel, stride, padding, dilation)
    np.testing.assert_array_equal(windows.materialize(), expected)
    # Gathered block by block inside the pass: the same outputs and counters as the matrix.
    w = np.random.default_rng(26).integers(-128, 128, (expected.shape[1], 6)).astype(np.int8)
    config = default_config(adcs=2)
    macro = CimMacro(config, 3)
    mapped = macro.map_weights(w, "balanced", "digital")
    scales = np.full(mapped.conversion_steps, 2e5)
    gathered = macro.matmul(windows, mapped, scales, relu=True, noise=True, rng_seed=2)
    rows = macro.matmul(expected, mapped, scales, relu=True, noise=True, rng_seed=2)
    np.testing.assert_array_equal(gathered[0], rows[0])
    assert gathered[1] == rows[1]


def test_a_measured_inl_of_zeros_is_the_ideal_adc() -> None:
    """The table path and the modeled path agree bit for bit where both say 'no INL'."""
    from cimflow.cim import MeasuredInl

    rng = np.random.default_rng(26)
    x, w = _codes(rng, (400, 128)), _codes(rng, (128, 6))
    config = default_config(adcs=2, adc_inl_lsb=0.0)
    flat = MeasuredInl(np.zeros((2, 129)))
    for backend in ("cython", "numpy"):
        modeled = CimMacro(config, 4, backend=backend).matmul(x, w, 3e5, relu=True, noise=True, rng_seed=1)
        measured = CimMacro(config, 4, backend=backend, measured_inl=flat).matmul(x, w, 3e5, relu=True, noise=True,
                                                                                 rng_seed=1)
        np.testing.assert_array_equal(modeled[0], measured[0])


def test_a_measured_inl_bends_the_codes_it_names() -> None:
    """+2.6 LSB of INL from code 40 up (linear in between): ideal sums there read 3 codes high."""
    from cimflow.cim import MeasuredInl

    table = np.zeros((1, 129))
    table[0, 40:] = 2.6
    macro = _ideal_macro(adc_bits=8)
    bent = CimMacro(macro.config, 0, measured_inl=MeasuredInl(table))
    x = np.array([[1], [10], [60], [100]], dtype=np.int8)
    w = np.array([[1]], dtype=np.int8)
    out, _ = bent.matmul(x, w, 128.0, relu=False, noise=False, rng_seed=0)  # LSB = 1 unit
    np.testing.assert_array_equal(out[:, 0], [1, 10, 63, 103])
    with pytest.raises(ValueError, match="ADC"):
        CimMacro(default_config(adcs=3), 0, measured_inl=MeasuredInl(table))


def test_measured_inl_resamples_to_another_resolution() -> None:
    from cimflow.cim import MeasuredInl

    table = MeasuredInl(np.linspace(0.0, 4.0, 129)[None, :])  # 0 .. 4 LSB at 8 bits
    coarse = table.resampled(16)  # 5 bits: 0 .. 0.5 LSB of the coarser ADC
    np.testing.assert_allclose(coarse[0, [0, 8, 16]], [0.0, 0.25, 0.5], atol=1e-6)


@pytest.mark.parametrize("build", _kernel_builds())
def test_compiled_kernel_matches_numpy_reference_with_a_measured_inl(
    monkeypatch: pytest.MonkeyPatch, build: str
) -> None:
    from cimflow.cim import MeasuredInl

    monkeypatch.setattr(simulator, "compiled", importlib.import_module(build))
    config = default_config(adcs=3)
    inl = MeasuredInl(np.random.default_rng(27).normal(0.0, 1.5, (3, 129)))
    tables = calibrate(config, 13, measured_inl=inl)
    rng = np.random.default_rng(28)
    x, w = _codes(rng, (600, 200)), _codes(rng, (200, 7))
    results = [
        CimMacro(config, 13, tables, backend, measured_inl=inl).matmul(x, w, np.array([3e5, 2e5]), relu=True,
                                                                       noise=True, rng_seed=6)
        for backend in ("cython", "numpy")
    ]
    np.testing.assert_array_equal(results[0][0], results[1][0])
    assert results[0][1] == results[1][1]
