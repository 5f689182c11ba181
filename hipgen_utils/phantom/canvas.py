"""The phantom's drawing kit: shapes, profiles, noise, orientation and the painting canvas.

Shapes are signed-distance functions (negative inside, in pixels) painted with a 1-pixel
partial-volume ramp; their sizes follow slice position through scalar z profiles (`_ramp`,
`_window`, `_ellipsoid`). Everything is drawn on a canonical (LR, AP; anterior first)
canvas and turned into the on-disk orientation of SLICE_AXES only at the end (`_to_disk`).

`_Canvas` holds what one case-week shares across its slices (textures, fascial-plane maps,
the coil bias field, the nominal AP frame) and the painting primitives the organ drawers
use: `_Pelvis` (pelvis.py) and `_Organs` (organs.py), put together by `_Renderer`
(render.py).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

from hipgen_utils.phantom.anatomy import SLICE_AXES, TISSUE_NAMES, TISSUES


def _sd_ellipse(X, Y, cx, cy, a, b, theta=0.0):
    """Approximate signed distance (px, negative inside) to an ellipse with half-axes a, b,
    its a-axis turned by `theta` (radians) from the LR axis."""
    u, v = X - cx, Y - cy
    if theta:
        c, s = math.cos(theta), math.sin(theta)
        u, v = u * c + v * s, v * c - u * s
    k0 = np.sqrt((u / a) ** 2 + (v / b) ** 2)
    k1 = np.sqrt((u / (a * a)) ** 2 + (v / (b * b)) ** 2)
    return k0 * (k0 - 1.0) / np.maximum(k1, 1e-6)


def _sd_capsule(X, Y, p, q, r):
    """Signed distance to the segment p-q thickened by radius r."""
    bx, by = q[0] - p[0], q[1] - p[1]
    ux, uy = X - p[0], Y - p[1]
    h = np.clip((ux * bx + uy * by) / max(bx * bx + by * by, 1e-6), 0.0, 1.0)
    return np.sqrt((ux - h * bx) ** 2 + (uy - h * by) ** 2) - r


# Scalar profiles along z (plain Python: np.clip on scalars costs ~50 us a call).
def _ramp(z, lo, hi):
    """0 below lo, 1 above hi, linear between."""
    return min(max((z - lo) / (hi - lo), 0.0), 1.0)


def _window(z, lo, hi, edge=0.03):
    """1 inside [lo, hi], falling linearly to 0 over `edge` beyond both ends."""
    return min(max(min(z - lo, hi - z) / edge + 1.0, 0.0), 1.0)


def _ellipsoid(z, zc, hz):
    """Cross-section scale of an ellipsoid of half-height hz centred at zc (0 outside)."""
    q = (z - zc) / hz
    return math.sqrt(1.0 - q * q) if abs(q) < 1 else 0.0


def _lerp(a, b, t):
    return a + (b - a) * t


def _smooth_noise(rng, shape, sigma, down=1):
    """Gaussian-smoothed white noise with unit std, float32; drawn at 1/`down` resolution
    and upsampled (same look for large sigma, much faster)."""
    small = tuple(-(-n // down) + 2 for n in shape)
    f = ndimage.gaussian_filter(rng.standard_normal(small, dtype=np.float32), sigma / down)
    if down > 1:
        f = ndimage.zoom(f, down, order=1)
    f = f[: shape[0], : shape[1]]
    return ((f - f.mean()) / (f.std() + 1e-8)).astype(np.float32)


def _lines(field, width):
    """Thin curvy lines (1 on the zero-crossings of a smooth field, 0 away from them)."""
    return np.clip(1.0 - np.abs(field) / width, 0.0, 1.0)


def _canonical_shape(shape):
    """The (LR, AP) canvas for an on-disk (axis 0, axis 1) shape."""
    return (shape[1], shape[0]) if SLICE_AXES[0] in ("AP", "PA") else (shape[0], shape[1])


def _to_disk(a):
    """Canonical (LR, AP; anterior first) array -> the on-disk orientation of SLICE_AXES."""
    if SLICE_AXES[0] in ("AP", "PA"):
        a = a.T
    for axis, name in enumerate(SLICE_AXES):
        if name in ("RL", "PA"):
            a = np.flip(a, axis)
    return np.ascontiguousarray(a)


class _Canvas:
    """The canonical (LR, AP) canvas of one case-week and the primitives that paint on it.

    Textures, fascial-plane maps and the bias field are made once per case-week; each slice
    views them through a random offset, so slices differ without new filtering. The
    per-slice state (``z``, ``img``, ``lab``, the texture views ``tc`` and ``wb``) is set by
    `_Renderer.render` before anything is painted."""

    PAD = 32  # texture margin for the per-slice offsets

    def __init__(self, case, week, n_slices, shape, rng):
        self.case, self.week, self.n = case, week, n_slices
        W, H = self.W, self.H = _canonical_shape(tuple(int(s) for s in shape))
        self.X = (np.arange(W, dtype=np.float32) - (W - 1) / 2)[:, None]
        self.Y = (np.arange(H, dtype=np.float32) - (H - 1) / 2)[None, :]
        T = self.tone = {k: v * case["contrast"][k] for k, v in TISSUES.items()}
        big = (W + 2 * self.PAD, H + 2 * self.PAD)
        self.tex_fine = 1.0 + 0.05 * _smooth_noise(rng, big, 0.7)
        self.tex_coarse = _smooth_noise(rng, big, 2.2, down=2)
        self.wobble = _smooth_noise(rng, big, 6.0, down=2)
        # muscle: fibre-scale texture plus fat along the fascial planes between muscles
        planes = _lines(_smooth_noise(rng, big, 11.0, down=4), 0.07)
        streaks = _lines(_smooth_noise(rng, big, 3.0, down=2), 0.05)
        fat_in_muscle = np.maximum(planes, 0.35 * streaks)
        groups = 1.0 + 0.1 * _smooth_noise(rng, big, 14.0, down=4)  # muscles differ a little
        self.muscle_map = T["muscle"] * groups * (1.0 + 0.07 * self.tex_coarse)
        self.muscle_map += (0.9 * T["fat"] - self.muscle_map) * fat_in_muscle
        # subcutaneous fat: thin fibrous septa
        self.fat_map = T["fat"] * (1.0 - 0.22 * _lines(_smooth_noise(rng, big, 5.0, down=2), 0.08))
        self.bias = self._bias_field()
        self.tissue = None  # set to an array to also record tissue classes (tissue_slice)
        # nominal AP frame: -45 (front) .. +45 (back) of the muscle compartment, so the deep
        # anatomy scales with the body
        T_ap = case["body_ap"]
        b_ant = T_ap * case["ant_frac"]
        cy = b_ant - T_ap / 2 + week["dy"]
        front = cy - b_ant + case["fat_ant"]
        back = cy + (T_ap - b_ant) - case["fat_post"]
        self.yc, self.sy = (front + back) / 2, (back - front) / 90.0

    def _bias_field(self):
        c, w = self.case, self.week
        y = self.Y / (c["body_ap"] / 2)  # -1 anterior skin .. +1 posterior skin
        x = self.X / c["body_a"]
        L = w["bias_len"] / (c["body_ap"] / 2)
        # coil elements on the anterior and posterior surfaces; sensitivity decays inwards
        f = np.maximum(np.exp(-(((y + 1.0) / L) ** 2)), np.exp(-(((y - 1.0) / L) ** 2)))
        f = np.maximum(f, 0.35 * np.exp(-(((np.abs(x) - 1.0) / L) ** 2)))
        b = (1.0 - w["bias"]) + w["bias"] * f
        return (b * (1.0 + w["bias_tilt"] * x)).astype(np.float32)

    def Yn(self, v):
        """Nominal AP coordinate -> pixels."""
        return self.yc + v * self.sy

    # -- painting
    def _win(self, cx, cy, rx, ry):
        """(window slices, X, Y) covering a box of half-sizes rx, ry around (cx, cy)."""
        i0 = max(int(cx - rx + (self.W - 1) / 2) - 2, 0)
        i1 = min(int(cx + rx + (self.W - 1) / 2) + 3, self.W)
        j0 = max(int(cy - ry + (self.H - 1) / 2) - 2, 0)
        j1 = min(int(cy + ry + (self.H - 1) / 2) + 3, self.H)
        if i1 <= i0 or j1 <= j0:
            return None
        return (slice(i0, i1), slice(j0, j1)), self.X[i0:i1], self.Y[:, j0:j1]

    def _paint(self, win, sd, value, label=None, tissue=None):
        """Blend `value` into the image where the signed distance `sd` < 0 (1-px ramp)."""
        m = 0.5 - sd
        np.clip(m, 0.0, 1.0, out=m)
        img = self.img[win]
        img += m * (value - img)
        if label is not None:
            self.lab[win][m > 0.5] = label
        if self.tissue is not None and tissue is not None:
            self.tissue[win][m > 0.5] = TISSUE_NAMES.index(tissue)

    def _ellipse(
        self, cx, cy, a, b, value, theta=0.0, label=None, tissue=None, tex=0.0, wobble=1.0
    ):
        """Paint an ellipse; `tex` modulates `value` by the coarse texture, `wobble` (px)
        roughens the outline so organs are not perfect ellipses."""
        if a < 0.7 or b < 0.7:
            return
        r = max(a, b) if theta else None
        w = self._win(cx, cy, (r or a) + wobble, (r or b) + wobble)
        if w is None:
            return
        win, X, Y = w
        if tex:
            value = value * (1.0 + tex * self.tc[win])
        sd = _sd_ellipse(X, Y, cx, cy, a, b, theta)
        if wobble:
            sd += wobble * self.wb[win]
        self._paint(win, sd, value, label, tissue)

    def _bone(self, parts, cortex=1.6):
        """Union of shapes drawn as a dark cortex around textured marrow, label 2.

        `parts`: ("e", cx, cy, a, b, theta) ellipses and ("c", p, q, r) capsules."""
        boxes, keep = [], []
        for p in parts:
            if p[0] == "e" and min(p[3], p[4]) > 1:
                r = max(p[3], p[4])
                boxes.append((p[1] - r, p[1] + r, p[2] - r, p[2] + r))
            elif p[0] == "c" and p[3] > 2.5:  # thinner would read as a stray stick
                _, a, b, r = p
                boxes.append(
                    (
                        min(a[0], b[0]) - r,
                        max(a[0], b[0]) + r,
                        min(a[1], b[1]) - r,
                        max(a[1], b[1]) + r,
                    )
                )
            else:
                continue
            keep.append(p)
        if not keep:
            return
        x0, x1 = min(b[0] for b in boxes), max(b[1] for b in boxes)
        y0, y1 = min(b[2] for b in boxes), max(b[3] for b in boxes)
        w = self._win((x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2, (y1 - y0) / 2)
        if w is None:
            return
        win, X, Y = w
        sd = None
        for p in keep:
            d = _sd_ellipse(X, Y, *p[1:]) if p[0] == "e" else _sd_capsule(X, Y, *p[1:])
            sd = d if sd is None else np.minimum(sd, d)
        sd += 0.4 * self.wb[win]
        T = self.tone
        self._paint(win, sd, T["cortex"], 2, "cortex")
        self._paint(win, sd + cortex, T["marrow"] * (1.0 + 0.2 * self.tc[win]), None, "marrow")

    def _outline(self, cx, cy, a, b_ant, b_post):
        """Radial signed distance (full canvas) to a body-like outline: an ellipse blended
        towards a squircle (flatter at the back), with different AP half-axes front and back."""
        p = self.case
        u = (self.X - cx) / a
        v = self.Y - cy
        vb = np.where(v < 0, v / b_ant, v / b_post)
        wq = np.where(v < 0, p["p_ant"], p["p_post"]).astype(np.float32)
        u2, v2 = u * u, vb * vb
        r2 = np.sqrt(u2 + v2)
        r = r2 + wq * (np.sqrt(np.sqrt(u2 * u2 + v2 * v2)) - r2)
        rho = np.sqrt((self.X - cx) ** 2 + v * v)
        return rho * (1.0 - 1.0 / np.maximum(r, 1e-3))

    def _notch(self, sd, cx, cy, a, b):
        """Cut an elliptic notch out of the full-canvas outline `sd` (in place)."""
        w = self._win(cx, cy, a, b)
        if w is not None:
            win, X, Y = w
            sd[win] = np.maximum(sd[win], -_sd_ellipse(X, Y, cx, cy, a, b))
