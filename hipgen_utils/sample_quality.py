"""Sample quality: how close generated slices are to real ones, and whether they are copies.

Images are ``(N, H, W)`` float arrays in ``[0, 1]`` (typically 256x128, possibly a
read-only ``np.memmap``), checked like those of `hipgen_utils.metrics`.

* A Fréchet distance in a *fixed, download-free* hand-crafted feature space
  (``image_features``: HOG + coarse intensities + intensity histogram, PCA fitted on train
  images by ``FrechetReference``), the analogue of FID without an ImageNet network.
* Nearest-neighbour SSIM against the training set (``nearest_neighbour_ssim``) to detect
  memorised copies.
* ``sample_quality``: both together, with the real-vs-real floor and the unigram-codes
  ceiling that make the numbers readable (`train_referenced`: the floor compares two sets
  of training slices, the distribution the prior learned). Its keys are part of
  ``sample_quality.json``, written by `pipeline.prior_report`.

The anatomy judge reuses ``FrechetReference`` with its segmenter's features instead.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg
from skimage.feature import hog
from skimage.metrics import structural_similarity
from skimage.transform import downscale_local_mean, resize
from tqdm.auto import tqdm

from hipgen_utils.metrics import _check_images  # the shared (N, H, W) image checks

NEAR_COPY_SSIM = 0.95  # nearest-neighbour SSIM above this counts as a near copy

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


def feature_spread(feats) -> float:
    """Total variance (trace of the covariance) of an (N, D) feature set, N >= 2: how varied
    a set of images is in that feature space. `spread_ratio` in the reports is the
    samples' spread over a real set's: below 1, the samples vary less than real slices."""
    f = np.asarray(feats, dtype=np.float64)
    if f.ndim != 2 or len(f) < 2:
        raise ValueError(f"need an (N, D) feature array with N >= 2, got shape {f.shape}")
    return float(np.trace(np.atleast_2d(np.cov(f, rowvar=False))))


def train_referenced(f_samples, f_reference, f_floor, f_unigram) -> dict:
    """Fréchet distances to the training distribution, with a floor that is one.

    f_reference and f_floor: features of two disjoint sets of training slices (the same
    size, drawn the same way); f_samples: the samples' (the same size, or the first that
    many are used). A prior that draws from its training distribution scores the floor,
    real slices against real slices of the same distribution; one whose samples are too
    alike, or wrong, scores above it. (Against a held-out test split of a few patients the
    "floor" of other patients' slices is no floor: with the demo's two test case-weeks,
    samples that vary less than real slices scored below it.) Returns
    ``{"fid_train_samples", "fid_train_floor", "fid_train_unigram", "spread_ratio",
    "n_train_reference"}``."""
    k = len(f_reference)
    if len(f_floor) != k or min(k, len(f_samples), len(f_unigram)) < 2:
        raise ValueError(
            f"need reference and floor sets of one size >= 2 and >= 2 samples, got "
            f"{len(f_reference)}, {len(f_floor)}, {len(f_samples)}"
        )
    f_samples, f_unigram = np.asarray(f_samples)[:k], np.asarray(f_unigram)[:k]
    return {
        "fid_train_samples": frechet_distance(f_samples, f_reference),
        "fid_train_floor": frechet_distance(f_floor, f_reference),
        "fid_train_unigram": frechet_distance(f_unigram, f_reference),
        "spread_ratio": feature_spread(f_samples) / max(feature_spread(f_reference), 1e-12),
        "n_train_reference": int(k),
    }


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
    * Fréchet distances to the training distribution in ``FrechetReference`` space, fitted
      on a seeded subset of train images (`train_referenced`): "fid_train_samples"
      (samples vs a reference subset of train), the floor "fid_train_floor" (a disjoint
      train subset of the same size vs the reference), the ceiling "fid_train_unigram"
      (images decoded from i.i.d. unigram codes) and "spread_ratio" (the samples' feature
      variance over the reference's). These can fail: samples that are wrong, or too
      alike, score above the floor.
    * The same against the test images, kept for comparison with earlier reports:
      "fid_samples", "fid_test_vs_train" and "fid_unigram". With a test split of a few
      patients, train slices (many patients) are farther from it than samples that vary
      less than real slices, so "fid_test_vs_train" is no floor there.

    To keep it cheap and comparable each set is subsampled (seeded) to at most
    m = max(len(samples), 256) images. The train subsets are disjoint from the one the PCA
    is fitted on when there are enough train images. Returns a JSON-ready dict with those
    keys plus "n_fid_images" (the compared set sizes) and "feature_space".
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

    # two disjoint train subsets of one size for the train-referenced distances, apart from
    # the PCA's fit where there is room
    rest = perm[m:] if len(train) - m >= 4 else perm
    k = min(len(samples), len(rest) // 2)
    vs_train = {}
    if k >= 2:
        vs_train = train_referenced(
            f_samples[:k],
            ref.features(subset(train, rest[:k]), progress=progress),
            ref.features(subset(train, rest[k : 2 * k]), progress=progress),
            f_unigram,
        )

    nn_ssim, _ = nearest_neighbour_ssim(samples, train, progress=progress)
    return {
        **vs_train,
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
