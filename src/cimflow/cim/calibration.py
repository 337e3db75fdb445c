"""Per-chip calibration: sign-comparator trim and per-ADC code-correction tables.

Like a test program on silicon, calibration only drives known vectors and reads
decisions and codes; it never looks at the chip's drawn errors. Three steps (notes §4.4):

1. Sign trim. With all-zero inputs the charge node holds exactly 0, so each trim-DAC
   code is tried on repeated conversions and the one whose P(sign = +) is closest to 0.5
   is kept (on a tie, the one under which zero still reads positive).
2. Correction table. Known random (input, weight) vector pairs, with their correlation
   swept from -1 to 1 so the ideal dot products cover the whole range and overdrive the
   ADC, are converted in signed mode with the trim applied. Each signed code's corrected
   value is the mean ideal value of the samples that produced it (the minimum-MSE
   estimate). Codes never hit are linearly interpolated; the saturated end codes, whose
   mean only reflects how far the sweep overdrove the ADC, and codes beyond the last hit
   are extrapolated from a line through the outermost hit codes.
3. Bias-DAC gain. With all-zero inputs, each ADC's bias DAC is set to +c and -c (half
   its range) on repeated conversions; the difference of the mean corrected values over
   2c nominal steps is the DAC's gain, which the mapping divides out when it picks codes.

Values are in LSB of the ADC (ideal dot product / (full scale / 2**(adc_bits-1))), so
one table serves every layer's full scale.

Result: :class:`CalibrationTables`, two frames meant to be stored as Parquet:
``codes`` (chip_seed, adc, code, corrected_value, sample_count) with one row per ADC and
signed code -(2**(adc_bits-1)-1) .. 2**(adc_bits-1)-1, sample_count 0 where the value is
interpolated or extrapolated; and ``sign_trim`` (chip_seed, adc, trim_code, trim_lsb,
bias_dac_gain), one row per ADC.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from cimflow.cim.chip import PLANE_SIGNIFICANCE, WEIGHT_BITS, ChipInstance, MeasuredInl
from cimflow.cim.config import MacroConfig
from cimflow.cim.conversion import conversion_setup, dac_output_lsb
from cimflow.cim.reference import adc_decisions

CODE_COLUMNS = ("chip_seed", "adc", "code", "corrected_value", "sample_count")
TRIM_COLUMNS = ("chip_seed", "adc", "trim_code", "trim_lsb", "bias_dac_gain")
OVERDRIVE = 1.5
"""Sweep reaches 1.5x full scale: codes saturate even at 33% parasitic attenuation."""
EDGE_FIT_CODES = 8
"""Hit codes next to each end that the extrapolation line is fitted through."""
_SWEEP_CHUNK = 8192
_INT8_STD = 73.9  # standard deviation of uniform int8 codes


@dataclass(frozen=True)
class CalibrationTables:
    """Calibration result of one chip; see the module docstring for the two frames."""

    codes: pd.DataFrame
    sign_trim: pd.DataFrame

    def correction_array(self, config: MacroConfig, chip_seed: int) -> np.ndarray:
        """(adcs, 2*max_code+1) float32 corrected value in LSB, indexed by code + max_code."""
        rows = self._rows(self.codes, CODE_COLUMNS, chip_seed)
        max_code = config.max_magnitude_code
        n_codes = 2 * max_code + 1
        adc = rows["adc"].to_numpy()
        code = rows["code"].to_numpy()
        expected = config.adcs * n_codes
        if (
            len(rows) != expected
            or adc.min() < 0
            or adc.max() >= config.adcs
            or np.abs(code).max() > max_code
        ):
            raise ValueError(
                f"calibration codes for chip {chip_seed} do not fit {config.adcs} ADC(s) of "
                f"{config.adc_bits} bits: expected {expected} rows with adc 0..{config.adcs - 1} "
                f"and code -{max_code}..{max_code}"
            )
        table = np.full((config.adcs, n_codes), np.nan, dtype=np.float32)
        table[adc, code + max_code] = rows["corrected_value"].to_numpy()
        if np.isnan(table).any():
            raise ValueError(f"calibration codes for chip {chip_seed} repeat some (adc, code) rows")
        return table

    def trim_lsb(self, config: MacroConfig, chip_seed: int) -> np.ndarray:
        """(adcs,) sign-comparator trim in LSB."""
        rows = self._rows(self.sign_trim, TRIM_COLUMNS, chip_seed)
        if sorted(rows["adc"]) != list(range(config.adcs)):
            raise ValueError(f"sign trim for chip {chip_seed} must have one row per adc 0..{config.adcs - 1}")
        return rows.sort_values("adc")["trim_lsb"].to_numpy(dtype=np.float64)

    def bias_dac_gain(self, config: MacroConfig, chip_seed: int) -> np.ndarray:
        """(adcs,) measured relative gain of each ADC's bias DAC."""
        rows = self._rows(self.sign_trim, TRIM_COLUMNS, chip_seed)
        gain = rows.sort_values("adc")["bias_dac_gain"].to_numpy(dtype=np.float64)
        if len(gain) != config.adcs or not np.all(np.isfinite(gain)) or np.any(gain <= 0):
            raise ValueError(f"bias-DAC gains for chip {chip_seed} must be {config.adcs} positive numbers")
        return gain

    @staticmethod
    def _rows(frame: pd.DataFrame, columns: tuple[str, ...], chip_seed: int) -> pd.DataFrame:
        missing = [c for c in columns if c not in frame.columns]
        if missing:
            raise ValueError(f"calibration frame lacks column(s) {missing}")
        rows = frame[frame["chip_seed"] == chip_seed]
        if rows.empty:
            raise ValueError(f"calibration has no rows for chip_seed {chip_seed}")
        return rows


