"""``CimMacro``: the thin Python layer over the compiled core and the numpy reference.

One call simulates one mapped layer: int8 codes in, the chip's outputs in integer-product
units out (what ``x @ w`` would be on an ideal chip), plus event counters and energy.

Dataflow: weights -> effective weights (chip mismatch, once per layer) -> per-segment
float32 sgemm -> [hold-capacitor sum] -> conversion (+ bias DAC) -> digital sum of the
conversion steps -> ReLU. A call with ``relu`` runs the fused sign-first ReLU when the
macro has it and each output is one conversion (one segment, or analog accumulation);
otherwise every segment is converted signed, the partial sums are added digitally and
ReLU is applied digitally.

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
from cimflow.cim.chip import ChipInstance, MeasuredInl
from cimflow.cim.config import MacroConfig
from cimflow.cim.conversion import ConversionSetup, bias_injection, conversion_setup
from cimflow.cim.energy import Activity, counters
from cimflow.cim.kernels import NO_GEOMETRY, NO_IMAGES, SGEMM, ConvWindows, compiled
from cimflow.cim.mapping import Accumulation, MappedWeights, Segmenting, map_weights
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
        measured_inl: MeasuredInl | None = None,
    ) -> None:
        if backend not in ("cython", "numpy"):
            raise ValueError(f"backend must be 'cython' or 'numpy'; got {backend!r}")
        self.config = config
        self.chip = ChipInstance(config, chip_seed, measured_inl)
        self.backend = backend
        self._correction = None if calibration is None else calibration.correction_array(config, chip_seed)
        self._trim_lsb = None if calibration is None else calibration.trim_lsb(config, chip_seed)
        self._dac_gain = None if calibration is None else calibration.bias_dac_gain(config, chip_seed)

    def map_weights(
        self, w_codes: np.ndarray, segmenting: Segmenting = "greedy", accumulation: Accumulation = "digital"
    ) -> MappedWeights:
        """Place a layer's int8 weights (K, M) once, to reuse over many ``matmul`` calls."""
        return map_weights(self.chip, w_codes, segmenting, accumulation)

    def matmul(
        self,
        x_codes: np.ndarray | ConvWindows,
        w_codes: np.ndarray | MappedWeights,
        full_scale: float | np.ndarray,
        relu: bool,
        noise: bool,
        rng_seed: int,
        bias: np.ndarray | None = None,
    ) -> tuple[np.ndarray, dict[str, float]]:
        """Simulate ``x_codes @ w_codes`` (+ ``bias``, then ReLU if ``relu``) on this chip.

        ``x_codes``: int8 (B, K), or a convolution's :class:`ConvWindows` (gathered block by
        block, never materialised). ``w_codes``: int8 (K, M) or its :meth:`map_weights`.
        ``full_scale``: ADC range, +-full_scale in integer-product units (one LSB =
        full_scale / 2**(adc_bits-1)): one value, or one per conversion step (segment;
        one with analog accumulation). ``bias``: (M,) integer-product units added by the
        bias DAC at the ADC reference; only where each output is one conversion.
        ``noise``: draw per-conversion noise from stream ``rng_seed``. Returns float64
        (B, M) in integer-product units and the counters of
        :func:`cimflow.cim.energy.counters`.
        """
        mapped = w_codes if isinstance(w_codes, MappedWeights) else self.map_weights(w_codes)
        if isinstance(x_codes, ConvWindows) and self.backend == "numpy":
            x_codes = x_codes.materialize()
        if not isinstance(x_codes, ConvWindows):
            x_codes = np.ascontiguousarray(x_codes)
        self._check(x_codes, mapped)
        batch = x_codes.shape[0]
        k, m = mapped.shape
        steps = mapped.conversion_steps
        scales = np.broadcast_to(np.asarray(full_scale, dtype=np.float64), (steps,)) if np.ndim(full_scale) == 0 \
            else np.asarray(full_scale, dtype=np.float64)
        if scales.shape != (steps,):
            raise ValueError(f"full_scale needs one value per conversion step ({steps}); got {len(scales)}")
        bias_lsb = None
        if bias is not None:
            if steps != 1:
                raise ValueError("a bias at the reference needs one conversion per output (one segment or analog "
                                 "accumulation); add it digitally")
            if np.shape(bias) != (m,):
                raise ValueError(f"bias must hold one value per column ({m}); got shape {np.shape(bias)}")
            bias_lsb, _ = bias_injection(self.chip, np.asarray(bias, np.float64), float(scales[0]), self._dac_gain)
        fused = relu and self.config.fused_relu and steps == 1
        hold_steps = mapped.segments - 1 if mapped.accumulation == "analog" else 0
        setup = conversion_setup(self.chip, m, scales, rng_seed if noise else None, self._correction,
                                 self._trim_lsb, bias_lsb, hold_steps)
        block_rows = max(1, min(batch, BLOCK_INPUT_VALUES // k))
        run = self._simulate if self.backend == "cython" else self._reference
        out, ones_per_row, sign_only = run(x_codes, mapped, setup, fused, relu and not fused, block_rows)
        conversions = batch * int(mapped.converted_columns.sum())
        bounds = mapped.bounds.tolist()
        activity = Activity(
            macs=batch * k * m,
            cycles=batch * int(mapped.active_groups.sum()),
            conversions_full=conversions - sign_only,
            conversions_sign_only=sign_only,
            active_bit_products=int(ones_per_row @ mapped.weight_bits_per_row),
            active_input_bits=sum(
                int(groups) * int(ones_per_row[lo:hi].sum()) for groups, (lo, hi) in zip(mapped.active_groups, bounds)
            ),
            accumulations=conversions if steps > 1 else 0,
            hold_steps=conversions * hold_steps,
            bias_conversions=conversions if bias is not None else 0,
        )
        return out, counters(activity, self.config)

    def bias_saturation(self, bias: np.ndarray, full_scale: float) -> int:
        """Columns whose ``bias`` (integer-product units) exceeds the bias DAC's range at ``full_scale``."""
        return bias_injection(self.chip, np.asarray(bias, np.float64), full_scale, self._dac_gain)[1]

    def _simulate(
        self,
        x_codes: np.ndarray | ConvWindows,
        mapped: MappedWeights,
        setup: ConversionSetup,
        fused: bool,
        digital_relu: bool,
        block_rows: int,
    ) -> tuple[np.ndarray, np.ndarray, int]:
        out = np.empty((x_codes.shape[0], mapped.shape[1]), dtype=np.float64)
        ones_per_row = np.zeros(mapped.shape[0], dtype=np.int64)
        windows = isinstance(x_codes, ConvWindows)
        sign_only = compiled.simulate(
            SGEMM,
            np.empty((0, mapped.shape[0]), dtype=np.int8) if windows else x_codes,
            x_codes.images if windows else NO_IMAGES,
            x_codes.geometry() if windows else NO_GEOMETRY,
            mapped.effective,
            mapped.bounds,
            mapped.active,
            mapped.converted_columns,
            setup.pre_scale,
            setup.lsb,
            setup.post_gain,
            setup.offset,
            setup.sign_threshold,
            setup.bias,
            setup.inl_c0,
            setup.inl_c1,
            setup.adc_of_column,
            _NO_CORRECTION if setup.inl_table is None else setup.inl_table,
            _NO_CORRECTION if setup.correction is None else setup.correction,
            normal_table(),
            setup.compression,
            setup.inv_levels,
            setup.max_code,
            setup.noise_sigma,
            setup.noise_key,
            mapped.accumulation == "analog",
            setup.hold_keep,
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
        if mapped.accumulation == "analog":
            analog = reference.hold(analog, setup.hold_keep)
        out, sign_only = reference.convert(analog, mapped.converted_columns, setup, fused, digital_relu)
        return out, reference.input_ones(x_codes), sign_only

    def _check(self, x_codes: np.ndarray | ConvWindows, mapped: MappedWeights) -> None:
        if mapped.chip_seed != self.chip.seed or mapped.config != self.config:
            raise ValueError("weights were mapped on a different chip; map them with this macro")
        if isinstance(x_codes, ConvWindows):
            if x_codes.shape[1] != mapped.shape[0]:
                raise ValueError(f"window length {x_codes.shape[1]} != weight rows {mapped.shape[0]}")
            return
        if x_codes.dtype != np.int8 or x_codes.ndim != 2:
            raise ValueError(f"input codes must be a 2-D int8 array; got {x_codes.dtype} {x_codes.shape}")
        if x_codes.shape[1] != mapped.shape[0]:
            raise ValueError(f"input length {x_codes.shape[1]} != weight rows {mapped.shape[0]}")
