"""Built-in synthetic pelvic MRI phantom, written in the HipMRI 2D-slice release layout.

Each case-week is a stack of axial T2-weighted-looking male pelvis slices (inferior ->
superior) drawn from a few dozen analytic shapes: skin, subcutaneous fat, muscle with
fascial fat planes, pelvic fat, femora, acetabula, pubis, ischia, ilium, sacrum/coccyx,
bladder, prostate (peripheral/transition zones), seminal vesicles, rectum, bowel loops and
vessels. Shapes are signed-distance functions painted with a 1-pixel partial-volume ramp;
a fine texture, a smooth surface-coil bias field and Rician noise give the MR look.
Anatomy varies per case (body habitus, bone/organ sizes), per week (bladder filling,
rectal content and gas, positioning) and with slice position. Sizes are in pixels of
1.7 mm, intensities are relative T2 signal (urine > fat > marrow > prostate PZ > TZ >
muscle > cortical bone ~ air ~ 0).

Layout (as the real release)::

    root/keras_slices_{train,validate,test}/case_NNN_week_W_slice_S.nii.gz
    root/keras_slices_seg_{train,validate,test}/seg_NNN_week_W_slice_S.nii.gz
    root/PHANTOM.json   # parameters; written last, so its presence marks a complete phantom

Quirks of the release reproduced: one train case-week is 256x144, about 5 % of case-weeks
are stored as (H, W, 1), the intensity scale differs per case and some case-weeks are int16.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage
from tqdm.auto import tqdm

from hipgen_utils.layout import (  # noqa: F401 (image_name, label_name: re-exported)
    IMAGE_RE,
    LABEL_NAMES,
    LABEL_RE,
    SPLITS,
    image_folder,
    image_name,
    label_folder,
    label_name,
)

# What the two on-disk axes of a slice are: axis 0 left-right, axis 1 anterior-posterior
# with anterior at index 0. The release's true orientation is an assumption: change it here
# (any of "LR"/"RL" with "AP"/"PA", in either order) and everything follows.
SLICE_AXES = ("LR", "AP")
PIXEL_MM = 1.7  # in-plane spacing
SLICE_MM = 3.0  # slice spacing
AFFINE = np.diag([PIXEL_MM, PIXEL_MM, SLICE_MM, 1.0])
DEFAULT_SHAPE = (256, 128)
WIDE_SHAPE = (256, 144)  # the release's one odd-sized case-week
PHANTOM_VERSION = 1  # bump when the drawing changes, so ensure_phantom regenerates
META_NAME = "PHANTOM.json"

# The anatomy lives in a z coordinate in which the 60 slices of a nominal case-week span
# [0, 1] (60 x 3 mm = 180 mm); one in-plane pixel is PX_Z in z.
PX_Z = PIXEL_MM / 180.0

# Nominal relative T2 signal per tissue (each case jitters them a few per cent).
TISSUES = {
    "fat": 0.80,
    "muscle": 0.27,
    "urine": 0.95,
    "marrow": 0.60,
    "cortex": 0.03,
    "pz": 0.63,
    "tz": 0.38,
    "capsule": 0.30,
    "sv_fluid": 0.85,
    "sv_wall": 0.33,
    "rect_wall": 0.24,
    "bladder_wall": 0.30,
    "cartilage": 0.45,
    "artery": 0.05,
    "vein": 0.18,
    "csf": 0.85,
    "bulb": 0.70,
    "bowel_wall": 0.35,
    "bowel_content": 0.5,
}
# Classes of the tissue map (tissue_slice): TISSUES plus rectal content and air.
TISSUE_NAMES = ("background",) + tuple(sorted(set(TISSUES) | {"rect_content", "air"}))


def image_dir(root, split: str) -> Path:
    """``root/keras_slices_{split}`` (images)."""
    return Path(root) / image_folder(split)


def label_dir(root, split: str) -> Path:
    """``root/keras_slices_seg_{split}`` (label maps)."""
    return Path(root) / label_folder(split)


# ------------------------------------------------------------------------ parameters


def _u(rng, lo, hi) -> float:
    return round(float(rng.uniform(lo, hi)), 4)


def sample_case(rng) -> dict:
    """Anatomy and scanner parameters of one patient (JSON-serialisable floats, px and z).

    Body: half-width ``body_a`` (LR 200-234 px), AP extent ``body_ap`` (105-124 px),
    subcutaneous fat ``fat_ant/lat/post``; femoral heads at ``(+-fx, fy)`` radius ``fr``,
    centre height ``fz``; prostate ``pr_*``; rectum ``rec_*``; per-case intensity ``scale``
    (200-4000, log-uniform) and tissue ``contrast`` factors."""
    obese = float(rng.uniform(0, 1))
    body_a = _u(rng, 100, 117)
    c = {
        "body_a": body_a,
        "body_ap": _u(rng, 105, 124),
        "ant_frac": _u(rng, 0.46, 0.5),
        "p_ant": _u(rng, 0.15, 0.45),  # squareness of the outline (0 ellipse, 1 squircle)
        "p_post": _u(rng, 0.45, 0.85),  # flatter back
        "fat_ant": round(6 + 8 * obese + float(rng.uniform(-1, 1)), 4),
        "fat_lat": round(8 + (min(25.0, body_a - 90) - 8) * obese, 4),
        "fat_post": round(10 + 12 * obese + float(rng.uniform(-1, 1)), 4),
        "fx": _u(rng, 55, 62),
        "fy": _u(rng, -3, 3),
        "fr": _u(rng, 12, 15.5),
        "fz": _u(rng, 0.33, 0.39),
        "z0": _u(rng, -0.04, 0.04),
        "zspan": _u(rng, 0.95, 1.05),
        "pr_lr": _u(rng, 24, 36),
        "pr_ap": _u(rng, 18, 25),
        "pr_h": _u(rng, 0.17, 0.25),
        "pr_dz": _u(rng, -0.03, 0.02),
        "pr_tz": _u(rng, 0.55, 0.8),
        "sv_len": _u(rng, 10, 16),
        "sv_w": _u(rng, 3, 5),
        "sv_ang": _u(rng, 0.15, 0.45),
        "rec_r": _u(rng, 8, 12),
        "rec_x": _u(rng, -3, 3),
        "rec_top": _u(rng, 0.72, 0.86),
        "bl_aspect": _u(rng, 0.65, 0.85),
        "sac_w": _u(rng, 38, 46),
        "scale": round(float(np.exp(rng.uniform(np.log(200), np.log(4000)))), 2),
        "contrast": {k: _u(rng, 0.93, 1.07) for k in TISSUES},
    }
    return c


def sample_week(rng, case: dict) -> dict:
    """Parameters of one scan of `case` (JSON-serialisable): bladder ``fill`` (0-1), rectal
    distension/content/gas, a small positioning shift, noise sigma (1-3 % of max), coil bias
    amplitude (20-40 %) and a few bowel loops for the upper slices."""
    n_loops = int(rng.integers(8, 17))
    loops = [
        {
            "x": _u(rng, -0.75, 0.75),  # fraction of the pelvic-cavity half-width
            "y": _u(rng, -38, 10),  # nominal AP position (see _Renderer.Yn)
            "z": _u(rng, 0.58, 1.15),
            "hz": _u(rng, 0.05, 0.14),
            "r": _u(rng, 6, 15),
            "kind": int(rng.integers(0, 4)),  # 0 fluid, 1 faeces, 2 gas, 3 collapsed
        }
        for _ in range(n_loops)
    ]
    gas = float(rng.uniform(0.1, 0.7)) if rng.uniform() < 0.55 else 0.0
    return {
        "fill": round(float(rng.beta(1.6, 1.4)), 4),
        "rec_dist": _u(rng, 0.7, 1.3),
        "rec_content": _u(rng, 0.15, 0.6),
        "rec_gas": round(gas, 4),
        "rec_phase": _u(rng, 0, 2 * np.pi),
        "dx": _u(rng, -3, 3),
        "dy": _u(rng, -2, 2),
        "dz": _u(rng, -0.02, 0.02),
        "noise": _u(rng, 0.01, 0.03),
        "bias": _u(rng, 0.2, 0.4),
        "bias_len": _u(rng, 22, 40),
        "bias_tilt": _u(rng, -0.1, 0.1),
        "loops": loops,
    }


# --------------------------------------------------------------------- shape helpers


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


# ---------------------------------------------------------------------- the renderer


class _Renderer:
    """Draws the slices of one case-week on the canonical (LR, AP) canvas.

    Textures, fascial-plane maps and the bias field are made once per case-week; each slice
    views them through a random offset, so slices differ without new filtering."""

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

    # -- one slice
    def render(self, slice_idx, rng, clean=False):
        """(image, label) on the canonical canvas: float32 about [0, 1], uint8 0..5."""
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
        n = rng.standard_normal((2, W, H), dtype=np.float32)
        n *= w["noise"]
        img += n[0]
        img = np.sqrt(img * img + n[1] * n[1])
        return img, self.lab

    def _body(self, view):
        c, w, z = self.case, self.week, self.z
        fz = c["fz"]
        W, H = self.W, self.H
        Tz = min(c["body_ap"] * (0.95 + 0.05 * _ramp(z, fz, 1.0)), H - 2.0)
        a = (
            c["body_a"]
            * (1 + 0.03 * math.exp(-(((z - fz + 0.15) / 0.12) ** 2)))
            * (1 - 0.04 * _ramp(z, 0.7, 1.05))
        )
        a = min(a, W / 2 - 2.0)
        b_ant = Tz * c["ant_frac"]
        b_post = Tz - b_ant
        cx, cy = w["dx"], b_ant - Tz / 2 + w["dy"]
        body = self._outline(cx, cy, a, b_ant, b_post)
        low = _ramp(fz + 0.12 - z, 0.0, 0.4)  # 0 above the coccyx .. 1 at the bottom
        if low > 0:  # natal cleft: the buttocks part posteriorly in the lower slices
            self._notch(body, cx, cy + b_post, 1.2 + 1.5 * low, 6 + 22 * low)
        m = 0.5 - body
        np.clip(m, 0.0, 1.0, out=m)
        self.img = m * self.fat_map[view]
        self.lab[m > 0.5] = 1
        if self.tissue is not None:
            self.tissue[m > 0.5] = TISSUE_NAMES.index("fat")
        # muscle compartment inside the subcutaneous fat (thicker laterally and behind)
        fa = c["fat_ant"] * (1.0 + 0.3 * _ramp(z, 0.6, 1.0))
        fp = c["fat_post"] * _lerp(1.1, 0.55, _ramp(z, fz - 0.1, 1.0))
        inner = self._outline(cx, cy, a - c["fat_lat"], b_ant - fa, b_post - fp)
        if low > 0:  # midline fat between the two gluteus maximus muscles
            self._notch(inner, cx, cy + b_post - fp, 3 + 6 * low, 10 + 20 * low)
        inner += 1.5 * self.wb
        self._paint((slice(0, W), slice(0, H)), inner, self.muscle_map[view], None, "muscle")

    def _pelvic_fat(self):
        """Pelvic and ischioanal fat, the levator sling and iliopsoas."""
        c, z, T, Yn = self.case, self.z, self.tone, self.Yn
        fz, fx, fr, fy, dx = c["fz"], c["fx"], c["fr"], c["fy"], self.week["dx"]
        a_cav = _lerp(24, fx - fr - 15, _ramp(z, fz - 0.25, fz - 0.05))
        self.a_cav = a_cav = _lerp(a_cav, fx + 6, _ramp(z, fz + 0.12, fz + 0.45))
        b_cav = _lerp(24, 33, _ramp(z, fz - 0.25, fz)) * self.sy
        y_cav = Yn(_lerp(fy + 6, fy - 2, _ramp(z, fz, fz + 0.4)))
        self._ellipse(dx, y_cav, a_cav, b_cav, T["fat"], tissue="fat", wobble=2.5)
        if z < fz + 0.02:  # ischioanal fossae: fat wedges beside the anal canal / rectum
            k = _window(z, -1, fz + 0.02, 0.1)
            for s in (-1, 1):
                self._ellipse(
                    dx + s * 22,
                    Yn(fy + 20),
                    11 * k + 1,
                    19 * self.sy * k + 1,
                    T["fat"],
                    theta=s * 0.5,
                    tissue="fat",
                    wobble=2,
                )
        k = _window(z, -1, fz - 0.03, 0.05)
        if k > 0 and self.rec is not None:
            # levator ani / sphincters: a muscle sling hugging the prostate and rectum, with
            # a thin layer of periprostatic / perirectal fat inside it
            rx, ry, rr, _ = self.rec
            pa, pb = self.prostate_size()
            front = self.y_pr - pb - 2 if pb > 1 else ry - rr - 4
            back = ry + rr + 3
            a, b = max(pa, rr) + 4, (back - front) / 2
            cy = (front + back) / 2
            self._ellipse(dx, cy, a + 3.5 * k, b + 3 * k, T["muscle"], tissue="muscle", tex=0.07)
            if z > fz - 0.22:
                self._ellipse(dx, cy, a, b, T["fat"], tissue="fat", wobble=1.5)
        if z > fz - 0.18:  # iliopsoas: along the pelvic brim, then in front of the hip
            u = _ramp(z, fz - 0.18, 1.05)
            r = _lerp(8, 12, u) * _window(z, fz - 0.18, 2, 0.06)
            for s in (-1, 1):
                px = dx + s * _lerp(fx - 4, c["sac_w"] * 0.75, u**0.7)
                py = Yn(_lerp(fy - fr - 12, 14, u))
                # a faint fascial fat rim sets it off from its neighbours
                self._ellipse(
                    px, py, r + 1.5, r + 1.5, _lerp(T["muscle"], T["fat"], 0.55), tissue="fat"
                )
                self._ellipse(px, py, r, r * 0.9, T["muscle"], tissue="muscle", tex=0.07)

    def _hip_bones(self, s):
        """Acetabulum, pubis, ischium, ilium and femur of side s (-1 or +1)."""
        c, z, T, Yn = self.case, self.z, self.tone, self.Yn
        fz, fx, fr, fy, dx, sy = c["fz"], c["fx"], c["fr"], c["fy"], self.week["dx"], self.sy
        head = fr * _ellipsoid(z, fz, fr * PX_Z * 1.05)
        sx, yb = dx + s * fx, Yn(fy)
        # acetabulum: a C open laterally around the head, solid bone just above it
        ac = _window(z, fz - 0.1, fz + 0.2, 0.05)
        if ac > 0:
            r_in = head + 1.6 if head > 6 else 0.0  # the roof covers the top of the head
            r_out = max(r_in + 7.5, 13.0 * ac)
            ww = self._win(sx, yb, r_out + 2, r_out + 2)
            if ww is not None:
                win, X, Y = ww
                rad = np.sqrt((X - sx) ** 2 + (Y - yb) ** 2)
                d = rad - r_out + 0.4 * self.wb[win]
                if r_in > 0:
                    open_side = s * (X - sx) - 0.3 * r_in
                    d = np.maximum(np.maximum(d, r_in - rad), open_side)
                self._paint(win, d, T["cortex"], 2, "cortex")
                self._paint(win, d + 1.6, T["marrow"] * (1 + 0.2 * self.tc[win]), None, "marrow")
                if r_in > 0:  # joint cartilage and fluid between head and socket
                    dj = np.maximum(np.abs(rad - head - 0.8) - 0.9, open_side)
                    self._paint(win, dj, T["cartilage"], 1, "cartilage")
        y_sym = Yn(-39)
        parts = []
        # pubic body at the symphysis; superior ramus to the acetabulum; inferior ramus to the
        # ischium, its front end parting from the midline below the symphysis (pubic arch)
        k = _window(z, fz - 0.25, fz - 0.04, 0.03)
        parts.append(("c", (dx + s * 2.4, y_sym), (dx + s * 14, y_sym + 5 * sy), 6.5 * k))
        k = _window(z, fz - 0.12, fz + 0.02, 0.02)
        parts.append(
            ("c", (dx + s * 12, y_sym + 4 * sy), (dx + s * (fx - 10), Yn(fy - 10)), 5.0 * k)
        )
        k = _window(z, fz - 0.36, fz - 0.14, 0.02)
        x_arch = _lerp(12, 30, _ramp(fz - 0.22 - z, 0, 0.15))
        parts.append(
            ("c", (dx + s * x_arch, y_sym + 6 * sy), (dx + s * (fx - 16), Yn(fy + 18)), 4.5 * k)
        )
        # ischium: tuberosity lowest, body (posterior column) and spine up to the acetabulum
        k = _window(z, fz - 0.36, fz - 0.1, 0.05)
        parts.append(("e", dx + s * (fx - 15), Yn(fy + 19), 9 * k, 12 * k, s * 0.4))
        k = _window(z, fz - 0.14, fz + 0.08, 0.04)
        parts.append(
            ("c", (dx + s * (fx - 8), Yn(fy + 10)), (dx + s * (fx - 14), Yn(fy + 22)), 6.5 * k)
        )
        k = _window(z, fz, fz + 0.08, 0.03)
        parts.append(
            ("c", (dx + s * (fx - 12), Yn(fy + 18)), (dx + s * (fx - 26), Yn(fy + 27)), 3.0 * k)
        )
        # ilium: a thick body above the acetabulum, then a wing curving (concave medially)
        # up and out; its back reaches the sacrum (SI joint) above the sciatic notch
        if z > fz + 0.08:
            u = _ramp(z, fz + 0.08, 1.08)
            k = _window(z, fz + 0.08, 3, 0.05)
            A = (dx + s * (fx + _lerp(-6, 36, u)), Yn(_lerp(fy - 14, -32, u)))
            B = (dx + s * (fx + _lerp(2, 28, u)), Yn(_lerp(fy, -8, u)))
            C = (dx + s * (fx + _lerp(-6, 2, u)), Yn(_lerp(fy + 14, 18, u)))
            SI = (dx + s * (self.sac_a + 3), self.y_sac - 2)
            f = _ramp(u, 0.12, 0.4)
            D = (_lerp(C[0], SI[0], f), _lerp(C[1], SI[1], f))
            parts += [
                ("c", A, B, _lerp(8, 3, u) * k),
                ("c", B, C, _lerp(9, 5, u) * k),
                ("c", C, D, _lerp(8, 7, u) * k),
            ]
        self._bone(parts)
        # femur: head, neck, greater and lesser trochanters, shaft
        parts = [("e", sx, yb, head, head, 0.0)]
        k = _window(z, fz - 0.13, fz - 0.01, 0.03)
        parts.append(("c", (sx, yb), (dx + s * (fx + 26), Yn(fy + 6)), 7.5 * k))
        k = _window(z, fz - 0.28, fz - 0.03, 0.05)
        parts.append(("e", dx + s * (fx + 26), Yn(fy + 8), 10 * k, 13 * k, s * 0.3))
        k = _window(z, -1, fz - 0.16, 0.06)
        shaft_x = dx + s * _lerp(fx + 22, fx + 18, _ramp(fz - 0.16 - z, 0, 0.2))
        parts.append(("e", shaft_x, Yn(fy + 4), 12 * k, 12 * k, 0.0))
        k = _window(z, fz - 0.32, fz - 0.2, 0.03)
        parts.append(("c", (shaft_x, Yn(fy + 4)), (shaft_x - s * 13, Yn(fy + 12)), 4.5 * k))
        self._bone(parts, cortex=1.6 + 1.6 * _ramp(fz - 0.1 - z, 0, 0.15))  # thick shaft cortex

    def _sacrum_geometry(self):
        """Half-width, half-thickness and AP centre of the sacrum here (0 width below it)."""
        c, z = self.case, self.z
        fz = c["fz"]
        self.sac_a = _lerp(8, c["sac_w"], _ramp(z, fz + 0.02, 1.0) ** 1.3) * _window(z, fz, 3, 0.04)
        self.sac_b = _lerp(5, 12, _ramp(z, fz, 0.8))
        self.y_sac = self.Yn(34) - 0.3 * self.sac_b

    def _sacrum(self):
        """Coccyx low, sacrum (widening into the alae) higher; canal and foramina hold CSF."""
        c, z, T, Yn, dx = self.case, self.z, self.tone, self.Yn, self.week["dx"]
        fz, fy = c["fz"], c["fy"]
        k = _window(z, fz - 0.14, fz + 0.06, 0.04)
        self._bone([("e", dx, Yn(fy + 32), 5.5 * k, 4.5 * k, 0.0)])
        a, b, y = self.sac_a, self.sac_b, self.y_sac
        if a <= 1:
            return
        parts = [("e", dx, y, min(a, 16), b, 0.0)]
        if a > 18:  # alae: wings reaching out to the SI joints, sweeping slightly back
            for s in (-1, 1):
                parts.append(
                    (
                        "c",
                        (dx + s * 10, y - 0.25 * b),
                        (dx + s * (a - 0.5 * b), y + 0.1 * b),
                        0.6 * b,
                    )
                )
        self._bone(parts)
        self._ellipse(dx, y + 0.3 * b, min(0.22 * a, 7), 0.28 * b, T["csf"], tissue="csf", wobble=0)
        if a > 16:
            for s in (-1, 1):
                self._ellipse(
                    dx + s * min(0.42 * a, 16),
                    y - 0.1 * b,
                    2.2,
                    2.2,
                    T["csf"],
                    tissue="csf",
                    wobble=0,
                )

    def _vessels(self):
        """Femoral then external iliac artery (flow void) and vein on each side."""
        c, z, T, Yn, dx = self.case, self.z, self.tone, self.Yn, self.week["dx"]
        if z > 0.95:
            return
        u = _ramp(z, c["fz"], 0.95)
        for s in (-1, 1):
            vx = dx + s * (c["fx"] - _lerp(20, 24, u))
            vy = Yn(_lerp(-37, -20, u))
            self._ellipse(vx, vy, 3.4, 3.4, T["artery"], tissue="artery", wobble=0)
            self._ellipse(vx - s * 7, vy + 1, 4.3, 3.8, T["vein"], tissue="vein", wobble=0.5)

    def _bowel(self):
        """Small-bowel / sigmoid loops in the upper slices (label body)."""
        z, T, w = self.z, self.tone, self.week
        for lp in w["loops"]:
            kz = _ellipsoid(z, lp["z"], lp["hz"])
            if kz <= 0:
                continue
            r = lp["r"] * kz
            lx = w["dx"] + lp["x"] * max(self.a_cav - lp["r"], 0)
            ly = self.Yn(lp["y"])
            content = (T["sv_fluid"], T["bowel_content"], 0.0, T["bowel_wall"] * 1.2)[lp["kind"]]
            self._ellipse(lx, ly, r, r * 0.9, T["bowel_wall"], tissue="bowel_wall")
            self._ellipse(
                lx,
                ly,
                r - 2.5,
                r * 0.9 - 2.5,
                content,
                tissue="bowel_content",
                tex=0.4 * (lp["kind"] == 1),
            )

    def _organ_z(self):
        c = self.case
        pr_zc = c["fz"] - 0.08 + c["pr_dz"]
        return pr_zc, pr_zc + c["pr_h"] / 2

    def _bladder(self):
        """Anterior midline; size follows the week's filling; wall thins as it fills."""
        c, w, z, T = self.case, self.week, self.z, self.tone
        _, pr_top = self._organ_z()
        fill = w["fill"]
        R = 12 + 33 * fill
        Rz = R * PX_Z * 1.3
        q = (z - (pr_top - 0.02 + Rz)) / Rz
        if abs(q) >= 1:
            return
        k = math.sqrt(1 - q * q) if q > 0 else (1 - q**4) ** 0.25  # flatter base on the prostate
        a = min(R * k, self.a_cav - 3)
        b = R * c["bl_aspect"] * k * self.sy
        front = self.Yn(-42)
        rec = self.rec
        if rec is not None:  # the rectum behind flattens the bladder's back
            b = min(b, (rec[1] - rec[2] - 3 - front) / 2)
        if a > 1.5 and b > 1.5:
            wall = 1.5 + 2.5 * (1 - fill)
            y = front + b
            self._ellipse(
                w["dx"], y, a, b, T["bladder_wall"], label=3, tissue="bladder_wall", wobble=0.6
            )
            self._ellipse(w["dx"], y, a - wall, b - wall, T["urine"], tissue="urine", wobble=0.6)

    def _prostate(self):
        """Prostate (capsule, bright peripheral zone, darker nodular transition zone, urethra)
        and, above it, the seminal vesicles."""
        c, z, T, dx = self.case, self.z, self.tone, self.week["dx"]
        pr_zc, pr_top = self._organ_z()
        y_pr = self.y_pr
        sv = _window(z, pr_top - 0.05, pr_top + 0.08, 0.03)
        if sv > 0:  # bow tie of convoluted fluid-filled tubes
            L = c["sv_len"] * sv
            for s in (-1, 1):
                cx, cy = dx + s * (0.5 * c["sv_len"] + 2), y_pr + 0.5 * c["pr_ap"] * self.sy
                ww = self._win(cx, cy, L + 1, L + 1)
                if ww is not None:
                    win, X, Y = ww
                    d = (
                        _sd_ellipse(X, Y, cx, cy, L, c["sv_w"] * sv + 0.5, -s * c["sv_ang"])
                        + self.wb[win]
                    )
                    lum = np.clip(self.tc[win] * 1.5 + 0.7, 0.0, 1.0)
                    self._paint(
                        win, d, T["sv_wall"] + (T["sv_fluid"] - T["sv_wall"]) * lum, 1, "sv_fluid"
                    )
        a, b = self.prostate_size()
        ww = self._win(dx, y_pr, a + 1, b + 1)
        if ww is None or min(a, b) <= 1:
            return
        win, X, Y = ww
        d = _sd_ellipse(X, Y, dx, y_pr, a, b) + 0.6 * self.wb[win]
        self._paint(win, d, T["capsule"], 5, "capsule")
        self._paint(win, d + 1.0, T["pz"] * (1 + 0.1 * self.tc[win]), None, "pz")
        if z > pr_zc - 0.6 * c["pr_h"] / 2:  # transition zone (absent at the apex)
            tz = c["pr_tz"]
            dt = _sd_ellipse(X, Y, dx, y_pr - 0.22 * b, tz * a, tz * b * 0.9) + 0.8 * self.wb[win]
            self._paint(win, dt, T["tz"] * (1 + 0.3 * self.tc[win]), None, "tz")
        self._paint(
            win, _sd_ellipse(X, Y, dx, y_pr - 0.3 * b, 1.3, 1.3), T["capsule"], None, "capsule"
        )

    def prostate_size(self):
        """LR and AP half-axes of the prostate here (0, 0 outside it)."""
        c = self.case
        pr_zc, _ = self._organ_z()
        kp = _ellipsoid(self.z, pr_zc, c["pr_h"] / 2)
        if kp <= 0:
            return 0.0, 0.0
        taper = 0.9 + 0.1 * (self.z - pr_zc) / (c["pr_h"] / 2)  # apex narrower than base
        return c["pr_lr"] / 2 * kp * taper, c["pr_ap"] / 2 * kp * taper

    def _rectum_geometry(self):
        """(x, y, outer radius, lumen radius) of the rectum / anal canal here, None above it."""
        c, w, z = self.case, self.week, self.z
        top, fz = c["rec_top"], c["fz"]
        if z > top:
            return None
        k = _window(z, -1, top, 0.05)
        canal = _ramp(fz - 0.16 - z, 0.0, 0.08)  # 1 in the anal canal
        r = (
            c["rec_r"]
            * w["rec_dist"]
            * _lerp(1.0, 0.55, canal)
            * _lerp(1, 0.8, _ramp(z, fz + 0.2, top))
            * k
        )
        lumen = (r - 2.5) * (1 - canal) * _window(z, -1, top, 0.08)
        y_low = self.y_pr + 0.5 * c["pr_ap"] + 1.5 + r  # right behind the prostate
        y_high = self.y_sac - self.sac_b - r - 3
        y = _lerp(y_low, y_high, _ramp(z, fz, fz + 0.25))
        x = w["dx"] + c["rec_x"] - 10 * _ramp(z, fz + 0.25, top)
        return x, y, r, max(lumen, 0.0)

    def _rectum(self):
        """Dark wall, variable content, gas (signal void) under a flat level; mesorectal fascia."""
        rec = self.rec
        if rec is None:
            return
        T, w, z = self.tone, self.week, self.z
        x, y, r, lumen = rec
        ww = self._win(x, y, r + 8, r + 8)
        if ww is None or r < 1:
            return
        win, X, Y = ww
        d = _sd_ellipse(X, Y, x, y, r, r * 0.9) + 0.6 * self.wb[win]
        if z > self.case["fz"] - 0.15:  # thin fascia around the perirectal fat
            fascia = _lerp(T["muscle"], T["fat"], 0.45)
            self._paint(win, np.abs(d - 6.0 - 1.5 * self.wb[win]) - 0.4, fascia, None, "fat")
        self._paint(win, d, T["rect_wall"], 4, "rect_wall")
        if lumen > 0.5:
            inner = d + (r - lumen)
            self._paint(
                win, inner, w["rec_content"] * (1 + 0.35 * self.tc[win]), None, "rect_content"
            )
            gas = w["rec_gas"] * (0.55 + 0.45 * math.sin(9 * z + w["rec_phase"]))
            if gas > 0.05:  # supine: gas rises anteriorly above a flat gas-fluid level
                level = y - lumen + 2 * lumen * gas
                self._paint(win, np.maximum(inner, Y - level), 0.0, None, "air")
        k = _window(self.z, -1, self.case["fz"] - 0.24, 0.05)
        if k > 0:  # penile bulb, below the symphysis
            self._ellipse(
                w["dx"], self.Yn(-39) + 10 * self.sy, 7 * k, 6 * k, T["bulb"], tissue="bulb"
            )


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
):
    """One phantom slice: ``(image, label)``.

    image: `shape` float32, about [0, 1] (before the per-case ``case["scale"]``); label:
    `shape` uint8 in 0..5 (LABEL_NAMES). Axes follow SLICE_AXES (default: axis 0 left-right,
    axis 1 anterior-posterior). `slice_idx` runs 0..n_slices-1, inferior -> superior.
    `rng` (numpy Generator) draws texture and noise; None -> seeded from `slice_idx`.
    ``clean=True`` returns the image before texture, coil bias and noise."""
    _check_slice_args(slice_idx, n_slices, shape)
    if rng is None:
        rng = np.random.default_rng(slice_idx)
    r = _Renderer(case, week, n_slices, shape, rng)
    img, lab = r.render(slice_idx, rng, clean=clean)
    return _to_disk(img), _to_disk(lab)


