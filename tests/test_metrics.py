"""Tests for hipgen_utils.metrics (small synthetic images, fast)."""

import numpy as np
import pytest
from conftest import blobs

from hipgen_utils import metrics

# ----------------------------------------------------------------------------- SSIM / PSNR


def test_ssim_identical_is_one_and_decreases_with_noise():
    x = blobs(4, 0)
    assert np.allclose(metrics.ssim_per_image(x, x), 1.0)
    rng = np.random.default_rng(1)
    scores = []
    for sigma in (0.02, 0.1, 0.3):
        y = np.clip(x + sigma * rng.standard_normal(x.shape), 0, 1).astype(np.float32)
        scores.append(metrics.ssim_per_image(x, y))
    assert scores[0].shape == (4,)
    assert np.all(scores[0] < 1.0)
    assert np.all(scores[0] > scores[1]) and np.all(scores[1] > scores[2])


def test_ssim_works_on_readonly_memmap(tmp_path):
    x = blobs(3, 0)
    mm = np.lib.format.open_memmap(tmp_path / "x.npy", mode="w+", dtype=np.float32, shape=x.shape)
    mm[:] = x
    mm.flush()
    ro = np.load(tmp_path / "x.npy", mmap_mode="r")
    assert np.allclose(metrics.ssim_per_image(ro, x), 1.0)


def test_shape_mismatch_errors_are_one_line():
    with pytest.raises(ValueError, match="same shape") as e:
        metrics.ssim_per_image(blobs(2, 0), blobs(3, 0))
    assert "\n" not in str(e.value)
    with pytest.raises(ValueError, match="same shape"):
        metrics.psnr_per_image(blobs(2, 0), blobs(2, 0, h=32))
    with pytest.raises(ValueError, match=r"\(N, H, W\)"):
        metrics.ssim_per_image(blobs(1, 0)[0], blobs(1, 0)[0])


def test_psnr_known_mse_and_cap():
    x = np.zeros((2, 16, 16), dtype=np.float32)
    y = x.copy()
    y[0] = 0.1  # MSE 0.01 -> 10 * log10(1 / 0.01) = 20 dB
    psnr = metrics.psnr_per_image(x, y)
    assert psnr[0] == pytest.approx(20.0, abs=1e-4)
    assert psnr[1] == metrics.PSNR_CAP_DB  # identical -> capped, not inf


def test_reconstruction_summary():
    ssim = np.array([0.5, 0.6, 0.7, 0.9])
    psnr = np.array([20.0, 25.0, 30.0, 100.0])
    s = metrics.reconstruction_summary(ssim, psnr)
    assert set(s) == {
        "ssim_mean",
        "ssim_median",
        "ssim_min",
        "frac_ssim_gt_0_6",
        "psnr_mean",
        "n_images",
    }
    assert s["frac_ssim_gt_0_6"] == 0.5  # 0.6 itself is not > 0.6
    assert s["ssim_median"] == pytest.approx(0.65)
    assert s["ssim_min"] == 0.5 and s["psnr_mean"] == 43.75 and s["n_images"] == 4
    assert type(s["ssim_mean"]) is float and type(s["n_images"]) is int
    with pytest.raises(ValueError, match="equal length"):
        metrics.reconstruction_summary(ssim, psnr[:3])


# ----------------------------------------------------------------------------- code baselines


def test_code_entropy():
    uniform = np.arange(8).repeat(5).reshape(5, 2, 4)
    assert metrics.code_entropy_bits(uniform, 8) == pytest.approx(3.0)
    assert metrics.code_entropy_bits(np.full((3, 4, 4), 5), 8) == 0.0
    # unused codes in the codebook do not change the entropy
    assert metrics.code_entropy_bits(uniform, 64) == pytest.approx(3.0)
    with pytest.raises(ValueError, match=r"\[0, 8\)"):
        metrics.code_entropy_bits(np.array([0, 8]), 8)


def test_unigram_cross_entropy_smoothed():
    train = np.zeros((2, 4, 4), dtype=np.int64)  # only code 0 seen (32 times)
    unseen = np.ones((1, 4, 4), dtype=np.int64)
    bits = metrics.unigram_bits_per_code(train, unseen, 4)
    assert np.isfinite(bits)
    assert bits == pytest.approx(np.log2(32 + 4))  # p = 1 / (32 + 4)
    seen = metrics.unigram_bits_per_code(train, train, 4)
    assert seen == pytest.approx(-np.log2(33 / 36))
    # on uniform data, the smoothed cross-entropy matches the plain entropy
    uni = np.arange(8).repeat(100)
    assert metrics.unigram_bits_per_code(uni, uni, 8) == pytest.approx(3.0)


def test_unigram_sampler_histogram_and_determinism():
    p = np.array([0.5, 0.3, 0.2, 0.0])
    train = np.repeat(np.arange(4), (p * 1000).astype(int)).reshape(10, 10, 10)
    codes = metrics.sample_unigram_codes(train, 50, (8, 4), 4, seed=3)
    assert codes.shape == (50, 8, 4) and codes.dtype == np.int64
    freq = np.bincount(codes.ravel(), minlength=4) / codes.size
    assert np.allclose(freq, p, atol=0.04)
    assert freq[3] == 0.0  # unsmoothed: unseen codes never drawn
    again = metrics.sample_unigram_codes(train, 50, (8, 4), 4, seed=3)
    other = metrics.sample_unigram_codes(train, 50, (8, 4), 4, seed=4)
    assert np.array_equal(codes, again) and not np.array_equal(codes, other)
