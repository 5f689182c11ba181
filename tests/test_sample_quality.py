"""Tests for hipgen_utils.sample_quality (small synthetic images, fast)."""

import numpy as np
import pytest
from conftest import BLOB_HW, blobs, noise
from skimage.metrics import structural_similarity

from hipgen_utils import sample_quality as sq

H, W = BLOB_HW


# ----------------------------------------------------------------------------- features / Fréchet


def test_image_features_fixed_size_and_batching():
    x = blobs(5, 0)
    f = sq.image_features(x)
    assert f.shape == (5, 3780 + 512 + 16) and f.dtype == np.float64
    assert np.allclose(sq.image_features(x, batch_size=2), f)
    # histogram part sums to 1 and each group has L2 norm <= 1
    assert np.allclose(f[:, -16:].sum(1), 1.0)
    assert np.all(np.linalg.norm(f[:, :3780], axis=1) <= 1.0 + 1e-9)
    assert np.all(np.linalg.norm(f[:, 3780:-16], axis=1) <= 1.0 + 1e-9)
    # any image size maps to the same feature space
    assert sq.image_features(blobs(2, 0, h=256, w=128)).shape == (2, f.shape[1])


def test_frechet_distance_properties():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((400, 3))
    b = rng.standard_normal((300, 3)) * 1.5
    assert sq.frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    assert sq.frechet_distance(a, b) == pytest.approx(sq.frechet_distance(b, a), rel=1e-6)
    shift = np.array([1.0, -2.0, 0.5])
    assert sq.frechet_distance(a, a + shift) == pytest.approx(shift @ shift, rel=1e-6)
    d1 = sq.frechet_distance(a, a + 0.5 * shift)
    assert 0 < d1 < sq.frechet_distance(a, a + shift)
    # fewer samples than dimensions: singular covariances must still give a finite value >= 0
    small = sq.frechet_distance(rng.standard_normal((5, 10)), rng.standard_normal((6, 10)))
    assert np.isfinite(small) and small >= 0
    with pytest.raises(ValueError, match="equal D"):
        sq.frechet_distance(a, a[:, :2])


def test_frechet_reference_separates_blobs_from_noise():
    ref = sq.FrechetReference(blobs(40, 0), n_components=8)
    assert ref.n_components == 8
    set1, set2, nz = blobs(30, 1), blobs(30, 2), noise(30, 3)
    assert ref.features(set1).shape == (30, 8)
    assert ref.distance(set1, set1) == pytest.approx(0.0, abs=1e-6)
    assert ref.distance(set1, nz) > 5 * ref.distance(set1, set2)
    # components capped at N - 1
    assert sq.FrechetReference(blobs(5, 0), n_components=64).n_components == 4


# ----------------------------------------------------------------------------- nearest neighbours


def test_nearest_neighbour_finds_hidden_copy():
    refs = blobs(50, 0)
    samples = refs[[7, 31]].copy()
    ssim, idx = sq.nearest_neighbour_ssim(samples, refs, n_candidates=3)
    assert np.allclose(ssim, 1.0)
    assert idx.tolist() == [7, 31]


def test_nearest_neighbour_prefilter_matches_exhaustive():
    refs = blobs(40, 0)
    rng = np.random.default_rng(5)
    # noisy versions of some references plus unrelated blob images
    samples = np.concatenate(
        [refs[[3, 17, 29]] + 0.05 * rng.standard_normal((3, H, W)), blobs(5, 9)]
    )
    samples = np.clip(samples, 0, 1).astype(np.float32)
    exhaustive = np.array(
        [[structural_similarity(s, r, data_range=1.0) for r in refs] for s in samples]
    )
    ssim, idx = sq.nearest_neighbour_ssim(samples, refs, n_candidates=10)
    # near copies: the prefilter finds exactly the SSIM-best reference
    assert idx[:3].tolist() == [3, 17, 29] == exhaustive[:3].argmax(1).tolist()
    assert np.allclose(ssim[:3], exhaustive[:3].max(1))
    # unrelated images: an approximation (L2 candidates may miss the SSIM-best), never above
    # the exhaustive best and close to it on this set
    assert np.all(ssim <= exhaustive.max(1) + 1e-6)
    assert np.all(ssim >= exhaustive.max(1) - 0.05)
    assert np.allclose(ssim, exhaustive[np.arange(len(samples)), idx])
    # n_candidates >= number of references is the exhaustive search
    ssim_all, idx_all = sq.nearest_neighbour_ssim(samples, refs, n_candidates=100)
    assert idx_all.tolist() == exhaustive.argmax(1).tolist()
    assert np.allclose(ssim_all, exhaustive.max(1))


