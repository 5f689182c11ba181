"""Image-quality and sample-quality metrics.

Images are ``(N, H, W)`` float arrays in ``[0, 1]`` (typically 256x128, possibly a
read-only ``np.memmap``); code grids are ``(N, h, w)`` integer arrays in ``[0, K)``.

* Reconstruction: per-image SSIM / PSNR (scikit-image) and a JSON-ready summary.
* Prior baselines: entropy of the code histogram (= the unigram model's bits per code),
  smoothed unigram cross-entropy, and an i.i.d. unigram code sampler.
* Sample quality: a Fréchet distance in a *fixed, download-free* hand-crafted feature
  space (HOG + coarse intensities + intensity histogram, PCA fitted on train images),
  and nearest-neighbour SSIM against the training set to detect memorised copies.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg
from skimage.feature import hog
from skimage.metrics import peak_signal_noise_ratio, structural_similarity
from skimage.transform import downscale_local_mean, resize
from tqdm.auto import tqdm

PSNR_CAP_DB = 100.0  # PSNR of identical images is +inf; capped so means stay finite
NEAR_COPY_SSIM = 0.95  # nearest-neighbour SSIM above this counts as a near copy
MIN_SIDE = 7  # skimage SSIM uses a 7x7 window

# Fixed feature space (see image_features)
FEATURE_SIZE = (128, 64)  # every image is resized to this grid first
HOG_ORIENTATIONS = 9
HOG_CELL = (8, 8)
HOG_BLOCK = (2, 2)
COARSE_FACTOR = 4  # 128x64 -> 32x16 block means
HIST_BINS = 16
FEATURE_SPACE = (
    "HOG (9 orientations, 8x8-pixel cells, 2x2-cell L2-Hys blocks) of the image resized to "
    "128x64 + the 128x64 image block-averaged to 32x16 + a 16-bin intensity histogram, "
    "each group scaled to L2 norm <= 1"
)


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


# ----------------------------------------------------------------------------- features


def image_features(images, batch_size: int = 256, progress: bool = False) -> np.ndarray:
    """Fixed, download-free hand-crafted features of each image.

    images: (N, H, W) float in [0, 1] (clipped), H, W >= 7. Returns (N, 4308) float64,
    the concatenation of (for the default 128x64 feature grid):

    1. HOG (``skimage.feature.hog``: 9 orientations, 8x8-pixel cells, 2x2-cell blocks,
       L2-Hys) of the image resized to 128x64 (``skimage.transform.resize``,
       anti-aliased): 3780 values, divided by sqrt(number of blocks) = sqrt(105);
    2. the 128x64 image block-averaged 4x4 to 32x16: 512 values, divided by sqrt(512);
    3. a 16-bin histogram of the full-resolution intensities on [0, 1], as fractions: 16.

    The divisions give every group an L2 norm of at most 1, so no group dominates just by
    having more entries. Fine edges/texture (HOG), layout (block means) and contrast
    (histogram) are all represented. Since every image is resized to 128x64 first, any
    input size maps into the same space.
    """
    images = _check_images("images", images)
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    feats = []
    for start in tqdm(range(0, len(images), batch_size), desc="features", disable=not progress):
        batch = np.clip(np.asarray(images[start : start + batch_size], dtype=np.float64), 0.0, 1.0)
        b = len(batch)
        # anti-aliasing sigma is 0 along the batch axis (scale 1), so images stay independent
        small = resize(batch, (b, *FEATURE_SIZE), anti_aliasing=True)
        hogs = np.stack(
            [
                hog(
                    im,
                    orientations=HOG_ORIENTATIONS,
                    pixels_per_cell=HOG_CELL,
                    cells_per_block=HOG_BLOCK,
                    block_norm="L2-Hys",
                    feature_vector=True,
                )
                for im in small
            ]
        )
        n_blocks = hogs.shape[1] / (HOG_ORIENTATIONS * HOG_BLOCK[0] * HOG_BLOCK[1])
        coarse = downscale_local_mean(small, (1, COARSE_FACTOR, COARSE_FACTOR)).reshape(b, -1)
        bins = np.minimum((batch * HIST_BINS).astype(np.int64), HIST_BINS - 1).reshape(b, -1)
        bins += HIST_BINS * np.arange(b)[:, None]  # offset per image -> one bincount call
        hist = np.bincount(bins.ravel(), minlength=b * HIST_BINS).reshape(b, HIST_BINS)
        hist = hist / bins.shape[1]
        feats.append(
            np.concatenate(
                [hogs / np.sqrt(n_blocks), coarse / np.sqrt(coarse.shape[1]), hist], axis=1
            )
        )
    return np.concatenate(feats).astype(np.float64)


# ----------------------------------------------------------------------------- Fréchet distance


def frechet_distance(feat_a, feat_b) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets.

    feat_a: (Na, D), feat_b: (Nb, D) float, Na, Nb >= 2. Returns the float
    ||mu_a - mu_b||^2 + Tr(Ca + Cb - 2 sqrtm(Ca Cb)) >= 0 (``scipy.linalg.sqrtm``;
    its tiny imaginary part is dropped, and if the product is too singular for a finite
    root, 1e-6 is added to both diagonals). With fewer samples than dimensions the
    covariances are singular and the value is noisy and biased upwards: compare
    distances computed with the same set sizes.
    """
    a = np.asarray(feat_a, dtype=np.float64)
    b = np.asarray(feat_b, dtype=np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"need (N, D) feature arrays with equal D, got {a.shape} and {b.shape}")
    if len(a) < 2 or len(b) < 2:
        raise ValueError(f"need at least 2 feature vectors per set, got {len(a)} and {len(b)}")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError("feature arrays contain NaN or inf")
    mu_a, mu_b = a.mean(0), b.mean(0)
    ca = np.atleast_2d(np.cov(a, rowvar=False))
    cb = np.atleast_2d(np.cov(b, rowvar=False))
    covmean = scipy.linalg.sqrtm(ca @ cb)
    if not np.isfinite(covmean).all():
        eps = 1e-6 * np.eye(len(ca))
        covmean = scipy.linalg.sqrtm((ca + eps) @ (cb + eps))
    covmean = np.real(covmean)  # imaginary part is numerical noise for PSD inputs
    diff = mu_a - mu_b
    dist = diff @ diff + np.trace(ca) + np.trace(cb) - 2.0 * np.trace(covmean)
    return float(max(dist, 0.0))  # rounding can give tiny negatives for identical sets


