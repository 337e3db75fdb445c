"""Feature Regularization: the per-pixel sparsifier, its controller, multi-level training
and the MAC count from non-zeros."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cimflow.compress.featreg.hook import FeatRegHook
from cimflow.compress.featreg.sparsify import Sparsifier, calibrate, quantile, rank_channels
from cimflow.models import EDSRBaseline, ESPCN
from cimflow.sr.macs import MacCounter, conv_macs
from cimflow.train import TrainState


class _Relu(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(x)


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_backbones_upscale_by_the_scale(scale):
    x = torch.rand(2, 1, 12, 10)
    assert ESPCN(scale)(x).shape == (2, 1, 12 * scale, 10 * scale)
    assert EDSRBaseline(scale, blocks=2, features=16)(x).shape == (2, 1, 12 * scale, 10 * scale)


def test_topk_keeps_exactly_k_channels_per_pixel_and_passes_gradient_to_them_only():
    net = _Relu()
    sparsifier = Sparsifier(net, "topk", [0.75], 0.9)
    sparsifier.level = 0
    x = (torch.rand(2, 16, 5, 5) + 0.1).requires_grad_(True)  # positive and distinct: no ties
    out = net(x)
    kept = out != 0
    assert (kept.sum(1) == 4).all()  # ceil(0.25 * 16)
    assert torch.equal(out[kept], x[kept])
    kth = x.detach().topk(4, dim=1).values[:, -1:]  # each pixel's 4th largest
    assert torch.equal(kept, x.detach() >= kth)
    out.sum().backward()
    assert torch.equal(x.grad, kept.to(x.grad.dtype))


def test_threshold_mode_hits_the_level_on_the_batch_and_tracks_a_running_threshold():
    net = _Relu()
    net.train()
    sparsifier = Sparsifier(net, "threshold", [0.6, 0.9], 0.5)
    torch.manual_seed(0)
    for level in (0, 1):
        sparsifier.level = level
        x = torch.rand(4, 8, 16, 16)
        out = net(x)
        assert float((out == 0).double().mean()) == pytest.approx(sparsifier.levels[level], abs=1e-3)
        # running average from 0 with momentum 0.5: half of this batch's quantile
        expected = 0.5 * quantile(x.flatten(), sparsifier.levels[level])
        assert float(sparsifier.thresholds[level, 0]) == pytest.approx(expected)
    net.eval()
    sparsifier.level = 1
    tau = float(sparsifier.thresholds[1, 0])
    out = net(torch.full((1, 8, 2, 2), tau * 1.01))
    assert (out != 0).all()
    assert sparsifier.take_dropped() is not None and sparsifier.take_dropped() is None


def test_the_controller_reaches_the_requested_sparsity_on_held_out_images():
    """Thresholds calibrated on some natural images give each level within 2 points on others."""
    import skimage.data

    from cimflow.sr.data import as_rgb
    from cimflow.sr.inference import y_tensor

    torch.manual_seed(0)
    model = ESPCN(2)
    for conv in (model.conv1, model.conv2):  # centred biases: a live mix of positive and negative pre-activations
        nn.init.zeros_(conv.bias)
    crop = lambda im: as_rgb(im, "test")[:160, :160]  # noqa: E731
    held = [y_tensor(crop(getattr(skimage.data, n)())) for n in ("astronaut", "coffee", "chelsea")]
    calib = [y_tensor(crop(getattr(skimage.data, n)())) for n in ("rocket", "brick", "clock", "coins")]
    levels = [0.6, 0.75, 0.9, 0.95]
    sparsifier = Sparsifier(model, "threshold", levels)
    calibrate(model, sparsifier, calib, max_entries=50_000, seed=0)
    seen: list[float] = []
    model.relu2.register_forward_hook(lambda _m, _i, out: seen.append(float((out == 0).double().mean())))
    model.relu1.register_forward_hook(lambda _m, _i, out: seen.append(float((out == 0).double().mean())))
    for level, target in enumerate(levels):
        sparsifier.level = level
        seen.clear()
        with torch.no_grad():
            for x in held:
                model(x)
        assert np.mean(seen) == pytest.approx(target, abs=0.02)


def test_multi_level_training_runs_the_sandwich_and_restores_the_sparsest_level():
    torch.manual_seed(0)
    model = ESPCN(2, features=(8, 8))
    sparsifier = Sparsifier(model, "threshold", [0.5, 0.7, 0.9], 0.9)
    hook = FeatRegHook(sparsifier, 0.01, seed=0)
    state = TrainState(model, torch.optim.SGD(model.parameters(), lr=0.1), None, torch.device("cpu"), 1,
                       loss_fn=F.l1_loss)
    hook.on_train_start(state)
    calls = []
    model.conv1.register_forward_pre_hook(lambda *_: calls.append(sparsifier.level))
    x, y = torch.rand(2, 1, 8, 8), torch.rand(2, 1, 16, 16)
    state.inputs = x
    out = model(x)
    loss = F.l1_loss(out, y) + hook.extra_loss(state, out, y)
    loss.backward()
    assert calls[0] == 2 and calls[1] == 0 and calls[2] == 1  # sparsest (the loop's), densest, one between
    assert sparsifier.level == 2 and torch.isfinite(loss)
    assert model.conv1.weight.grad is not None


def test_macs_count_the_nonzero_entries_of_each_receptive_field():
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 5, 3, padding=1)
    x = torch.rand(1, 3, 7, 6) * (torch.rand(1, 3, 7, 6) > 0.6)
    count = conv_macs("c", conv, x)
    patches = F.unfold(x, 3, padding=1)  # (1, 3*9, 42): every output pixel's receptive field
    assert count.sparse_macs == int((patches != 0).sum()) * 5
    assert count.dense_macs == 7 * 6 * 5 * 3 * 9
    assert count.input_sparsity == pytest.approx(float((x == 0).double().mean()))


def test_an_all_zero_feature_map_costs_nothing_past_that_layer():
    model = ESPCN(2, features=(8, 8))
    with torch.no_grad():
        model.conv1.bias.fill_(-1e3)  # relu1 outputs only zeros
        model.conv2.bias.fill_(-1.0)  # so relu2 sees -1 everywhere: zeros too
    with MacCounter(model) as counter:
        model(torch.rand(1, 1, 10, 10))
    counts = {c.layer: c for c in counter.take()}
    assert counts["conv1"].sparse_macs > 0
    assert counts["conv2"].sparse_macs == 0 and counts["conv3"].sparse_macs == 0
    assert counts["conv2"].input_sparsity == 1.0


def test_channel_mode_keeps_the_same_ranked_channels_everywhere_nested_across_levels():
    torch.manual_seed(0)
    model = ESPCN(2, features=(16, 8)).eval()
    sparsifier = Sparsifier(model, "channel", [0.5, 0.75])
    patches = torch.rand(32, 1, 12, 12)
    rank_channels(model, sparsifier, patches)
    for j, width in enumerate((16, 8)):
        low, high = sparsifier.kept[0, j], sparsifier.kept[1, j]
        assert int(low.sum()) == width // 2 and int(high.sum()) == width // 4
        assert bool((low | ~high).all())  # the sparser level keeps a subset
    seen = []
    model.relu1.register_forward_hook(lambda _m, _i, out: seen.append(out))
    sparsifier.level = 1
    with torch.no_grad():
        model(torch.rand(2, 1, 10, 10))
    alive = seen[-1].abs().sum(dim=(0, 2, 3)) > 0
    assert not bool(alive[~sparsifier.kept[1, 0]].any())  # dropped channels are zero at every pixel
    back = Sparsifier.from_table(ESPCN(2, features=(16, 8)), sparsifier.table().assign(mode="channel"), "t")
    assert all(torch.equal(back.kept[k], sparsifier.kept[k]) for k in sparsifier.kept)
    unranked = Sparsifier(ESPCN(2, features=(16, 8)), "channel", [0.5])
    unranked.level = 0
    with pytest.raises(RuntimeError, match="rank_channels"):
        unranked._mask(0, torch.ones(1, 16, 2, 2), False)


def test_channel_mode_is_evaluated_with_its_channels_removed_against_the_full_dense_count():
    import copy

    import skimage.data

    from cimflow.sr import data as srdata
    from cimflow.sr.evaluate import evaluate
    from cimflow.sr.inference import to_pixels, y_tensor
    from cimflow.sr.metrics import psnr_y, rgb_to_y

    torch.manual_seed(0)
    model = ESPCN(2, features=(16, 8)).eval()
    data = srdata.make_pairs([("astronaut", srdata.as_rgb(skimage.data.astronaut(), "a")[:48, :48])], "test", 2)
    sparsifier = Sparsifier(model, "channel", [0.5, 0.75])
    rank_channels(model, sparsifier, torch.rand(16, 1, 12, 12))
    masked = copy.deepcopy(model)
    reference = Sparsifier.from_table(masked, sparsifier.table().assign(mode="channel"), "t")
    result = evaluate(model, data, sparsifier)
    layers = result.layers.set_index(["level", "layer"])
    full_conv1 = 24 * 24 * 16 * 25
    for level, label in enumerate(("0.5", "0.75")):
        reference.level = level
        with torch.no_grad():
            expected = to_pixels(masked(y_tensor(data.lr[0])))
        row = result.images[result.images["level"] == label].iloc[0]
        assert row["psnr"] == pytest.approx(psnr_y(expected, rgb_to_y(data.hr[0]), 2), abs=1e-3)  # as masked
        assert layers.loc[(label, "conv1"), "dense_macs"] == full_conv1  # the network as trained
        kept = 1.0 - float(label)
        assert layers.loc[(label, "conv1"), "sparse_macs"] <= kept * full_conv1  # pruned outputs cost nothing
        assert row["feature_sparsity"] >= float(label)  # removed channels count as zeros of the full width
        assert layers.loc[(label, "conv2"), "input_sparsity"] >= float(label)
