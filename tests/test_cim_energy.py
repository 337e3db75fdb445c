"""Energy and throughput: the default parameters reproduce the paper's 51.2 GOPS and 10.3 TOPS/W."""

from __future__ import annotations

import numpy as np
import pytest
from test_cim_config import default_config

from cimflow.cim import CimMacro, calibrate, merge_counters, performance, reference_workload
from cimflow.cim.energy import Activity, energy_components

PAPER_GOPS = 51.2
PAPER_TOPS_PER_W = 10.3


def test_reference_workload_gives_the_paper_numbers() -> None:
    config = default_config()
    result = reference_workload(config)
    assert result["gops"] == pytest.approx(PAPER_GOPS, rel=1e-12)
    assert result["tops_per_w"] == pytest.approx(PAPER_TOPS_PER_W, rel=0.01)
    assert result["energy_per_cycle_pj"] == pytest.approx(256 / PAPER_TOPS_PER_W, rel=0.01)


def test_simulated_reference_layer_gives_the_paper_numbers() -> None:
    """The counters of a real simulation (calibrated chip, noise on) land on the same numbers."""
    config = default_config()
    rng = np.random.default_rng(0)
    x = rng.integers(-128, 128, (2048, 128)).astype(np.int8)
    w = rng.integers(-128, 128, (128, 32)).astype(np.int8)
    macro = CimMacro(config, 1, calibrate(config, 1))
    _, counts = macro.matmul(x, w, 2.5e5, relu=True, noise=True, rng_seed=0)
    result = performance(counts, config)
    assert result["gops"] == pytest.approx(PAPER_GOPS, rel=1e-12)
    assert result["tops_per_w"] == pytest.approx(PAPER_TOPS_PER_W, rel=0.01)
    assert counts["conversions_sign_only"] == pytest.approx(counts["conversions_full"], rel=0.1)


def test_throughput_scales_with_parallel_adcs_and_rows() -> None:
    assert reference_workload(default_config(adcs=4))["gops"] == pytest.approx(4 * PAPER_GOPS)
    assert reference_workload(default_config(rows=64, clock_hz=4.0e8))["gops"] == pytest.approx(PAPER_GOPS)


def test_early_stop_and_split_layers_are_charged() -> None:
    config = default_config()
    base = dict(macs=1000, cycles=10, active_bit_products=0, active_input_bits=0)
    full = energy_components(Activity(**base, conversions_full=10, conversions_sign_only=0, accumulations=0,
                                      hold_steps=0, bias_conversions=0), config)
    early = energy_components(Activity(**base, conversions_full=0, conversions_sign_only=10, accumulations=0,
                                       hold_steps=0, bias_conversions=0), config)
    split = energy_components(Activity(**base, conversions_full=10, conversions_sign_only=0, accumulations=10,
                                       hold_steps=0, bias_conversions=0), config)
    held = energy_components(Activity(**base, conversions_full=10, conversions_sign_only=0, accumulations=0,
                                      hold_steps=20, bias_conversions=10), config)
    assert full["energy_adc_j"] == pytest.approx(10 * (1.5e-13 + 7 * 1.214e-13))
    assert early["energy_adc_j"] == pytest.approx(10 * 1.5e-13)
    assert split["energy_digital_j"] - full["energy_digital_j"] == pytest.approx(10 * 1.0e-13)
    assert held["energy_adc_j"] - full["energy_adc_j"] == pytest.approx(20 * 1.0e-13 + 10 * 5.0e-14)
    for parts in (full, early, split, held):
        assert parts["energy_total_j"] == pytest.approx(
            sum(parts[k] for k in ("energy_array_j", "energy_input_j", "energy_adc_j", "energy_digital_j"))
        )


def test_layer_counters_add_up() -> None:
    config = default_config()
    rng = np.random.default_rng(1)
    macro = CimMacro(config, 0)
    calls = [
        macro.matmul(rng.integers(-128, 128, (64, k)).astype(np.int8),
                     rng.integers(-128, 128, (k, 8)).astype(np.int8), 2e5, True, False, 0)[1]
        for k in (100, 300)
    ]
    total = merge_counters(*calls)
    assert total["cycles"] == 64 * 8 * (1 + 3)
    assert total["macs"] == 64 * 8 * (100 + 300)
    assert total["energy_total_j"] == pytest.approx(sum(c["energy_total_j"] for c in calls))
    assert performance(total, config)["gops"] == pytest.approx(2 * total["macs"] / (total["cycles"] / 2e8) / 1e9)