class FrechetReference:
    """Fréchet distances in a PCA projection of ``image_features`` fitted on reference images.

    The PCA (numpy SVD of the centred reference features) keeps
    min(n_components, N_ref - 1, 4308) components, without whitening, so covariances are
    estimated in a low-dimensional, stable space that is the same for every compared set.

    reference_images: (N_ref, H, W) float in [0, 1], N_ref >= 2 (normally train images).
    features: None (``image_features``) or another function (N, H, W) images -> (N, F) features
    (the anatomy judge passes its segmenter's bottleneck features).
    """

    def __init__(self, reference_images, n_components: int = 64, progress: bool = False, features=None):
        if int(n_components) < 1:
            raise ValueError(f"n_components must be >= 1, got {n_components}")
        reference_images = _check_images("reference_images", reference_images)
        if len(reference_images) < 2:
            raise ValueError(
                f"reference_images: need at least 2 images, got {len(reference_images)}"
            )
        self._features = features
        feats = self._raw(reference_images, progress)
        self.mean = feats.mean(0)
        _, s, vt = np.linalg.svd(feats - self.mean, full_matrices=False)
        k = min(int(n_components), len(feats) - 1, feats.shape[1])
        self.components = vt[:k]  # (k, F)
        var = s**2
        self.explained_variance_ratio = float(var[:k].sum() / var.sum()) if var.sum() > 0 else 1.0
        self.n_components = k
        self.n_reference = len(feats)

    def project(self, feats: np.ndarray) -> np.ndarray:
        """(N, F) ``image_features`` output -> (N, n_components) float64."""
        return (np.asarray(feats, dtype=np.float64) - self.mean) @ self.components.T

    def _raw(self, images, progress: bool) -> np.ndarray:
        if self._features is None:
            return image_features(images, progress=progress)
        return np.asarray(self._features(images), dtype=np.float64)

    def features(self, images, progress: bool = False) -> np.ndarray:
        """(N, H, W) images in [0, 1] -> (N, n_components) float64 projected features."""
        return self.project(self._raw(images, progress))

    def distance(self, images_a, images_b) -> float:
        """Fréchet distance between two (N, H, W) image sets (each N >= 2) in this space."""
        return frechet_distance(self.features(images_a), self.features(images_b))

    def describe(self) -> str:
        """One-line description of the feature space, for reports and docs."""
        space = FEATURE_SPACE if self._features is None else getattr(self._features, "__name__", "custom features")
        return f"{space}; PCA to {self.n_components} dims fitted on {self.n_reference} train images"


