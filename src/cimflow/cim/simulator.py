"""``CimMacro``: the thin Python layer over the compiled core and the numpy reference.

One call simulates one mapped layer: int8 codes in, the chip's outputs in integer-product
units out (what ``x @ w`` would be on an ideal chip), plus event counters and energy.

Dataflow: weights -> effective weights (chip mismatch, once per layer) -> per-segment
float32 sgemm -> conversion -> segment sum -> ReLU. A layer with K <= rows and ``relu``
runs the fused sign-first ReLU when the macro has it; a longer layer converts each
segment signed, adds them digitally and applies ReLU digitally.

The compiled backend does it all in one parallel region: each thread takes blocks of
input vectors (~256 KiB of float32 inputs, cache-resident) through packing, sgemm and
conversion. The numpy backend computes the same partial sums with the same blocks and
sgemm calls, then converts them with :mod:`cimflow.cim.reference`.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from cimflow.cim import reference
from cimflow.cim.calibration import CalibrationTables
from cimflow.cim.chip import ChipInstance
from cimflow.cim.config import MacroConfig
from cimflow.cim.conversion import ConversionSetup, conversion_setup
from cimflow.cim.energy import Activity, counters
from cimflow.cim.kernels import SGEMM, compiled
from cimflow.cim.mapping import MappedWeights, map_weights, segment_bounds
from cimflow.cim.noise import normal_table

Backend = Literal["cython", "numpy"]
BLOCK_INPUT_VALUES = 2**16
"""float32 input values per block (256 KiB): the block stays in the core's cache."""
_NO_CORRECTION = np.zeros((0, 0), dtype=np.float32)


class CimMacro:
    """One simulated chip: a macro configuration, a chip seed and optionally its calibration."""

    def __init__(
        self,
        config: MacroConfig,
        chip_seed: int,
        calibration: CalibrationTables | None = None,
        backend: Backend = "cython",
    ) -> None:
        if backend not in ("cython", "numpy"):
            raise ValueError(f"backend must be 'cython' or 'numpy'; got {backend!r}")
        self.config = config
        self.chip = ChipInstance(config, chip_seed)
        self.backend = backend
        self._correction = None if calibration is None else calibration.correction_array(config, chip_seed)
        self._trim_lsb = None if calibration is None else calibration.trim_lsb(config, chip_seed)

    def map_weights(self, w_codes: np.ndarray) -> MappedWeights:
        """Place a layer's int8 weights (K, M) once, to reuse over many ``matmul`` calls."""
        return map_weights(self.chip, w_codes)

    def matmul(
        self,
        x_codes: np.ndarray,
        w_codes: np.ndarray | MappedWeights,
        full_scale: float,
        relu: bool,
        noise: bool,
        rng_seed: int,
    ) -> tuple[np.ndarray, dict[str, float]]:
        """Simulate ``x_codes @ w_codes`` (then ReLU if ``relu``) on this chip.

        ``x_codes``: int8 (B, K). ``w_codes``: int8 (K, M) or its :meth:`map_weights`.
        ``full_scale``: ADC range per conversion, +-full_scale in integer-product units
        (one LSB = full_scale / 2**(adc_bits-1)). ``noise``: draw per-conversion noise
        from stream ``rng_seed``. Returns float64 (B, M) in integer-product units and the
        counters of :func:`cimflow.cim.energy.counters`.
        """
        mapped = w_codes if isinstance(w_codes, MappedWeights) else self.map_weights(w_codes)
        x_codes = np.ascontiguousarray(x_codes)
        self._check(x_codes, mapped)
        batch = x_codes.shape[0]
        k, m = mapped.shape
        fused = relu and self.config.fused_relu and mapped.segments == 1
        setup = conversion_setup(
            self.chip, m, full_scale, rng_seed if noise else None, self._correction, self._trim_lsb
        )
        block_rows = max(1, min(batch, BLOCK_INPUT_VALUES // k))
        run = self._simulate if self.backend == "cython" else self._reference
        out, ones_per_row, sign_only = run(x_codes, mapped, setup, fused, relu and not fused, block_rows)
        conversions = batch * int(mapped.active.sum())
        activity = Activity(
            macs=batch * k * m,
            cycles=batch * int(mapped.active_groups.sum()),
            conversions_full=conversions - sign_only,
            conversions_sign_only=sign_only,
            active_bit_products=int(ones_per_row @ mapped.weight_bits_per_row),
            active_input_bits=sum(
                int(groups) * int(ones_per_row[lo:hi].sum())
                for groups, (lo, hi) in zip(mapped.active_groups, segment_bounds(k, self.config.rows))
            ),
            accumulations=conversions if mapped.segments > 1 else 0,
        )
        return out, counters(activity, self.config)

    def _simulate(
        self,
        x_codes: np.ndarray,
        mapped: MappedWeights,
        setup: ConversionSetup,
        fused: bool,
        digital_relu: bool,
        block_rows: int,
    ) -> tuple[np.ndarray, np.ndarray, int]:
        out = np.empty((x_codes.shape[0], mapped.shape[1]), dtype=np.float64)
        ones_per_row = np.zeros(mapped.shape[0], dtype=np.int64)
        sign_only = compiled.simulate(
            SGEMM,
            x_codes,
            mapped.effective,
            mapped.bounds,
            mapped.active,
            setup.post_gain,
            setup.offset,
            setup.sign_threshold,
            setup.inl_c0,
            setup.inl_c1,
            setup.adc_of_column,
            _NO_CORRECTION if setup.correction is None else setup.correction,
            normal_table(),
            setup.pre_scale,
            setup.compression,
            setup.inv_levels,
            setup.max_code,
            setup.lsb,
            setup.noise_sigma,
            setup.noise_key,
            fused,
            digital_relu,
            block_rows,
            out,
            ones_per_row,
        )
        return out, ones_per_row, sign_only

    def _reference(
        self,
        x_codes: np.ndarray,
        mapped: MappedWeights,
        setup: ConversionSetup,
        fused: bool,
        digital_relu: bool,
        block_rows: int,
    ) -> tuple[np.ndarray, np.ndarray, int]:
        k, m = mapped.shape
        analog = np.empty((mapped.segments, x_codes.shape[0], m), dtype=np.float32)
        compiled.partial_sums(SGEMM, x_codes, mapped.effective, mapped.bounds, mapped.active, block_rows, analog)
        out, sign_only = reference.convert(analog, mapped.active, setup, fused, digital_relu)
        return out, reference.input_ones(x_codes), sign_only

    def _check(self, x_codes: np.ndarray, mapped: MappedWeights) -> None:
        if mapped.chip_seed != self.chip.seed or mapped.config != self.config:
            raise ValueError("weights were mapped on a different chip; map them with this macro")
        if x_codes.dtype != np.int8 or x_codes.ndim != 2:
            raise ValueError(f"input codes must be a 2-D int8 array; got {x_codes.dtype} {x_codes.shape}")
        if x_codes.shape[1] != mapped.shape[0]:
            raise ValueError(f"input length {x_codes.shape[1]} != weight rows {mapped.shape[0]}")
