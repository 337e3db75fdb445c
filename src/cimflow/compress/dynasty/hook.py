"""DYNASTY: block-wise dynamic-precision training (Liu et al., ASP-DAC 2023, arXiv 2210.17047).

Every conv/linear layer trains on block-floating-point operands (weights, input
activations, output gradients; see dynasty.blocks), each block with its own width
from ``candidate_bits``. Every ``refresh_interval`` steps the quantizers measure
each block's relative error at every candidate width, weighted by the block's share
of |dL/dx| (online analytics on that step's own forward and backward), and the map
generator (dynasty.maps) redraws the width maps against the target with hysteresis
and convergence feedback. A cost meter (dynasty.cost) charges every step at the maps
then in force, so the modeled speedup and energy follow the actual run; it prices
MACs bit-exact and in bricks, with the backward GEMMs' operands re-blocked along
their own reduction axes.

The uniform 8-bit baseline is this same hook with a fixed map:
``DynastyHook(params, seed, fixed_bits=params.cost.baseline_bits)``.
"""

from __future__ import annotations

import math
from functools import partial

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils import parametrize

from cimflow.compress.dynasty.cost import PHASE_OPERANDS, CostMeter, LayerGeometry, OperandWidths, weight_storage_bits
from cimflow.compress.dynasty.maps import BitWidthMapGenerator
from cimflow.compress.dynasty.params import TENSOR_KINDS, DynastyParams
from cimflow.compress.dynasty.quantizers import QuantizedWeight, QuantizeGradient, StraightThrough, TensorQuantizer
from cimflow.train import Hook, TrainState

QUANTIZED_LAYERS = (nn.Conv2d, nn.Linear)


def layer_geometry(name: str, module: nn.Module, x: Tensor, y: Tensor) -> LayerGeometry:
    """Shapes (per sample) and convolution settings the cost model needs."""
    if isinstance(module, nn.Conv2d):
        if module.padding_mode != "zeros" or isinstance(module.padding, str):
            raise ValueError(f"{name}: DYNASTY's cost model needs explicit zero padding")
        conv = (tuple(module.stride), tuple(module.padding), tuple(module.dilation), module.groups)
    else:
        conv = ((), (), (), 1)
    return LayerGeometry(name, tuple(module.weight.shape), tuple(x.shape[1:]), tuple(y.shape[1:]), *conv,
                         computes_input_gradient=x.requires_grad)


