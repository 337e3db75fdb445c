"""Energy and throughput from counted events; the reference workload that pins the defaults.

Energy per conversion cycle = array (data-dependent switched capacitance) + input
drivers + ADC (sign decision always, magnitude bits only for a full conversion, the bias
DAC where it is set, each hold step of an analog accumulation) + digital (per
conversion, plus one addition per partial sum when K > rows is split digitally).
Every term is an event count times a constant of :class:`MacroConfig`, so layers add up
by summing their counters (:func:`merge_counters`).

Ops convention: 1 MAC = 2 ops, ReLU not counted; a layer's ops are its dense
2 * B * K * M, so skipped all-zero columns raise the effective throughput.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass

import numpy as np

from cimflow.cim.config import MacroConfig
from cimflow.cim.mapping import BIT_COUNT


@dataclass(frozen=True)
class Activity:
    """Events of one simulated layer call."""

    macs: int
    cycles: int
    conversions_full: int
    conversions_sign_only: int
    active_bit_products: int
    """Bit-products with input bit and weight bit both 1, over all conversions."""
    active_input_bits: int
    """Input bits at 1 driven onto rows, once per cycle."""
    accumulations: int
    """Partial sums added digitally (one per conversion of a split layer)."""
    hold_steps: int
    """Segment charges moved onto the hold capacitor (analog accumulation)."""
    bias_conversions: int
    """Conversions with the bias DAC set."""


def energy_components(activity: Activity, config: MacroConfig) -> dict[str, float]:
    conversions = activity.conversions_full + activity.conversions_sign_only
    array = activity.active_bit_products * config.energy_active_bit_product_j
    drivers = activity.active_input_bits * config.energy_active_input_bit_j
    adc = (
        conversions * config.energy_sign_decision_j
        + activity.conversions_full * (config.adc_bits - 1) * config.energy_magnitude_bit_j
        + activity.bias_conversions * config.energy_bias_dac_j
        + activity.hold_steps * config.energy_hold_step_j
    )
    digital = (
        conversions * config.energy_digital_per_conversion_j
        + activity.accumulations * config.energy_accumulate_j
    )
    return {
        "energy_array_j": array,
        "energy_input_j": drivers,
        "energy_adc_j": adc,
        "energy_digital_j": digital,
        "energy_total_j": array + drivers + adc + digital,
    }


def counters(activity: Activity, config: MacroConfig) -> dict[str, float]:
    """Event counts and energy components of one call, as one flat dict."""
    return {**asdict(activity), **energy_components(activity, config)}


def merge_counters(*parts: Mapping[str, float]) -> dict[str, float]:
    """Sum the counters of several calls (layers, batches)."""
    merged: dict[str, float] = {}
    for part in parts:
        for key, value in part.items():
            merged[key] = merged.get(key, 0) + value
    return merged


def performance(counts: Mapping[str, float], config: MacroConfig) -> dict[str, float]:
    """Throughput (GOPS) and efficiency (TOPS/W) of counted work on one macro."""
    ops = 2.0 * counts["macs"]
    seconds = counts["cycles"] / config.clock_hz
    energy = counts["energy_total_j"]
    return {
        "ops": ops,
        "seconds": seconds,
        "energy_j": energy,
        "gops": ops / seconds / 1e9,
        "tops_per_w": ops / energy / 1e12,
        "energy_per_cycle_pj": energy / counts["cycles"] * 1e12,
    }


def reference_workload(
    config: MacroConfig, vectors: int = 4096, weight_vectors: int = 64, seed: int = 0
) -> dict[str, float]:
    """Performance on the paper's workload: random int8 vectors of length ``rows``, ReLU.

    Each of ``vectors`` inputs meets each of ``weight_vectors`` stored weight vectors per
    ADC; every conversion is one full-length dot product, and with ``fused_relu`` the
    negative half ends after the sign decision. Signs are the ideal ones, so the result
    depends on the energy constants and organisation only, not on the analog errors.
    """
    rng = np.random.default_rng(seed)
    columns = weight_vectors * config.adcs
    x = rng.integers(-128, 128, (vectors, config.rows), dtype=np.int8)
    w = rng.integers(-128, 128, (config.rows, columns), dtype=np.int8)
    sums = x.astype(np.float64) @ w.astype(np.float64)  # exact: |sum| < 2**53
    negative = int(np.count_nonzero(sums < 0)) if config.fused_relu else 0
    x_ones = BIT_COUNT[x.view(np.uint8)].sum(axis=0)
    w_ones = BIT_COUNT[w.view(np.uint8)].sum(axis=1)
    activity = Activity(
        macs=vectors * config.rows * columns,
        cycles=vectors * weight_vectors,
        conversions_full=sums.size - negative,
        conversions_sign_only=negative,
        active_bit_products=int(x_ones @ w_ones),
        active_input_bits=int(x_ones.sum()) * weight_vectors,
        accumulations=0,
        hold_steps=0,
        bias_conversions=0,
    )
    return performance(counters(activity, config), config)
