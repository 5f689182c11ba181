"""Bring one raw slice to the form the models see: `normalise` its intensities to float32
in [0, 1] (per image), `harmonise` its shape to ``IMAGE_SHAPE`` (resize, or centre crop/pad;
labels keep their values).

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


def normalise(img: np.ndarray, method: str = "robust", path=None) -> np.ndarray:
    """Per-image intensity normalisation of any dtype/scale to float32 in [0, 1].

    ``"robust"``: min-max between the 0.5 and 99.5 percentiles, then clip (falls back to
    min-max when those percentiles coincide, e.g. a mostly-empty slice);
    ``"minmax"``: plain min-max; ``"zscore"``: (x - mean) / std clipped to +-3, mapped to
    [0, 1]. A constant image raises BadFileError naming `path`."""
    if method not in NORMS:
        raise DataError(f"unknown normalisation {method!r}; choose one of {', '.join(NORMS)}")
    x = np.asarray(img, dtype=np.float64)
    lo, hi = float(x.min()), float(x.max())
    if not hi > lo:
        raise BadFileError(
            path if path is not None else "<array>",
            f"constant image (every voxel = {lo:g}); nothing to learn, remove it or use skip_bad",
        )
    if method == "zscore":
        y = (np.clip((x - x.mean()) / x.std(), -3.0, 3.0) + 3.0) / 6.0
    else:
        if method == "robust":
            plo, phi = np.percentile(x, [0.5, 99.5])
            if phi > plo:
                lo, hi = float(plo), float(phi)
        y = np.clip((x - lo) / (hi - lo), 0.0, 1.0)
    return y.astype(np.float32)
