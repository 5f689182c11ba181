"""Bring one raw slice to the form the models see: `normalise` its intensities to float32
in [0, 1] (per image), `harmonise` its shape to ``IMAGE_SHAPE`` (resize, or centre crop/pad;
labels keep their values). Before that, `repair_nonfinite` sets a few NaN/Inf voxels to the
slice's own finite extremes (more are refused), and `normalise_with_notes` also measures what
the normalisation did with voxels far above the rest of the slice, so the loader can count them.

`load_split` applies both to every slice, normalising the raw slice first. Decoded arrays
are cached, so a change to what these compute needs a bump of `decode_cache.CACHE_VERSION`,
or old caches are reused.
"""

from __future__ import annotations

import numpy as np
from skimage.transform import resize as sk_resize

from .data_types import BadFileError, DataError

IMAGE_SHAPE = (256, 128)
RESIZE_MODES = ("resize", "crop")
NORMS = ("robust", "minmax", "zscore")


def _crop_or_pad(img: np.ndarray, shape) -> np.ndarray:
    out = np.zeros(shape, dtype=img.dtype)
    src, dst = [], []
    for n_in, n_out in zip(img.shape, shape):
        if n_in >= n_out:  # centre crop
            a = (n_in - n_out) // 2
            src.append(slice(a, a + n_out))
            dst.append(slice(0, n_out))
        else:  # centre zero-pad
            a = (n_out - n_in) // 2
            src.append(slice(0, n_in))
            dst.append(slice(a, a + n_in))
    out[tuple(dst)] = img[tuple(src)]
    return out


def harmonise(img: np.ndarray, shape=IMAGE_SHAPE, mode: str = "resize", is_label: bool = False):
    """Bring a 2-D slice to `shape` ``(H, W)``.

    ``mode="resize"``: images bilinear (order 1) with anti-aliasing, returned float32;
    labels nearest (order 0, no anti-aliasing) so no new label values appear, dtype kept.
    ``mode="crop"``: centre crop / zero pad each axis, dtype kept (float32 for images)."""
    if mode not in RESIZE_MODES:
        raise DataError(f"unknown resize mode {mode!r}; choose one of {', '.join(RESIZE_MODES)}")
    img = np.asarray(img)
    if img.ndim != 2:
        raise DataError(f"harmonise expects a 2-D slice, got shape {img.shape}")
    shape = tuple(int(s) for s in shape)
    if not is_label:
        img = img.astype(np.float32, copy=False)
    if img.shape == shape:
        return img
    if mode == "crop":
        return _crop_or_pad(img, shape)
    if is_label:
        out = sk_resize(img, shape, order=0, anti_aliasing=False, preserve_range=True)
        return out.astype(img.dtype)
    out = sk_resize(img, shape, order=1, anti_aliasing=True, preserve_range=True)
    return out.astype(np.float32)


# A few NaN/Inf voxels (a division in an exporter's background, an overflowing scale) are set
# to the slice's finite extremes and counted; a slice with more than this fraction of them is
# refused (328 voxels of 256x128: not a few stray voxels any more)
MAX_NONFINITE_FRACTION = 0.01


def repair_nonfinite(img: np.ndarray, path=None) -> tuple[np.ndarray, int]:
    """(img, n): NaN and -Inf voxels set to the slice's lowest finite value, +Inf to its highest,
    and how many voxels that changed (0: `img` itself is returned).

    Raises BadFileError naming `path` when more than MAX_NONFINITE_FRACTION of the voxels are
    not finite (or none is finite)."""
    img = np.asarray(img)
    if img.dtype.kind != "f":
        return img, 0
    ok = np.isfinite(img)
    n = int(img.size - np.count_nonzero(ok))
    if n == 0:
        return img, 0
    where = path if path is not None else "<array>"
    if n > MAX_NONFINITE_FRACTION * img.size:
        raise BadFileError(
            where,
            f"NaN/Inf voxels ({n} of {img.size}, more than {MAX_NONFINITE_FRACTION:.0%} of the slice); "
            "re-export the slice",
        )
    lo, hi = img[ok].min(), img[ok].max()
    out = np.where(ok, img, np.where(img == np.inf, hi, lo)).astype(img.dtype)
    return out, n


# `normalise_with_notes`: a slice whose brightest voxel lies more than SPIKE_RANGES robust ranges
# (p99.5 - p0.5) above its 99.5th percentile has voxels "far above the rest"; the robust
# normalisation clips them to 1 (min-max and z-score let them set the scale). A slice whose
# 90th percentile, after normalisation, is below DARK_BULK is "nearly black": a bright region
# larger than the 0.5 % the robust range ignores set the scale. On the full-size phantom's
# 12,660 slices the spike is at most 0.42 and the 90th percentile at least 0.72; ten voxels
# at 50x the slice's maximum give a spike of about 55 (clipped: the rest is unchanged), a
# block of 1 % of the slice at 10x a 90th percentile of 0.07 (the rest squashed); see
# docs/data.md
SPIKE_RANGES = 1.0
DARK_BULK = 0.15


def normalise(img: np.ndarray, method: str = "robust", path=None) -> np.ndarray:
    """Per-image intensity normalisation of any dtype/scale to float32 in [0, 1].

    ``"robust"``: min-max between the 0.5 and 99.5 percentiles, then clip (falls back to
    min-max when those percentiles coincide, e.g. a mostly-empty slice);
    ``"minmax"``: plain min-max; ``"zscore"``: (x - mean) / std clipped to +-3, mapped to
    [0, 1]. A constant image raises BadFileError naming `path`."""
    return normalise_with_notes(img, method, path)[0]


def normalise_with_notes(img: np.ndarray, method: str = "robust", path=None) -> tuple[np.ndarray, float, float]:
    """(`normalise`'s result, spike, bulk), the percentiles computed once (the loader's path).

    spike = (max - p99.5) / (p99.5 - p0.5) of the raw slice (0 when those percentiles
    coincide): how far its brightest voxel lies above the rest, in robust ranges; bulk = the
    slice's 90th percentile brought through the same normalisation (see SPIKE_RANGES,
    DARK_BULK)."""
    if method not in NORMS:
        raise DataError(f"unknown normalisation {method!r}; choose one of {', '.join(NORMS)}")
    x = np.asarray(img, dtype=np.float64)
    lo, hi = float(x.min()), float(x.max())
    if not hi > lo:
        raise BadFileError(
            path if path is not None else "<array>",
            f"constant image (every voxel = {lo:g}); nothing to learn, remove it or use skip_bad",
        )
    plo, p90, phi = (float(v) for v in np.percentile(x, [0.5, 90, 99.5]))
    spike = (hi - phi) / (phi - plo) if phi > plo else 0.0
    if method == "zscore":
        mean, std = x.mean(), x.std()
        y = (np.clip((x - mean) / std, -3.0, 3.0) + 3.0) / 6.0
        bulk = (min(max((p90 - mean) / std, -3.0), 3.0) + 3.0) / 6.0
    else:
        if method == "robust" and phi > plo:
            lo, hi = plo, phi
        y = np.clip((x - lo) / (hi - lo), 0.0, 1.0)
        bulk = min(max((p90 - lo) / (hi - lo), 0.0), 1.0)
    return y.astype(np.float32), float(spike), float(bulk)
