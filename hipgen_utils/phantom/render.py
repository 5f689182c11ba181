"""The phantom's renderer: one slice of a case-week, and the public ways to get one.

`_Renderer` puts the drawing kit of canvas.py together with the pelvis (pelvis.py) and the
organs (organs.py); its `render` fixes the slice's z and per-slice geometry, draws the
body, bones, vessels and organs in order, then gives the MR look: scanner point spread, a
fine texture, the smooth surface-coil bias field, signal falloff at the slab ends and
Rician noise. `phantom_slice` and `tissue_slice` are the public entry points (the release
writer, release.py, drives `_Renderer` directly, one per case-week). The renderer is split
over four files only to keep each readable; a change to the drawing needs a bump of
PHANTOM_VERSION (release.py), so cached phantoms are regenerated.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from hipgen_utils.phantom.anatomy import DEFAULT_SHAPE
from hipgen_utils.phantom.canvas import _to_disk
from hipgen_utils.phantom.organs import _Organs
from hipgen_utils.phantom.pelvis import _Pelvis


class _Renderer(_Pelvis, _Organs):
    """Draws the slices of one case-week on the canonical (LR, AP) canvas (set up by
    `_Canvas`; the pelvis and the organs by `_Pelvis` and `_Organs`)."""

    def render(self, slice_idx, rng, clean=False, noise=True):
        """(image, label) on the canonical canvas: float32 about [0, 1], uint8 0..5.
        noise=False: everything but the Rician noise (the week's sigma is week["noise"])."""
        c, w = self.case, self.week
        W, H, P = self.W, self.H, self.PAD
        self.t = t = slice_idx / (self.n - 1) if self.n > 1 else 0.5
        self.z = c["z0"] + t * c["zspan"] + w["dz"]
        ox, oy = (int(v) for v in rng.integers(0, 2 * P, size=2))
        view = (slice(ox, ox + W), slice(oy, oy + H))
        self.tc = self.tex_coarse[view]
        self.wb = self.wobble[view]
        self.img = np.zeros((W, H), np.float32)
        self.lab = np.zeros((W, H), np.uint8)
        if self.tissue is not None:
            self.tissue = np.zeros((W, H), np.uint8)
        self._sacrum_geometry()
        self.y_pr = self.Yn(-13)
        self.rec = self._rectum_geometry()
        self._body(view)
        self._pelvic_fat()
        for s in (-1, 1):
            self._hip_bones(s)
        self._sacrum()
        self._vessels()
        self._bowel()
        self._bladder()
        self._prostate()
        self._rectum()
        if self.tissue is not None:
            self.tissue[self.lab == 0] = 0
        if clean:
            return self.img, self.lab
        # MR look: fine texture, coil bias, signal falloff at the slab ends, Rician noise
        img = ndimage.gaussian_filter(self.img, 0.6, truncate=2.5)  # scanner point spread
        img *= self.tex_fine[view] * self.bias
        img *= 1.0 - 0.12 * (2 * t - 1) ** 2
        if not noise:
            return img, self.lab
        n = rng.standard_normal((2, W, H), dtype=np.float32)
        n *= w["noise"]
        img += n[0]
        img = np.sqrt(img * img + n[1] * n[1])
        return img, self.lab


def _check_slice_args(slice_idx, n_slices, shape):
    if int(n_slices) < 1:
        raise ValueError(f"n_slices={n_slices} must be >= 1")
    if not 0 <= int(slice_idx) < int(n_slices):
        raise ValueError(f"slice_idx={slice_idx} is outside 0..{int(n_slices) - 1}")
    if len(shape) != 2 or min(shape) < 96:
        raise ValueError(f"shape={tuple(shape)} must be 2-D with both sides >= 96, e.g. (256, 128)")


def phantom_slice(
    case: dict,
    week: dict,
    slice_idx: int,
    n_slices: int = 60,
    shape=DEFAULT_SHAPE,
    rng=None,
    *,
    clean: bool = False,
    noise: bool = True,
):
    """One phantom slice: ``(image, label)``.

    image: `shape` float32, about [0, 1] (before the per-case ``case["scale"]``); label:
    `shape` uint8 in 0..5 (LABEL_NAMES). Axes follow SLICE_AXES (default: axis 0 left-right,
    axis 1 anterior-posterior). `slice_idx` runs 0..n_slices-1, inferior -> superior.
    `rng` (numpy Generator) draws texture and noise; None -> seeded from `slice_idx`.
    ``clean=True`` returns the image before texture, coil bias and noise; ``noise=False``
    the image with texture and coil bias but before the Rician noise (to draw the noise
    yourself, e.g. to see what the noise alone changes)."""
    _check_slice_args(slice_idx, n_slices, shape)
    if rng is None:
        rng = np.random.default_rng(slice_idx)
    r = _Renderer(case, week, n_slices, shape, rng)
    img, lab = r.render(slice_idx, rng, clean=clean, noise=noise)
    return _to_disk(img), _to_disk(lab)


def tissue_slice(case: dict, week: dict, slice_idx: int, n_slices: int = 60, shape=DEFAULT_SHAPE):
    """The tissue classes behind a slice: `shape` uint8 indices into TISSUE_NAMES."""
    _check_slice_args(slice_idx, n_slices, shape)
    rng = np.random.default_rng(slice_idx)
    r = _Renderer(case, week, n_slices, shape, rng)
    r.tissue = np.zeros((r.W, r.H), np.uint8)
    r.render(slice_idx, rng, clean=True)
    return _to_disk(r.tissue)
