"""The SR evaluation protocol against its references: MATLAB bicubic worked by hand,
scikit-image's PSNR/SSIM, and the published bicubic rows on the real test sets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from cimflow.sr.metrics import modcrop, psnr_y, rgb_to_y, shave, ssim_y
from cimflow.sr.resize import imresize

REAL_SR = Path(__file__).resolve().parents[2] / "shared" / "data" / "sr"


def test_upscale_matches_the_matlab_weights_worked_by_hand() -> None:
    # imresize([0 1], 2): output 1 sits at u = 0.75 (1-based). Keys weights at distances
    # 1.75, 0.75, 0.25, 1.25 are -0.0234375, 0.2265625, 0.8671875, -0.0703125; the taps
    # at indices -1, 0 mirror to pixels 2 and 1, so out = 1.09375 a - 0.09375 b. Output 2
    # (u = 1.25) is 0.796875 a + 0.203125 b; the right half is the mirror image.
    out = imresize(np.array([[0.0, 1.0]]), output_shape=(1, 4))
    np.testing.assert_allclose(out[0], [-0.09375, 0.203125, 0.796875, 1.09375], atol=1e-12)


def test_downscale_is_antialiased_and_centred_as_matlab() -> None:
    # The stretched kernel is symmetric and reproduces linear ramps, so away from the
    # borders output x (1-based) is the ramp at u = 2x - 0.5, i.e. 0-based 2x - 1.5.
    ramp = np.tile(np.arange(32, dtype=np.float64), (32, 1))
    out = imresize(ramp, scale=0.5)
    assert out.shape == (16, 16)
    np.testing.assert_allclose(out[8, 4:12], 2 * np.arange(5, 13) - 1.5, atol=1e-9)
    # a checkerboard has no energy below Nyquist/2: antialiasing must flatten it
    board = (np.indices((32, 32)).sum(axis=0) % 2 * 255).astype(np.uint8)
    small = imresize(board, scale=0.5)
    assert small.dtype == np.uint8 and np.ptp(small[4:-4, 4:-4]) <= 1


def test_uint8_round_trip_and_shapes() -> None:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, size=(17, 23, 3), dtype=np.uint8)
    up = imresize(image, scale=3)
    assert up.shape == (51, 69, 3) and up.dtype == np.uint8
    assert imresize(image.astype(np.float32), scale=3).dtype == np.float64
    assert imresize(image, output_shape=(17, 23)).tolist() == image.tolist()  # scale 1 is the identity
    with pytest.raises(ValueError, match="exactly one"):
        imresize(image)


def test_y_channel_is_matlab_rgb2ycbcr() -> None:
    pixels = np.array([[[0, 0, 0], [255, 255, 255], [255, 0, 0], [0, 255, 0], [0, 0, 255]]], dtype=np.uint8)
    # MATLAB's rgb2ycbcr: black 16, white 235, pure R/G/B 81, 145, 41 (rounded)
    assert rgb_to_y(pixels)[0].tolist() == [16.0, 235.0, 81.0, 145.0, 41.0]
    assert rgb_to_y(pixels.astype(np.float64))[0, 2] == pytest.approx(16 + 65.481)
    assert modcrop(np.zeros((13, 10, 3)), 4).shape == (12, 8, 3)
    assert shave(np.zeros((10, 10)), 2).shape == (6, 6)


def test_psnr_and_ssim_agree_with_scikit_image() -> None:
    rng = np.random.default_rng(1)
    hr = rng.integers(0, 256, size=(48, 40)).astype(np.float64)
    sr = np.clip(hr + rng.normal(0, 8, hr.shape), 0, 255).round()
    a, b = shave(sr, 2), shave(hr, 2)
    assert psnr_y(sr, hr, 2) == pytest.approx(peak_signal_noise_ratio(b, a, data_range=255), abs=1e-9)
    reference = structural_similarity(b, a, data_range=255, gaussian_weights=True, sigma=1.5,
                                      use_sample_covariance=False)
    assert ssim_y(sr, hr, 2) == pytest.approx(reference, abs=1e-6)
    assert psnr_y(hr, hr, 2) == float("inf") and ssim_y(hr, hr, 2) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="differ in size"):
        psnr_y(sr[:-1], hr, 2)


# Published bicubic rows (PSNR dB / SSIM on Y, shave = scale): EDSR/SwinIR-style tables.
PUBLISHED = {("set5", 2): (33.66, 0.9299), ("set5", 3): (30.39, 0.8682), ("set5", 4): (28.42, 0.8104),
             ("bsd100", 2): (29.56, 0.8431), ("bsd100", 3): (27.21, 0.7385), ("bsd100", 4): (25.96, 0.6675)}


@pytest.mark.realdata
@pytest.mark.slow
@pytest.mark.parametrize("name, scale", sorted(PUBLISHED))
def test_bicubic_reproduces_the_published_rows(name: str, scale: int) -> None:
    from PIL import Image

    folder = REAL_SR / name
    if not folder.exists():
        pytest.skip(f"real data not present at {folder}")
    psnrs, ssims = [], []
    for path in sorted(folder.glob("*.png")):
        hr = modcrop(np.asarray(Image.open(path).convert("RGB")), scale)
        up = imresize(imresize(hr, scale=1.0 / scale), scale=float(scale))
        psnrs.append(psnr_y(up, hr, scale))
        ssims.append(ssim_y(up, hr, scale))
    psnr, ssim = PUBLISHED[(name, scale)]
    assert np.mean(psnrs) == pytest.approx(psnr, abs=0.05)
    assert np.mean(ssims) == pytest.approx(ssim, abs=0.001)