def tissue_slice(case: dict, week: dict, slice_idx: int, n_slices: int = 60, shape=DEFAULT_SHAPE):
    """The tissue classes behind a slice: `shape` uint8 indices into TISSUE_NAMES."""
    _check_slice_args(slice_idx, n_slices, shape)
    rng = np.random.default_rng(slice_idx)
    r = _Renderer(case, week, n_slices, shape, rng)
    r.tissue = np.zeros((r.W, r.H), np.uint8)
    r.render(slice_idx, rng, clean=True)
    return _to_disk(r.tissue)


# ------------------------------------------------------------------ the release layout


def _disk_shape(canonical):
    """On-disk (axis 0, axis 1) shape of a canonical (LR, AP) canvas."""
    return tuple(reversed(canonical)) if SLICE_AXES[0] in ("AP", "PA") else tuple(canonical)


def _params(n_train, n_validate, n_test, n_slices, seed) -> dict:
    names = ("n_train", "n_validate", "n_test", "n_slices", "seed")
    values = (n_train, n_validate, n_test, n_slices, seed)
    for name, v in zip(names, values):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0:
            raise ValueError(f"phantom {name}={v!r} must be a non-negative integer")
    if n_slices < 1 or n_train + n_validate + n_test < 1:
        raise ValueError(
            f"phantom needs n_slices >= 1 and at least one case-week (got {dict(zip(names, values))})"
        )
    return {k: int(v) for k, v in zip(names, values)}


