"""Image-quality metrics of reconstructions and statistics of code grids.

Images are ``(N, H, W)`` float arrays in ``[0, 1]`` (typically 256x128, possibly a
read-only ``np.memmap``); code grids are ``(N, h, w)`` integer arrays in ``[0, K)``.

* Reconstruction: per-image SSIM / PSNR (scikit-image) and a JSON-ready summary.
* Prior baselines: entropy of the code histogram (= the unigram model's bits per code),
  smoothed unigram cross-entropy, and an i.i.d. unigram code sampler.
* ``evenly_spaced``: the one "pick a few to show" rule of the notebooks and figures.

The quality of *generated* samples (Fréchet distance, nearest-neighbour SSIM) is measured
in `hipgen_utils.sample_quality`, which reuses the input checks here.
"""

from __future__ import annotations

import numpy as np
from skimage.metrics import peak_signal_noise_ratio, structural_similarity
from tqdm.auto import tqdm

PSNR_CAP_DB = 100.0  # PSNR of identical images is +inf; capped so means stay finite
MIN_SIDE = 7  # skimage SSIM uses a 7x7 window


# ----------------------------------------------------------------------------- validation


def _check_images(name: str, images, min_side: int = MIN_SIDE) -> np.ndarray:
    """Return ``images`` as an array (no copy for arrays/memmaps) after shape checks."""
    arr = images if isinstance(images, np.ndarray) else np.asarray(images)
    if arr.ndim != 3:
        raise ValueError(f"{name}: expected (N, H, W) images, got shape {arr.shape}")
    if arr.shape[0] == 0:
        raise ValueError(f"{name}: got 0 images, need at least 1")
    if arr.shape[1] < min_side or arr.shape[2] < min_side:
        raise ValueError(f"{name}: images {arr.shape[1:]} are smaller than {min_side}x{min_side}")
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise ValueError(f"{name}: expected a numeric image array, got dtype {arr.dtype}")
    return arr


def _check_pair(x, y) -> tuple[np.ndarray, np.ndarray]:
    x = _check_images("x", x)
    y = _check_images("y", y)
    if x.shape != y.shape:
        raise ValueError(f"x and y must have the same shape, got {x.shape} and {y.shape}")
    return x, y


def _check_codes(name: str, codes, n_codes: int) -> np.ndarray:
    if int(n_codes) < 1:
        raise ValueError(f"n_codes must be >= 1, got {n_codes}")
    arr = np.asarray(codes)
    if not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{name}: expected integer codes, got dtype {arr.dtype}")
    if arr.size == 0:
        raise ValueError(f"{name}: got an empty code array")
    lo, hi = int(arr.min()), int(arr.max())
    if lo < 0 or hi >= n_codes:
        raise ValueError(f"{name}: codes must lie in [0, {n_codes}), got range [{lo}, {hi}]")
    return arr


def _code_counts(codes: np.ndarray, n_codes: int) -> np.ndarray:
    return np.bincount(codes.ravel(), minlength=n_codes).astype(np.float64)


# ----------------------------------------------------------------------------- reconstruction


def ssim_per_image(x, y, progress: bool = False) -> np.ndarray:
    """SSIM of each image pair.

    x, y: (N, H, W) float in [0, 1], same shape, H and W >= 7.
    Returns (N,) float64, ``skimage.metrics.structural_similarity(..., data_range=1.0)``
    (7x7 uniform window, the scikit-image defaults), 1.0 for identical images.
    """
    x, y = _check_pair(x, y)
    out = np.empty(len(x), dtype=np.float64)
    for i in tqdm(range(len(x)), desc="SSIM", disable=not progress):
        out[i] = structural_similarity(
            np.asarray(x[i], dtype=np.float64), np.asarray(y[i], dtype=np.float64), data_range=1.0
        )
    return out


def psnr_per_image(x, y) -> np.ndarray:
    """PSNR (dB) of each image pair with ``data_range=1.0``.

    x, y: (N, H, W) float in [0, 1], same shape. Returns (N,) float64.
    Identical images (MSE = 0) would give +inf; every value is capped at
    ``PSNR_CAP_DB`` = 100 dB so that means stay finite.
    """
    x, y = _check_pair(x, y)
    out = np.empty(len(x), dtype=np.float64)
    for i in range(len(x)):
        xi = np.asarray(x[i], dtype=np.float64)
        yi = np.asarray(y[i], dtype=np.float64)
        # checked first so skimage does not divide by zero (and warn) on identical images
        if np.array_equal(xi, yi):
            out[i] = PSNR_CAP_DB
        else:
            out[i] = min(peak_signal_noise_ratio(xi, yi, data_range=1.0), PSNR_CAP_DB)
    return out


