"""One simulated die: the static (fixed-pattern) errors drawn once from a chip seed.

Where the errors live, and why here:

* Capacitor mismatch sits in the analog adder network of each ADC column, one
  binary-weighted capacitor per (row, weight bit): shape ``(adcs, rows, 8)``. The
  SRAM holds many weight vectors but they all reach the ADC through the same
  capacitors, so a layer column m mapped to ADC ``m % adcs`` and row r of its segment
  sees ``cap_error[m % adcs, r, :]``. Weight-side mismatch folds into effective weights,
  so the analog sum stays one float32 GEMM.
* Offset, gain, INL, the sign-decision offset and the bias-DAC gain are per ADC. The
  INL is the modeled smooth curve, or a measured one (:class:`MeasuredInl`) in its place.

Each effect has its own child seed, so adding an effect never changes the others' draws.
"""

from __future__ import annotations

import numpy as np

from cimflow.cim.config import MacroConfig

WEIGHT_BITS = 8
# Two's-complement significance of each weight bit plane; the MSB plane is negative.
PLANE_SIGNIFICANCE = np.array([1, 2, 4, 8, 16, 32, 64, -128], dtype=np.float64)
# A plane of significance 2**b is 2**b unit capacitors, so its relative sigma is
# sigma_unit / sqrt(2**b) (the sqrt-of-size scaling in notes §4.2 item 1).
_PLANE_SIGMA_SCALE = 1.0 / np.sqrt(np.abs(PLANE_SIGNIFICANCE))
_INL_SHAPE_GRID = np.linspace(0.0, 1.0, 1025)


def _read_only(array: np.ndarray) -> np.ndarray:
    array.flags.writeable = False
    return array


class MeasuredInl:
    """A measured static INL per ADC, in place of the modeled curve.

    ``inl_lsb`` (adcs, levels + 1): INL in LSB at magnitude codes 0..levels of an ADC with
    ``levels`` magnitude levels (a measured transfer curve code -> input converts as
    INL = input - code). Between codes it is linear; at another resolution it is resampled
    on the normalised magnitude axis and rescaled to that resolution's LSB.
    """

    def __init__(self, inl_lsb: np.ndarray) -> None:
        table = np.asarray(inl_lsb, dtype=np.float64)
        if table.ndim != 2 or table.shape[1] < 2 or not np.all(np.isfinite(table)):
            raise ValueError(f"measured INL must be a finite (adcs, levels + 1) table; got shape {table.shape}")
        self.inl_lsb = _read_only(table.copy())

    @property
    def levels(self) -> int:
        return self.inl_lsb.shape[1] - 1

    def resampled(self, levels: int) -> np.ndarray:
        """(adcs, levels + 1) float32 INL in LSB of an ADC with ``levels`` magnitude levels."""
        if levels == self.levels:
            return self.inl_lsb.astype(np.float32)
        grid, source = np.linspace(0.0, 1.0, levels + 1), np.linspace(0.0, 1.0, self.levels + 1)
        scale = levels / self.levels
        return np.stack([np.interp(grid, source, row) * scale for row in self.inl_lsb]).astype(np.float32)


class ChipInstance:
    """Static errors of one die, reproducible from ``seed``; ``measured_inl`` replaces the
    modeled INL (its ADC count must match the config's)."""

    def __init__(self, config: MacroConfig, seed: int, measured_inl: MeasuredInl | None = None) -> None:
        if seed < 0:
            raise ValueError(f"chip seed must be >= 0; got {seed}")
        if measured_inl is not None and measured_inl.inl_lsb.shape[0] != config.adcs:
            raise ValueError(f"measured INL has {measured_inl.inl_lsb.shape[0]} ADC(s); the macro has {config.adcs}")
        self.config = config
        self.seed = seed
        self.inl_table = None if measured_inl is None else _read_only(measured_inl.resampled(config.magnitude_levels))
        """(adcs, levels + 1) float32 measured INL in LSB per magnitude code, or None (modeled)."""
        caps, offset, gain, inl, sign, bias_dac = np.random.SeedSequence(seed).spawn(6)
        a, rows = config.adcs, config.rows
        self.cap_error = _read_only(
            np.random.default_rng(caps).standard_normal((a, rows, WEIGHT_BITS))
            * (config.cap_mismatch_sigma * _PLANE_SIGMA_SCALE)
        )
        self.adc_offset_lsb = _read_only(
            np.random.default_rng(offset).standard_normal(a) * config.adc_offset_lsb_sigma
        )
        self.adc_gain_error = _read_only(
            np.random.default_rng(gain).standard_normal(a) * config.adc_gain_error_sigma
        )
        self.inl_coefficients = _read_only(
            _draw_inl(np.random.default_rng(inl), a, config.adc_inl_lsb)
        )
        self.sign_offset_lsb = _read_only(
            np.random.default_rng(sign).standard_normal(a) * config.sign_offset_lsb_sigma
        )
        self.bias_dac_gain_error = _read_only(
            np.random.default_rng(bias_dac).standard_normal(a) * config.bias_dac_gain_sigma
        )

    def effective_weights(self, w_codes: np.ndarray, physical_row: np.ndarray) -> np.ndarray:
        """Weights as the charge network weighs them: (K, M) float32, exact when mismatch is 0.

        Row k sits on ``physical_row[k]`` of its column; column m on ADC ``m % adcs``.
        """
        k, m = w_codes.shape
        bits = (w_codes.view(np.uint8)[:, :, None] >> np.arange(WEIGHT_BITS, dtype=np.uint8)) & 1
        adc = np.arange(m) % self.config.adcs
        row = physical_row
        errors = self.cap_error[adc[None, :], row[:, None]]  # (K, M, bits)
        planes = PLANE_SIGNIFICANCE * (1.0 + errors)
        return np.einsum("kmb,kmb->km", bits, planes).astype(np.float32)


def _draw_inl(rng: np.random.Generator, adcs: int, peak_lsb: float) -> np.ndarray:
    """Per-ADC coefficients (c0, c1) of INL(y) = y (1 - y) (c0 + c1 y), y = magnitude / full scale.

    A smooth bow/S-shaped curve with endpoint fit (zero at code 0 and at full scale),
    scaled so each ADC's peak |INL| is exactly ``peak_lsb``. The DNL sawtooth of
    individual CDAC bits is not modelled.
    """
    shape = rng.standard_normal((adcs, 2))
    y = _INL_SHAPE_GRID
    curves = (y * (1 - y))[None, :] * (shape[:, :1] + shape[:, 1:] * y[None, :])
    peaks = np.abs(curves).max(axis=1, keepdims=True)
    return (shape * (peak_lsb / peaks)).astype(np.float64)