# ----------------------------------------------------------------------------- sample quality


def test_sample_quality_floor_below_ceiling():
    train, test = blobs(60, 0), blobs(40, 1)
    samples = np.concatenate([train[:2], blobs(14, 2)])  # 2 exact copies of training images
    unigram = noise(40, 3)
    q = sq.sample_quality(samples, train, test, unigram, seed=0)
    assert set(q) >= {
        "nn_ssim_median",
        "frac_near_copies",
        "fid_samples",
        "fid_test_vs_train",
        "fid_unigram",
        "feature_space",
    }
    assert q["fid_test_vs_train"] < q["fid_unigram"]
    assert q["fid_samples"] < q["fid_unigram"]  # samples here are blobs, like the test set
    assert q["fid_train_floor"] < q["fid_train_unigram"] and q["fid_train_samples"] < q["fid_train_unigram"]
    assert q["n_train_reference"] == 16 and 0 < q["spread_ratio"]
    assert q["frac_near_copies"] == pytest.approx(2 / 16)
    assert isinstance(q["feature_space"], str) and "HOG" in q["feature_space"]
    with pytest.raises(ValueError, match="differ in image size"):
        sq.sample_quality(samples, train, blobs(4, 1, h=32), unigram)


def _clustered(n, seed, n_kinds, kinds_seed=100, jitter=0.02):
    """(n, H, W) images each one of `n_kinds` blob images (drawn with `kinds_seed`) plus a
    little noise: a set of few "patients" when n_kinds is small."""
    kinds = blobs(n_kinds, kinds_seed)
    rng = np.random.default_rng(seed)
    pick = rng.integers(0, n_kinds, n)
    return np.clip(kinds[pick] + jitter * rng.standard_normal((n, H, W)), 0, 1).astype(np.float32)


def test_train_referenced_floor_catches_samples_too_alike_that_the_test_floor_rewards():
    # train: many "patients"; test: two of them; samples: all alike, the average patient
    train, kinds = _clustered(300, 0, 30), blobs(30, 100)
    test = np.clip(kinds[[3, 7] * 20] + 0.02 * np.random.default_rng(2).standard_normal((40, H, W)), 0, 1)
    samples = np.clip(kinds.mean(0) + 0.02 * np.random.default_rng(3).standard_normal((40, H, W)), 0, 1)
    q = sq.sample_quality(samples.astype(np.float32), train, test.astype(np.float32), noise(40, 4), seed=0)
    # against the two-patient test split the train slices are no floor: the too-alike
    # samples score below them, as the demo's samples did
    assert q["fid_samples"] < q["fid_test_vs_train"]
    # against the training distribution the samples are far above the real-vs-real floor,
    # and far less varied than real slices
    assert q["fid_train_samples"] > 2 * q["fid_train_floor"]
    assert q["spread_ratio"] < 0.3
    # real slices of the same distribution score the floor (within chance)
    real = sq.sample_quality(_clustered(40, 5, 30), train, test.astype(np.float32), noise(40, 4), seed=0)
    assert real["fid_train_samples"] < 2 * real["fid_train_floor"] and real["spread_ratio"] > 0.6


def test_feature_spread_and_train_referenced_checks():
    rng = np.random.default_rng(0)
    f = rng.standard_normal((200, 3)) * [1.0, 2.0, 3.0]
    assert sq.feature_spread(f) == pytest.approx(14.0, rel=0.15)
    with pytest.raises(ValueError, match="N >= 2"):
        sq.feature_spread(f[:1])
    with pytest.raises(ValueError, match="one size >= 2"):
        sq.train_referenced(f[:10], f[10:20], f[20:25], f[30:40])
    r = sq.train_referenced(f[:50], f[50:100], f[100:150], f[150:] * 5)
    assert r["fid_train_floor"] < r["fid_train_unigram"] and r["n_train_reference"] == 50