def reconstruction_summary(ssim, psnr) -> dict:
    """JSON-ready summary of per-image SSIM (N,) and PSNR (N,) arrays.

    Returns {"ssim_mean", "ssim_median", "ssim_min", "frac_ssim_gt_0_6", "psnr_mean"}
    as Python floats and "n_images" as an int.
    """
    ssim = np.asarray(ssim, dtype=np.float64)
    psnr = np.asarray(psnr, dtype=np.float64)
    if ssim.ndim != 1 or psnr.ndim != 1 or len(ssim) != len(psnr) or len(ssim) == 0:
        raise ValueError(
            f"ssim and psnr must be non-empty 1-D arrays of equal length, got {ssim.shape} and {psnr.shape}"
        )
    if not (np.isfinite(ssim).all() and np.isfinite(psnr).all()):
        raise ValueError("ssim and psnr must be finite (psnr_per_image caps identical images)")
    return {
        "ssim_mean": float(ssim.mean()),
        "ssim_median": float(np.median(ssim)),
        "ssim_min": float(ssim.min()),
        "frac_ssim_gt_0_6": float(np.mean(ssim > 0.6)),
        "psnr_mean": float(psnr.mean()),
        "n_images": int(len(ssim)),
    }


# ----------------------------------------------------------------------------- code baselines


def perplexity(counts) -> float:
    """2 ** entropy (bits) of a code-usage histogram (K,): the effective number of codes used
    (K for uniform use, 1 for a single code)."""
    c = np.asarray(counts, dtype=np.float64).reshape(-1)
    if c.size == 0 or c.sum() <= 0:
        raise ValueError("code counts are all zero: nothing was encoded")
    p = c[c > 0] / c.sum()
    return float(2.0 ** -(p * np.log2(p)).sum())


def code_entropy_bits(codes, n_codes: int) -> float:
    """Entropy (bits) of the histogram of ``codes`` (any shape, ints in [0, n_codes)).

    This is the bits per code of a unigram model evaluated on the data it was fitted on.
    """
    codes = _check_codes("codes", codes, n_codes)
    p = _code_counts(codes, n_codes)
    p = p[p > 0] / p.sum()
    return float(-(p * np.log2(p)).sum()) + 0.0  # + 0.0 turns -0.0 into 0.0


def unigram_bits_per_code(train_codes, eval_codes, n_codes: int) -> float:
    """Cross-entropy (bits per code) of ``eval_codes`` under the train code histogram.

    The histogram uses add-one (Laplace) smoothing, p_k = (count_k + 1) / (total + K),
    so codes unseen in training cost log2(total + K) bits instead of infinity.
    """
    train_codes = _check_codes("train_codes", train_codes, n_codes)
    eval_codes = _check_codes("eval_codes", eval_codes, n_codes)
    counts = _code_counts(train_codes, n_codes) + 1.0
    log_p = np.log2(counts / counts.sum())
    eval_counts = _code_counts(eval_codes, n_codes)
    return float(-(eval_counts * log_p).sum() / eval_counts.sum())


def sample_unigram_codes(train_codes, n: int, shape, n_codes: int, seed: int = 0) -> np.ndarray:
    """Draw (n, h, w) int64 codes i.i.d. from the (unsmoothed) train code histogram.

    The "unigram" reference for sample quality: right code frequencies, no spatial
    structure. ``shape`` is (h, w). Deterministic given ``seed``.
    """
    train_codes = _check_codes("train_codes", train_codes, n_codes)
    shape = tuple(int(s) for s in shape)
    if len(shape) != 2 or min(shape) < 1 or int(n) < 1:
        raise ValueError(f"need n >= 1 and shape (h, w) with h, w >= 1, got n={n}, shape={shape}")
    p = _code_counts(train_codes, n_codes)
    rng = np.random.default_rng(seed)
    return rng.choice(n_codes, size=(int(n), *shape), p=p / p.sum()).astype(np.int64)


def evenly_spaced(n: int, k: int) -> np.ndarray:
    """`k` indices spread evenly over 0..n-1, first and last included (all n when n <= k):
    sorted, unique int64. The one "pick a few to show" rule of the notebooks and figures."""
    return np.unique(np.round(np.linspace(0, n - 1, min(k, n))).astype(np.int64))