def _plan(p: dict) -> dict:
    """Which cases and weeks go where, and which case-weeks carry the release's quirks.

    Depends only on the parameters; every case-week then gets its own RNG, so the arrays do
    not depend on generation order."""
    rng = np.random.default_rng(np.random.SeedSequence([p["seed"], 0]))
    weeks_per_case = {}
    for split in SPLITS:
        n, ks = p[f"n_{split}"], []
        while sum(ks) < n:
            ks.append(min(int(rng.integers(1, 6)), n - sum(ks)))  # a case has 1-5 weeks
        weeks_per_case[split] = ks
    n_cases = sum(len(k) for k in weeks_per_case.values())
    if n_cases > 999:
        raise ValueError(
            f"{n_cases} cases do not fit the release's 3-digit case numbers; ask for fewer case-weeks"
        )
    # case numbers interleave across splits, as in the release, but never repeat
    ids = [
        int(i)
        for i in rng.choice(
            np.arange(1, min(999, n_cases * 3 // 2 + 1) + 1), n_cases, replace=False
        )
    ]
    entries = []
    for split in SPLITS:
        take, ids = ids[: len(weeks_per_case[split])], ids[len(weeks_per_case[split]) :]
        rows = []
        for case, k in zip(sorted(take), weeks_per_case[split]):
            for week in sorted(int(x) for x in rng.choice(7, k, replace=False)):
                rows.append({"split": split, "case": case, "week": week})
        n = len(rows)
        wide = int(rng.integers(n)) if split == "train" and n >= 2 else -1
        n_single = max(1, round(0.05 * n)) if n >= 4 else 0
        single = set(int(i) for i in rng.choice(n, n_single, replace=False)) if n_single else set()
        n_int16 = max(1, round(0.15 * n)) if n >= 2 else 0
        int16 = set(int(i) for i in rng.choice(n, n_int16, replace=False)) if n_int16 else set()
        for i, row in enumerate(rows):
            row["shape"] = list(_disk_shape(WIDE_SHAPE if i == wide else DEFAULT_SHAPE))
            row["singleton"] = i in single
            row["dtype"] = "int16" if i in int16 else "float32"
        entries += rows
    return {"case_weeks": entries}


def _case_rng(seed, case):
    return np.random.default_rng(np.random.SeedSequence([seed, 1, case]))


def _week_rng(seed, split, case, week):
    return np.random.default_rng(np.random.SeedSequence([seed, 2, SPLITS.index(split), case, week]))


def _header(dtype):
    """A NIfTI-1 header with AFFINE and `dtype`, reused for every file (building the
    qform/sform from an affine costs more than compressing a slice)."""
    return nib.Nifti1Image(np.zeros((1, 1), dtype), AFFINE).header


def _write_case_week(root, row, case, seed, n_slices):
    """Sample the week, then render and save its slices; returns the week parameters."""
    split, cid, wk = row["split"], row["case"], row["week"]
    rng = _week_rng(seed, split, cid, wk)
    week = sample_week(rng, case)
    r = _Renderer(case, week, n_slices, row["shape"], rng)
    scale, dtype = case["scale"], np.dtype(row["dtype"])
    img_hdr, lab_hdr = _header(dtype), _header(np.uint8)
    idir, ldir = image_dir(root, split), label_dir(root, split)
    for s in range(n_slices):
        img, lab = r.render(s, rng)
        # scanner-like integer intensities at this case's scale (also gzips far faster)
        arr = np.rint(_to_disk(img) * scale)
        arr = np.clip(arr, 0, 32767).astype(dtype) if dtype == np.int16 else arr.astype(np.float32)
        lab = _to_disk(lab)
        if row["singleton"]:
            arr, lab = arr[..., None], lab[..., None]
        nib.save(nib.Nifti1Image(arr, None, header=img_hdr), str(idir / image_name(cid, wk, s)))
        nib.save(nib.Nifti1Image(lab, None, header=lab_hdr), str(ldir / label_name(cid, wk, s)))
    return week


def write_phantom(
    out_dir, n_train=191, n_validate=11, n_test=9, n_slices=60, seed=0, progress=True
) -> Path:
    """Generate the phantom release into `out_dir` (replacing an older phantom there).

    Writes ``keras_slices_{split}/case_NNN_week_W_slice_S.nii.gz`` (image: float32 or int16,
    (H, W) or (H, W, 1), per-case scale 200-4000) and ``keras_slices_seg_{split}/seg_...``
    (uint8 labels 0..5) for n_train/n_validate/n_test case-weeks of `n_slices` slices, then
    ``PHANTOM.json`` with every parameter. Built in a hidden sibling folder and renamed into
    place at the end, so an interrupted run never looks complete. Deterministic in `seed`.
    Returns `out_dir` as a Path."""
    p = _params(n_train, n_validate, n_test, n_slices, seed)
    out = Path(out_dir).expanduser().resolve()
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"phantom output {out} is a file; pass a folder path")
    if out.is_dir() and any(out.iterdir()) and not (out / META_NAME).exists():
        raise FileExistsError(
            f"refusing to overwrite {out}: it is not empty and holds no {META_NAME}; pass a new or empty folder"
        )
    plan = _plan(p)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.partial-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        for split in SPLITS:
            image_dir(tmp, split).mkdir(parents=True)
            label_dir(tmp, split).mkdir(parents=True)
        cases = {}
        total = len(plan["case_weeks"]) * p["n_slices"]
        with tqdm(total=total, desc="phantom", unit="slice", disable=not progress) as bar:
            for row in plan["case_weeks"]:
                key = f"{row['case']:03d}"
                if key not in cases:
                    cases[key] = sample_case(_case_rng(p["seed"], row["case"]))
                row["params"] = _write_case_week(tmp, row, cases[key], p["seed"], p["n_slices"])
                bar.update(p["n_slices"])
        meta = {
            "format": "hipgen-phantom",
            "version": PHANTOM_VERSION,
            "params": p,
            "slice_axes": list(SLICE_AXES),
            "pixel_mm": PIXEL_MM,
            "slice_mm": SLICE_MM,
            "label_names": list(LABEL_NAMES),
            "cases": cases,
            "case_weeks": plan["case_weeks"],
        }
        (tmp / META_NAME).write_text(json.dumps(meta, indent=1))
        try:
            if out.exists():
                old = out.parent / f".{out.name}.old-{os.getpid()}"
                os.replace(out, old)
                os.replace(tmp, out)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(tmp, out)
        except OSError:
            if not _is_complete(out, p):  # another process may have just finished the same
                raise
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def phantom_meta(root) -> dict | None:
    """The PHANTOM.json of a phantom folder, or None when absent or unreadable."""
    try:
        return json.loads((Path(root) / META_NAME).read_text())
    except (OSError, ValueError):
        return None


def _is_complete(root: Path, p: dict) -> bool:
    meta = phantom_meta(root)
    if not meta or meta.get("version") != PHANTOM_VERSION or meta.get("params") != p:
        return False
    if meta.get("slice_axes") != list(SLICE_AXES):
        return False
    for split in SPLITS:
        want = p[f"n_{split}"] * p["n_slices"]
        for folder, pattern in (
            (image_dir(root, split), IMAGE_RE),
            (label_dir(root, split), LABEL_RE),
        ):
            try:
                have = sum(1 for e in os.scandir(folder) if pattern.match(e.name))
            except OSError:
                return False
            if have != want:
                return False
    return True


def ensure_phantom(
    out_dir, n_train=191, n_validate=11, n_test=9, n_slices=60, seed=0, progress=True
) -> Path:
    """`out_dir` as a Path, holding a complete phantom with these parameters.

    Reuses what is there when its PHANTOM.json matches (same parameters and phantom
    version, all files present); otherwise (re)generates it with `write_phantom`."""
    p = _params(n_train, n_validate, n_test, n_slices, seed)
    out = Path(out_dir).expanduser().resolve()
    if _is_complete(out, p):
        return out
    return write_phantom(out, **p, progress=progress)