class DynastyHook(Hook):
    """Installs the block quantizers, runs the analytics and map updates, meters the cost.

    After training: :meth:`map_history`, :meth:`refresh_log`, :meth:`cost_table` and
    :meth:`summary`. The model is handed back with plain weights, as quantized at the end.
    """

    def __init__(self, params: DynastyParams, seed: int, fixed_bits: int | None = None) -> None:
        """``fixed_bits`` pins every block at that width: no analytics, no metadata (the baseline)."""
        self.params = params
        self.seed = seed
        self.candidates = (fixed_bits,) if fixed_bits is not None else tuple(params.candidate_bits)
        self.dynamic = len(self.candidates) > 1
        self.metadata_bits = math.ceil(math.log2(len(self.candidates)))
        self.quantizers: list[TensorQuantizer] = []
        self.geometries: dict[str, LayerGeometry] = {}
        self.generator: BitWidthMapGenerator | None = None
        self.meter: CostMeter | None = None
        self._state: TrainState | None = None
        self._handles: list = []
        self._layers: list[tuple[str, nn.Module]] = []
        self._loss_ema: float | None = None
        self._batch_size = 0
        self._kind_of_block: np.ndarray | None = None
        self._block_weights: np.ndarray | None = None
        self._mean_bits_now: dict[str, float] = {}
        self._bit_steps = dict.fromkeys(TENSOR_KINDS, 0.0)
        self._steps = 0
        self._history: list[tuple[int, np.ndarray, np.ndarray]] = []
        self._refreshes: list[dict[str, float]] = []

    # ------------------------------------------------------------------ hook points

    def on_train_start(self, state: TrainState) -> None:
        self._state = state
        rounding = torch.Generator(device=state.device).manual_seed(self.seed)
        self._layers = [(n, m) for n, m in state.model.named_modules() if isinstance(m, QUANTIZED_LAYERS)]
        for name, module in self._layers:
            weight, activation, gradient = (
                TensorQuantizer(name, kind, self.params.block_size, self.candidates[-1], self.candidates,
                                rounding if kind == "gradient" and self.params.stochastic_gradient_rounding else None)
                for kind in TENSOR_KINDS
            )
            self.quantizers += [weight, activation, gradient]
            parametrize.register_parametrization(module, "weight", QuantizedWeight(weight, self._analytics_due))
            self._handles.append(module.register_forward_pre_hook(partial(self._quantize_input, activation)))
            self._handles.append(module.register_forward_hook(partial(self._quantize_output_gradient, name, gradient)))

    def extra_loss(self, state: TrainState, logits: Tensor, targets: Tensor) -> None:
        """Observation point only: the batch loss feeds the stability EMA; no term is added."""
        loss = F.cross_entropy(logits.detach(), targets).item()
        decay = self.params.stability.loss_ema_decay
        self._loss_ema = loss if self._loss_ema is None else decay * self._loss_ema + (1 - decay) * loss
        self._batch_size = len(targets)

    def after_step(self, state: TrainState) -> None:
        if self.meter is None:
            self._setup()
        self.meter.add_step(self._batch_size)
        for kind in TENSOR_KINDS:
            self._bit_steps[kind] += self._mean_bits_now[kind]
        self._steps += 1
        if self._analytics_due(True):
            self._refresh(state.step + 1, state.epoch)

    def on_epoch_end(self, state: TrainState, metrics: dict[str, float]) -> None:
        totals = self.meter.table().iloc[-1]
        metrics["dynasty_mean_bits"] = self._mean_bits_now["all"]
        metrics["dynasty_stability_level"] = float(self.generator.level if self.generator else 0)
        metrics["dynasty_relative_time"] = float(totals["relative_time"])
        metrics["dynasty_relative_energy"] = float(totals["relative_energy"])

    def on_train_end(self, state: TrainState) -> None:
        """Remove every hook; each layer keeps the weight it trained with, on the final map's grid.

        The loss only ever saw the block-quantized weights; the fp32 master copy is the
        optimizer's accumulator. Handed on instead, it cost the 10-epoch CIFAR-10 DYNASTY
        model a point of accuracy (README).
        """
        for handle in self._handles:
            handle.remove()
        self._handles = []
        weights = {q.layer: q for q in self.quantizers if q.kind == "weight"}
        for name, module in self._layers:
            with torch.no_grad():
                trained = weights[name].quantize(module.parametrizations.weight.original, analyse=False)
                parametrize.remove_parametrizations(module, "weight", leave_parametrized=False)
                module.weight.copy_(trained)

    # ------------------------------------------------------------------ quantizer glue

    def _analytics_due(self, training: bool) -> bool:
        """This step measures sensitivities: the last warm-up step, then every ``refresh_interval``-th."""
        s = self._state
        since_warmup = s.step + 1 - self.params.warmup_epochs * s.steps_per_epoch
        return (self.dynamic and training and torch.is_grad_enabled()
                and since_warmup >= 0 and since_warmup % self.params.refresh_interval == 0)

    def _quantize_input(self, quantizer: TensorQuantizer, module: nn.Module, args: tuple) -> tuple:
        return (StraightThrough.apply(args[0], quantizer, self._analytics_due(module.training)), *args[1:])

    def _quantize_output_gradient(self, name: str, quantizer: TensorQuantizer, module: nn.Module,
                                  args: tuple, output: Tensor) -> Tensor:
        if module.training and name not in self.geometries:
            self.geometries[name] = layer_geometry(name, module, args[0], output)
        if not output.requires_grad:
            return output
        return QuantizeGradient.apply(output, quantizer, self._analytics_due(module.training))

    # ------------------------------------------------------------------ maps

    def _setup(self) -> None:
        """After the first step every layout and geometry is known: build generator and meter.

        A block's budget weight is its share (by entries) of the MACs its tensor feeds per
        sample, so the budget's mean width is the mean operand width seen by the MAC array.
        Layers doing at most ``widest_mac_share`` of the forward MACs keep the widest width:
        they cost little, and the network ends (image input, logits) are such layers.
        Their relative errors look like any other block's, yet coarse widths there made
        ResNet-20 on CIFAR-10 diverge or lag the 8-bit run (README).
        """
        geometries = []
        for name, _ in self._layers:
            if name not in self.geometries:
                raise RuntimeError(f"layer {name} did not run in the first training step")
            geometries.append(self.geometries[name])
        self.meter = CostMeter(geometries, self.params.cost, self.metadata_bits, self.params.block_size)
        forward = {name: macs["forward"] for name, macs in self.meter.macs.items()}
        widest = {name for name, m in forward.items() if m <= self.params.widest_mac_share * sum(forward.values())}
        weights, kinds, floors = [], [], []
        for q in self.quantizers:
            macs = self.meter.macs[q.layer]
            fed = sum(macs[phase] for phase in macs if q.kind in PHASE_OPERANDS[phase])
            sizes = q.layout.block_sizes().numpy()
            weights.append(fed * sizes / sizes.sum())
            kinds.append(np.full(len(sizes), TENSOR_KINDS.index(q.kind)))
            floor = self.candidates[-1] if q.layer in widest else getattr(self.params.min_bits, q.kind)
            floors.append(np.full(len(sizes), floor))
        self._block_weights = np.concatenate(weights)
        self._kind_of_block = np.concatenate(kinds)
        if self.dynamic:
            self.generator = BitWidthMapGenerator(self.candidates, self.params.target, self.params.hysteresis,
                                                  self.params.stability, self._block_weights, np.concatenate(floors))
        bits = np.concatenate([q.bits.cpu().numpy() for q in self.quantizers]).astype(np.int8)
        self._install(bits)
        self._history.append((0, bits, np.full(len(bits), np.nan, np.float32)))

    def _refresh(self, next_step: int, epoch: int) -> None:
        sensitivity = np.concatenate([q.sensitivity() for q in self.quantizers])
        total_steps = self._state.steps_per_epoch * self._state.params.epochs
        bits = self.generator.update(sensitivity, self._loss_ema, min(next_step / total_steps, 1.0)).astype(np.int8)
        start = 0
        for q in self.quantizers:
            q.set_bits(bits[start : start + q.layout.num_blocks])
            start += q.layout.num_blocks
        self._install(bits)
        chosen = sensitivity[np.arange(len(bits)), self.generator.index].astype(np.float32)
        self._history.append((next_step, bits, chosen))
        self._refreshes.append({
            "step": next_step, "epoch": epoch, "threshold": self.generator.threshold,
            "stability_level": self.generator.level, "loss_ema": self._loss_ema,
            **{f"mean_bits_{k}": v for k, v in self._mean_bits_now.items()},
        })

    def _install(self, bits: np.ndarray) -> None:
        """Book-keeping for a new map: cost rates and MAC-weighted mean widths (all and per kind)."""
        self.meter.set_widths(self._operand_widths())
        masks = {"all": np.ones(len(bits), bool)} | {
            k: self._kind_of_block == i for i, k in enumerate(TENSOR_KINDS)}
        self._mean_bits_now = {name: float(self._block_weights[m] @ bits[m] / self._block_weights[m].sum())
                               for name, m in masks.items()}

    def _operand_widths(self) -> dict[str, OperandWidths]:
        by_layer: dict[str, dict[str, TensorQuantizer]] = {}
        for q in self.quantizers:
            by_layer.setdefault(q.layer, {})[q.kind] = q
        widths = {}
        for name, qs in by_layer.items():
            maps = {k: q.layout.expand(q.bits.cpu().double()) for k, q in qs.items()}
            widths[name] = OperandWidths(maps["weight"], maps["activation"], maps["gradient"],
                                         *(qs[k].layout.num_blocks for k in TENSOR_KINDS))
        return widths

    # ------------------------------------------------------------------ results

    def map_history(self) -> pd.DataFrame:
        """Every map in force: rows (step it took effect, layer, kind, block, bits, sensitivity at those bits).

        The step-0 map (all blocks at the widest candidate) has no sensitivity (NaN).
        Compact dtypes (categorical names, int8 widths, float32 sensitivities): the 10-epoch
        CIFAR-10 ResNet-20 run kept 7.9 million rows (150 MB in memory, 35 MB of Parquet).
        """
        layers = [name for name, _ in self._layers]
        layer = np.concatenate([np.full(q.layout.num_blocks, layers.index(q.layer)) for q in self.quantizers])
        kind = np.concatenate([np.full(q.layout.num_blocks, TENSOR_KINDS.index(q.kind)) for q in self.quantizers])
        block = np.concatenate([np.arange(q.layout.num_blocks) for q in self.quantizers])
        n = len(self._history)
        return pd.DataFrame({
            "step": np.repeat([step for step, _, _ in self._history], len(block)).astype(np.int64),
            "layer": pd.Categorical.from_codes(np.tile(layer, n), layers),
            "kind": pd.Categorical.from_codes(np.tile(kind, n), TENSOR_KINDS),
            "block": np.tile(block, n).astype(np.int32),
            "bits": np.concatenate([bits for _, bits, _ in self._history]).astype(np.int8),
            "sensitivity": np.concatenate([s for _, _, s in self._history]).astype(np.float32),
        })

    def refresh_log(self) -> pd.DataFrame:
        """One row per map refresh: threshold, stability level, loss EMA, MAC-weighted mean widths."""
        return pd.DataFrame(self._refreshes)

    def cost_table(self) -> pd.DataFrame:
        """Modeled cost per layer and phase over the whole run, plus the total row (see dynasty.cost)."""
        return self.meter.table()

    def summary(self) -> dict[str, float]:
        """Headline numbers: modeled speedup and energy reduction vs the uniform baseline (bit-exact and
        brick-granular), the re-blocking charge on the backward GEMMs, weight storage, mean widths."""
        total = self.meter.table().iloc[-1]
        payload = total["bits_moved"] - total["metadata_bits"]
        return {
            "modeled_speedup": float(1.0 / total["relative_time"]),
            "modeled_energy_reduction": float(1.0 / total["relative_energy"]),
            "modeled_speedup_brick": float(1.0 / total["relative_time_brick"]),
            "modeled_energy_reduction_brick": float(1.0 / total["relative_energy_brick"]),
            **self.meter.backward_reblock_ratios(),
            **self.weight_storage(),
            "mean_width_product": float(total["mac_bit_products"] / total["macs"]),
            **{f"mean_bits_{k}": self._bit_steps[k] / self._steps for k in TENSOR_KINDS},
            "metadata_overhead": float(total["metadata_bits"] / payload),
            "map_refreshes": float(len(self._refreshes)),
            "final_stability_level": float(self.generator.level if self.generator else 0),
        }

    def weight_storage(self) -> dict[str, float]:
        """Bytes of the conv/linear layers as trained: BFP weights at the final map (payload, exponent and
        width metadata per block) against uniform ``baseline_bits`` BFP (exponents only); fp32 biases in both."""
        cost = self.params.cost
        biases = 32.0 * sum(m.bias.numel() for _, m in self._layers if m.bias is not None)
        dynasty = baseline = biases
        for q in self.quantizers:
            if q.kind == "weight":
                sizes = q.layout.block_sizes()
                dynasty += weight_storage_bits(sizes, q.bits.cpu(), cost.exponent_bits + self.metadata_bits)
                baseline += weight_storage_bits(sizes, torch.full_like(sizes, cost.baseline_bits), cost.exponent_bits)
        return {"weight_storage_bytes": dynasty / 8, "weight_storage_bytes_baseline": baseline / 8}