# ----------------------------------------------------------------------------- nearest neighbours


def _coarse_vectors(images: np.ndarray, batch_size: int, progress: bool, desc: str) -> np.ndarray:
    """(N, H, W) -> (N, ceil(H/4) * ceil(W/4)) float32 4x4 block means (read in batches)."""
    out = []
    for start in tqdm(range(0, len(images), batch_size), desc=desc, disable=not progress):
        batch = np.asarray(images[start : start + batch_size], dtype=np.float32)
        out.append(downscale_local_mean(batch, (1, 4, 4)).reshape(len(batch), -1))
    return np.concatenate(out).astype(np.float32)


def nearest_neighbour_ssim(
    samples, references, n_candidates: int = 10, progress: bool = False, batch_size: int = 1024
) -> tuple[np.ndarray, np.ndarray]:
    """Best SSIM of each sample against a reference set, and which reference gave it.

    samples: (N, H, W), references: (M, H, W), float in [0, 1], same H and W.
    Returns ((N,) float64 SSIM, (N,) int64 reference index).

    Approximation: exhaustive SSIM against ~11k references is too slow, so each sample is
    first compared to all references by L2 distance between 4x4 block-averaged images
    (one matrix product), and exact ``structural_similarity(data_range=1.0)`` is computed
    only for its ``n_candidates`` nearest references. The true SSIM-nearest reference can
    be missed if it is not among those L2 candidates; an exact copy never is (distance 0).
    ``n_candidates >= M`` makes the search exhaustive.
    """
    samples = _check_images("samples", samples)
    references = _check_images("references", references)
    if samples.shape[1:] != references.shape[1:]:
        raise ValueError(
            f"samples {samples.shape[1:]} and references {references.shape[1:]} differ in image size"
        )
    if int(n_candidates) < 1:
        raise ValueError(f"n_candidates must be >= 1, got {n_candidates}")
    k = min(int(n_candidates), len(references))

    ref_vec = _coarse_vectors(references, batch_size, progress, "coarse refs")
    ref_sq = (ref_vec.astype(np.float64) ** 2).sum(1)
    smp_vec = _coarse_vectors(samples, batch_size, progress, "coarse samples")

    best_ssim = np.empty(len(samples), dtype=np.float64)
    best_idx = np.empty(len(samples), dtype=np.int64)
    chunk = 256  # bounds the (chunk, M) distance matrix
    bar = tqdm(total=len(samples), desc="NN SSIM", disable=not progress)
    for start in range(0, len(samples), chunk):
        s = smp_vec[start : start + chunk]
        # squared L2 up to the per-sample constant |s|^2, which does not change the ranking
        d = ref_sq[None, :] - 2.0 * (s @ ref_vec.T)
        cand = np.argpartition(d, k - 1, axis=1)[:, :k]
        for j in range(len(s)):
            order = cand[j][np.argsort(d[j, cand[j]], kind="stable")]  # ties -> L2-closest
            x = np.asarray(samples[start + j], dtype=np.float64)
            scores = [
                structural_similarity(
                    x, np.asarray(references[c], dtype=np.float64), data_range=1.0
                )
                for c in order
            ]
            b = int(np.argmax(scores))
            best_ssim[start + j] = scores[b]
            best_idx[start + j] = order[b]
            bar.update(1)
    bar.close()
    return best_ssim, best_idx