def calibrate(
    config: MacroConfig, chip_seed: int, samples_per_code: int = 16, trim_repeats: int = 256,
    measured_inl: MeasuredInl | None = None,
) -> CalibrationTables:
    """Measure chip ``chip_seed`` (with ``measured_inl`` in place of the modeled INL, if given)
    and build its trim and correction tables."""
    if samples_per_code < 1 or trim_repeats < 1:
        raise ValueError("samples_per_code and trim_repeats must be >= 1")
    chip = ChipInstance(config, chip_seed, measured_inl)
    trim_noise_seed, sweep_seed, sweep_noise_seed, dac_noise_seed = (
        int(s) for s in np.random.SeedSequence([chip_seed, 0xCA1B]).generate_state(4, np.uint32)
    )
    trim_code = _sign_trim_codes(chip, trim_repeats, trim_noise_seed)
    trim_lsb = trim_code * config.sign_trim_step_lsb
    table, counts = _correction_tables(chip, trim_lsb, samples_per_code, sweep_seed, sweep_noise_seed)
    dac_gain = _bias_dac_gains(chip, trim_lsb, table.astype(np.float32), trim_repeats, dac_noise_seed)
    max_code = config.max_magnitude_code
    n_codes = 2 * max_code + 1
    codes = pd.DataFrame(
        {
            "chip_seed": np.full(config.adcs * n_codes, chip_seed, dtype=np.int64),
            "adc": np.repeat(np.arange(config.adcs, dtype=np.int32), n_codes),
            "code": np.tile(np.arange(-max_code, max_code + 1, dtype=np.int32), config.adcs),
            "corrected_value": table.ravel().astype(np.float64),
            "sample_count": counts.ravel().astype(np.int64),
        }
    )
    sign_trim = pd.DataFrame(
        {
            "chip_seed": np.full(config.adcs, chip_seed, dtype=np.int64),
            "adc": np.arange(config.adcs, dtype=np.int32),
            "trim_code": trim_code.astype(np.int32),
            "trim_lsb": trim_lsb,
            "bias_dac_gain": dac_gain,
        }
    )
    return CalibrationTables(codes=codes, sign_trim=sign_trim)


def _sign_trim_codes(chip: ChipInstance, repeats: int, noise_seed: int) -> np.ndarray:
    """Per ADC, the trim-DAC code whose P(sign = + | zero input) is closest to 0.5."""
    cfg = chip.config
    half = 2 ** (cfg.sign_trim_bits - 1)
    candidates = np.arange(-half, half)
    zero_input = np.zeros((1, repeats, cfg.adcs), dtype=np.float32)
    p_positive = np.empty((candidates.size, cfg.adcs))
    for i, code in enumerate(candidates):
        # Same noise seed for every code: P(+) is then monotone in the code.
        setup = conversion_setup(
            chip, cfg.adcs, 1.0, noise_seed, None, np.full(cfg.adcs, code * cfg.sign_trim_step_lsb)
        )
        p_positive[i] = adc_decisions(zero_input, setup)[0].mean(axis=(0, 1))
    last_positive = np.maximum((p_positive >= 0.5).sum(axis=0) - 1, 0)
    above = np.minimum(last_positive + 1, candidates.size - 1)
    adcs = np.arange(cfg.adcs)
    closer_above = np.abs(p_positive[above, adcs] - 0.5) < np.abs(p_positive[last_positive, adcs] - 0.5)
    return candidates[np.where(closer_above, above, last_positive)]


