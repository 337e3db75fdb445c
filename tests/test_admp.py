"""ADMP building blocks: gradient reversal, ADMM double masks, physical channel removal."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from cimflow.compress.admp.dann import DannHook
from cimflow.compress.admp.game import AdmpHook, GameSettings
from cimflow.compress.admp.masks import DoubleMask, MaskedModel
from cimflow.compress.admp.reversal import GradientReversal, dann_strength
from cimflow.shrink import ShrinkError, channel_chains, shrink
from cimflow.config import load_params
from cimflow.data.domains import load_digits_shift
from cimflow.evaluate import count_macs, count_parameters
from cimflow.models import build_model
from cimflow.preprocess import Preprocessor
from cimflow.train import seed_everything, train


def test_gradient_reversal_is_identity_forward_and_flips_the_gradient():
    x = torch.randn(4, 3, requires_grad=True)
    weights = torch.randn(4, 3)
    y = GradientReversal(0.7)(x)
    assert torch.equal(y, x)
    (y * weights).sum().backward()
    assert torch.allclose(x.grad, -0.7 * weights)


def test_dann_strength_ramps_from_zero_towards_one():
    values = [dann_strength(p / 10) for p in range(11)]
    assert values[0] == 0.0 and values[-1] > 0.99
    assert all(a < b for a, b in zip(values, values[1:]))
    with pytest.raises(ValueError, match="progress"):
        dann_strength(1.5)


def test_admm_projection_keeps_exactly_the_top_k_and_updates_the_dual():
    mask = DoubleMask(10, 0.6)
    assert mask.keep == 4
    torch.manual_seed(0)
    with torch.no_grad():
        mask.hard.copy_(torch.randn(10))
        mask.dual.copy_(torch.randn(10) * 0.1)
    shifted = (mask.hard + mask.dual).detach().clone()
    dual_before = mask.dual.clone()
    mask.admm_step()
    assert int(mask.target.sum()) == 4
    kept = shifted[mask.kept()]
    assert kept.min() >= shifted[~mask.kept()].max()
    assert torch.allclose(mask.dual, dual_before + mask.hard.detach() - mask.target)
    expected = (mask.hard - mask.target + mask.dual).detach().pow(2).sum()
    assert float(mask.penalty().detach()) == pytest.approx(float(expected))


def test_soft_mask_multiplies_only_in_the_adversarial_step():
    mask = DoubleMask(3, 0.0)
    features = torch.ones(2, 3, 4, 4)
    assert torch.equal(mask(features), features)
    mask.adversarial = True
    assert torch.allclose(mask(features), features)  # soft scores all equal: mean-1 soft mask is 1
    with torch.no_grad():
        mask.soft_scores.copy_(torch.tensor([0.0, 1.0, 2.0]))
    weights = torch.sigmoid(torch.tensor([0.0, 1.0, 2.0]))
    assert torch.allclose(mask(features)[0, :, 0, 0], weights / weights.mean())
    with pytest.raises(ValueError, match="ratio"):
        DoubleMask(3, 1.0)


def test_prunable_chains_stop_at_residuals_and_the_output():
    lenet = build_model("lenet5", 1, 10, 28)
    chains = {c.layer: c for c in channel_chains(lenet)}
    assert sorted(chains) == ["conv1", "conv2", "fc1"]
    assert chains["conv2"].consumer == "fc1" and chains["conv2"].norm is None
    resnet = build_model("resnet20", 3, 10, 32)
    names = {c.layer for c in channel_chains(resnet)}
    assert "layers.0.conv1" in names and "layers.0.conv2" not in names and "conv1" not in names
    assert {c.norm for c in channel_chains(resnet) if c.layer == "layers.0.conv1"} == {"layers.0.bn1"}


def _random_keep(chains, ratio: float, seed: int) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    keep = {}
    for chain in chains:
        mask = DoubleMask(chain.channels, ratio)
        mask.start(torch.rand(chain.channels, generator=generator))
        keep[chain.layer] = mask.kept()
    return keep


@pytest.mark.parametrize("name,shape", [("lenet5", (1, 28)), ("resnet20", (3, 32))])
def test_shrunk_model_equals_the_masked_one(name, shape):
    torch.manual_seed(0)
    channels, side = shape
    model = build_model(name, channels, 10, side)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.5, 0.5)
    model.eval()
    chains = channel_chains(model)
    keep = _random_keep(chains, 0.6, 1)
    masked = MaskedModel(model, chains, 0.6)
    for layer, kept in keep.items():
        masked.mask(layer).target.copy_(kept.float())
        masked.mask(layer).harden()
    x = torch.randn(5, channels, side, side)
    with torch.no_grad():
        expected = model(x)
        masked.remove()
        small = shrink(model, keep)
        assert torch.allclose(small(x), expected, atol=1e-5)
    shape = (channels, side, side)
    assert count_parameters(small)[0] < count_parameters(model)[0]
    assert count_macs(small, shape) < count_macs(model, shape)
    for layer, kept in keep.items():
        assert small.get_submodule(layer).weight.shape[0] == int(kept.sum())  # physically gone


def test_lenet5_counts_and_bad_plans():
    lenet = build_model("lenet5", 1, 10, 28)
    assert count_parameters(lenet)[0] == 431_080
    assert count_macs(lenet, (1, 28, 28)) == 20 * 25 * 24 * 24 + 50 * 20 * 25 * 8 * 8 + 800 * 500 + 500 * 10
    with pytest.raises(ShrinkError, match="fc2"):
        shrink(lenet, {"fc2": torch.ones(10, dtype=torch.bool)})
    with pytest.raises(ShrinkError, match="conv1"):
        shrink(lenet, {"conv1": torch.zeros(20, dtype=torch.bool)})


def _digits_shift(epochs: int, **train_overrides):
    pair = load_digits_shift(0.25, seed=0)
    update = {"epochs": epochs, "warmup_epochs": 0, **train_overrides}
    params = load_params("params.yaml").train["digits"].model_copy(update=update)
    return pair, params, Preprocessor.fit(pair.source_train.images, 28)


def _tiny_domain_run(hooks, with_target: bool):
    pair, params, prep = _digits_shift(1)
    seed_everything(0)
    model = build_model("lenet5", 1, 10, 28)
    source, target = pair.source_train, pair.unlabeled()
    history = train(model, source.images[:128], source.labels[:128], source.images[128:192], source.labels[128:192],
                    prep, params, 0, hooks, torch.device("cpu"), target.images[:100] if with_target else None)
    return model, history


def test_dann_hook_trains_a_domain_classifier_through_the_shared_loop():
    hook = DannHook()
    model, history = _tiny_domain_run([hook], with_target=True)
    assert 0.0 < history[0]["domain_loss"] < 10.0 and 0.0 <= history[0]["domain_accuracy"] <= 1.0
    assert not model.fc2._forward_pre_hooks  # the feature capture is gone after training
    with pytest.raises(ValueError, match="target images"):
        _tiny_domain_run([DannHook()], with_target=False)


def test_admp_game_ties_the_hard_masks_to_binary_top_k_through_the_shared_loop():
    teacher, _ = _tiny_domain_run([], with_target=False)
    student = copy.deepcopy(teacher)
    masked = MaskedModel(student, channel_chains(student), 0.6)
    hook = AdmpHook(teacher, masked, GameSettings(rho=1.0, rho_growth=2.0))
    pair, params, prep = _digits_shift(3, lr=0.005)
    src = pair.source_train
    history = train(student, src.images[:128], src.labels[:128], src.images[128:192], src.labels[128:192], prep,
                    params, 0, [hook], torch.device("cpu"), pair.unlabeled().images[:128])
    assert [row["epoch"] for row in hook.periods] == [1, 2, 3]
    assert hook.periods[-1]["rho"] == pytest.approx(4.0)  # grown after epochs 1 and 2
    assert hook.periods[-1]["mask_distance"] < hook.periods[0]["mask_distance"]  # the ADMM tie pulls m to Z
    assert "discrepancy" in history[-1]
    for layer in masked.chains:
        kept = masked.mask(layer).kept()
        assert int(kept.sum()) == masked.mask(layer).keep  # exactly k channels, every period
        hard = masked.mask(layer).hard.detach()
        assert float(hard.min()) >= 0.0 and float(hard.max()) <= 1.0  # relaxed masks stay in [0, 1]
    for mask in masked.masks.values():
        mask.harden()
    x = prep(pair.target_test.images[:16])
    with torch.no_grad():
        expected = student(x)
        keep = masked.keep()
        masked.remove()
        assert torch.allclose(shrink(student, keep)(x), expected, atol=1e-4)