# ----------------------------------------------------------------------------- sample quality


def sample_quality(
    samples, train_images, test_images, unigram_images, seed: int = 0, progress: bool = False
) -> dict:
    """Sample-quality report for generated images (all inputs (N, H, W) float in [0, 1]).

    * Memorisation: nearest-neighbour SSIM of every sample against *all* train images
      (``nearest_neighbour_ssim``): "nn_ssim_median" and "frac_near_copies" (> 0.95).
    * Fréchet distances to the test images in ``FrechetReference`` space, fitted on a
      seeded subset of train images: "fid_samples" (samples vs test), the floor
      "fid_test_vs_train" (train subset vs test; real vs real) and the ceiling
      "fid_unigram" (images decoded from i.i.d. unigram codes vs test).

    To keep it cheap and comparable each set is subsampled (seeded) to at most
    m = max(len(samples), 256) images. The train subset for the floor is disjoint from
    the one the PCA is fitted on when there are >= 2m train images. Returns a JSON-ready
    dict with those keys plus "n_fid_images" (the compared set sizes) and "feature_space".
    """
    samples = _check_images("samples", samples)
    sets = {
        "train_images": _check_images("train_images", train_images),
        "test_images": _check_images("test_images", test_images),
        "unigram_images": _check_images("unigram_images", unigram_images),
    }
    for name, arr in sets.items():
        if arr.shape[1:] != samples.shape[1:]:
            raise ValueError(
                f"{name} {arr.shape[1:]} and samples {samples.shape[1:]} differ in image size"
            )
        if len(arr) < 2:
            raise ValueError(
                f"{name}: need at least 2 images for a Fréchet distance, got {len(arr)}"
            )
    if len(samples) < 2:
        raise ValueError(
            f"samples: need at least 2 images for a Fréchet distance, got {len(samples)}"
        )
    train, test, unigram = sets["train_images"], sets["test_images"], sets["unigram_images"]

    m = max(len(samples), 256)
    rng = np.random.default_rng(seed)

    def subset(arr, idx):
        return np.asarray(arr[np.sort(idx)])  # sorted: sequential reads from a memmap

    perm = rng.permutation(len(train))
    fit_idx = perm[:m]
    floor_idx = perm[m : 2 * m] if len(train) >= 2 * m else perm[-m:]
    test_idx = rng.permutation(len(test))[:m]
    unigram_idx = rng.permutation(len(unigram))[:m]

    ref = FrechetReference(subset(train, fit_idx), progress=progress)
    f_test = ref.features(subset(test, test_idx), progress=progress)
    f_samples = ref.features(samples, progress=progress)
    f_train = ref.features(subset(train, floor_idx), progress=progress)
    f_unigram = ref.features(subset(unigram, unigram_idx), progress=progress)

    nn_ssim, _ = nearest_neighbour_ssim(samples, train, progress=progress)
    return {
        "nn_ssim_median": float(np.median(nn_ssim)),
        "frac_near_copies": float(np.mean(nn_ssim > NEAR_COPY_SSIM)),
        "fid_samples": frechet_distance(f_samples, f_test),
        "fid_test_vs_train": frechet_distance(f_train, f_test),
        "fid_unigram": frechet_distance(f_unigram, f_test),
        "n_fid_images": {
            "samples": int(len(f_samples)),
            "train": int(len(f_train)),
            "test": int(len(f_test)),
            "unigram": int(len(f_unigram)),
        },
        "feature_space": ref.describe(),
    }


def evenly_spaced(n: int, k: int) -> np.ndarray:
    """`k` indices spread evenly over 0..n-1, first and last included (all n when n <= k):
    sorted, unique int64. The one "pick a few to show" rule of the notebooks and figures."""
    return np.unique(np.round(np.linspace(0, n - 1, min(k, n))).astype(np.int64))
