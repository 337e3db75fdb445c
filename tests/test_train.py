"""The shared training loop: deterministic, and every hook point is honoured."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cimflow.params.train import TrainParams
from cimflow.data.digits import load_digits
from cimflow.models import build_model
from cimflow.preprocess import Preprocessor, augment
from cimflow.train import Hook, TrainState, seed_everything, train
from conftest import LENET5


@pytest.fixture(scope="module")
def digits():
    return load_digits(0.25, 0)


def _params(**overrides) -> TrainParams:
    base = dict(model=LENET5, input_size=28, epochs=2, batch_size=64, lr=0.02, momentum=0.9,
                weight_decay=5e-4, schedule="cosine", warmup_epochs=0, crop_padding=2, hflip=False)
    return TrainParams(**(base | overrides))


def _train(digits, hooks=(), **overrides):
    train_split, test_split = digits
    torch.set_num_threads(1)
    seed_everything(0)
    model = build_model("lenet5", 1, 10, 28)
    prep = Preprocessor.fit(train_split.images, 28)
    history = train(model, train_split.images[:512], train_split.labels[:512], test_split.images,
                    test_split.labels, prep, _params(**overrides), seed=0, hooks=hooks,
                    device=torch.device("cpu"))
    return model, history


def test_same_seed_gives_bit_identical_weights(digits):
    a, hist_a = _train(digits)
    b, hist_b = _train(digits)
    for (name, wa), wb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(wa, wb), name
    assert [h["train_loss"] for h in hist_a] == [h["train_loss"] for h in hist_b]


def test_training_learns(digits):
    _, history = _train(digits, epochs=3)
    assert history[-1]["val_accuracy"] > 0.8


class _Recorder(Hook):
    """Masks half of fc1, adds an L2 term, and records every call."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def on_train_start(self, state: TrainState) -> None:
        self.calls.append("start")
        self.mask = torch.ones_like(state.model.fc1.weight)
        self.mask[:250] = 0
        with torch.no_grad():
            state.model.fc1.weight.mul_(self.mask)

    def make_scheduler(self, state):
        self.calls.append("scheduler")
        return torch.optim.lr_scheduler.LambdaLR(state.optimizer, lambda step: 0.5)

    def extra_loss(self, state, logits, targets):
        self.calls.append("loss")
        return 1e-4 * state.model.fc2.weight.pow(2).sum()

    def after_backward(self, state):
        state.model.fc1.weight.grad.mul_(self.mask)

    def after_step(self, state):
        self.calls.append("step")

    def on_epoch_end(self, state, metrics):
        metrics["hook_metric"] = 1.0

    def on_train_end(self, state):
        self.calls.append("end")


def test_hooks_mask_gradients_and_replace_schedule(digits):
    hook = _Recorder()
    model, history = _train(digits, hooks=[hook])
    assert torch.count_nonzero(model.fc1.weight[:250]) == 0
    assert torch.count_nonzero(model.fc1.weight[250:]) > 0
    assert hook.calls[:2] == ["start", "scheduler"] and hook.calls[-1] == "end"
    assert hook.calls.count("step") == 2 * 8  # 512 samples / 64 per batch, 2 epochs
    assert all(h["hook_metric"] == 1.0 for h in history)
    assert history[0]["lr"] == pytest.approx(0.01)


def test_augment_is_seeded_and_shape_preserving():
    x = torch.randn(8, 3, 32, 32)
    a = augment(x, torch.Generator().manual_seed(1), 4, True)
    b = augment(x, torch.Generator().manual_seed(1), 4, True)
    assert a.shape == x.shape and torch.equal(a, b)
    assert torch.equal(augment(x, torch.Generator(), 0, False), x)


def test_preprocessor_resizes_and_normalises():
    images = np.random.default_rng(0).integers(0, 256, (50, 1, 8, 8), dtype=np.uint8)
    prep = Preprocessor.fit(images, 28)
    x = prep(images)
    assert x.shape == (50, 1, 28, 28)
    assert abs(float(x.mean())) < 0.1


def test_cpu_determinism_is_strict_and_cuda_best_effort():
    """CPU runs must be bit-identical, so a nondeterministic op is an error there; on CUDA
    (ResNet-20's pooling backward has no deterministic kernel) it only warns."""
    seed_everything(0)
    assert torch.are_deterministic_algorithms_enabled()
    assert torch.is_deterministic_algorithms_warn_only_enabled() == torch.cuda.is_available()


def test_a_diverging_run_stops_with_the_step_and_learning_rate_named(digits):
    """A loss that turns NaN (here: an absurd learning rate) stops training with an error
    naming where and at what rate, instead of handing a NaN model to the next stage."""
    from cimflow.train import TrainingDiverged

    with pytest.raises(TrainingDiverged, match=r"training diverged: loss (nan|inf) at epoch 1, batch \d+ "
                                               r"\(learning rate [0-9.]+\)"):
        _train(digits, epochs=1, lr=10.0, warmup_epochs=0)