def _bias_dac_gains(
    chip: ChipInstance, trim_lsb: np.ndarray, table: np.ndarray, repeats: int, noise_seed: int
) -> np.ndarray:
    """Per ADC, (mean corrected value at +c - at -c) / (2 c nominal steps), zero input."""
    cfg = chip.config
    code = max(1, cfg.bias_dac_max_code // 2)
    zero_input = np.zeros((1, repeats, cfg.adcs), dtype=np.float32)
    adcs = np.arange(cfg.adcs)
    means = []
    for sign in (1, -1):
        bias = dac_output_lsb(chip, np.full(cfg.adcs, sign * code))
        setup = conversion_setup(chip, cfg.adcs, 1.0, noise_seed, None, trim_lsb, bias)
        positive, magnitude = adc_decisions(zero_input, setup)
        signed = np.where(positive, magnitude, -magnitude)[0]
        means.append(table[adcs, signed + cfg.max_magnitude_code].mean(axis=0))
    return (means[0] - means[1]) / (2 * code * cfg.bias_dac_step_lsb)


def _sweep_vectors(
    rng: np.random.Generator, count: int, rows: int
) -> tuple[np.ndarray, np.ndarray]:
    """``count`` random int8 (input, weight) pairs whose correlation is uniform in [-1, 1]."""
    x = rng.integers(-128, 128, (count, rows)).astype(np.float64)
    rho = rng.uniform(-1.0, 1.0, (count, 1))
    fresh = rng.standard_normal((count, rows)) * _INT8_STD
    w = rho * x + np.sqrt(1.0 - rho**2) * fresh
    return x.astype(np.int8), np.clip(np.rint(w), -128, 127).astype(np.int8)


def _sweep_analog(chip: ChipInstance, x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """(count, adcs) charge-node values: each pair's weights written into every ADC column."""
    bits = ((w.view(np.uint8)[:, :, None] >> np.arange(WEIGHT_BITS, dtype=np.uint8)) & 1).astype(np.float32)
    planes = (PLANE_SIGNIFICANCE * (1.0 + chip.cap_error)).astype(np.float32)  # (adcs, rows, bits)
    effective = np.einsum("nrb,arb->nra", bits, planes)
    return np.einsum("nr,nra->na", x.astype(np.float32), effective)


def _correction_tables(
    chip: ChipInstance, trim_lsb: np.ndarray, samples_per_code: int, sweep_seed: int, noise_seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """(adcs, codes) corrected values in LSB and the sample count behind each."""
    cfg = chip.config
    max_code = cfg.max_magnitude_code
    n_codes = 2 * max_code + 1
    rng = np.random.default_rng(sweep_seed)
    total = samples_per_code * n_codes
    # Full scale such that the sweep's largest ideal values overdrive the ADC by OVERDRIVE.
    full_scale = cfg.rows * _INT8_STD**2 / OVERDRIVE
    lsb = full_scale / cfg.magnitude_levels
    sums = np.zeros((cfg.adcs, n_codes))
    counts = np.zeros((cfg.adcs, n_codes), dtype=np.int64)
    adcs = np.arange(cfg.adcs)[None, :]
    for start in range(0, total, _SWEEP_CHUNK):
        x, w = _sweep_vectors(rng, min(_SWEEP_CHUNK, total - start), cfg.rows)
        ideal = np.einsum("nr,nr->n", x.astype(np.int64), w.astype(np.int64)) / lsb
        analog = _sweep_analog(chip, x, w)[None]
        setup = conversion_setup(chip, cfg.adcs, full_scale, noise_seed, None, trim_lsb)
        positive, magnitude = adc_decisions(analog, setup, start, total)
        index = np.where(positive, magnitude, -magnitude)[0] + max_code
        np.add.at(sums, (adcs, index), ideal[:, None])
        np.add.at(counts, (adcs, index), 1)
    table = np.stack([_fill_unhit(s, c, max_code) for s, c in zip(sums, counts)])
    return table, counts


def _fill_unhit(sums: np.ndarray, counts: np.ndarray, max_code: int) -> np.ndarray:
    """Mean per hit code; interpolate gaps; extrapolate saturated and unreached codes.

    With fewer than two usable codes nothing can be fitted and the nominal values stay.
    """
    index = np.arange(sums.size)
    measured = counts > 0
    measured[[0, -1]] = False  # saturated end codes
    if measured.sum() < 2:
        return (index - max_code).astype(np.float64)
    hit = index[measured]
    mean = sums[measured] / counts[measured]
    table = np.interp(index, hit, mean)
    lower = np.polyfit(hit[:EDGE_FIT_CODES], mean[:EDGE_FIT_CODES], 1)
    upper = np.polyfit(hit[-EDGE_FIT_CODES:], mean[-EDGE_FIT_CODES:], 1)
    table[index < hit[0]] = np.polyval(lower, index[index < hit[0]])
    table[index > hit[-1]] = np.polyval(upper, index[index > hit[-1]])
    return table
