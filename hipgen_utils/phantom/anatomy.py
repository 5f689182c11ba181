"""The phantom's anatomy parameters: constants, tissues, and the random patients and scans.

Anatomy varies per case (``sample_case``: body habitus, bone and organ sizes, intensity
scale, tissue contrast), per week (``sample_week``: bladder filling, rectal content and gas,
positioning, noise and coil bias, bowel loops) and, in the renderer, with slice position.
Sizes are in pixels of 1.7 mm (PIXEL_MM); along the body axis the anatomy uses a z in
which the 60 slices of a nominal case-week span [0, 1]. Intensities are relative T2
signal (urine > fat > marrow > prostate PZ > TZ > muscle > cortical bone ~ air ~ 0).
The parameters are plain JSON-serialisable numbers, so PHANTOM.json can list them all.
"""

from __future__ import annotations

import numpy as np

# What the two on-disk axes of a slice are: axis 0 left-right, axis 1 anterior-posterior
# with anterior at index 0. The release's true orientation is an assumption: change it here
# (any of "LR"/"RL" with "AP"/"PA", in either order) and everything follows. canvas.py
# (drawing) and release.py (shapes, PHANTOM.json) import it by name: to change it at run
# time, as tests do, set it there.
SLICE_AXES = ("LR", "AP")
PIXEL_MM = 1.7  # in-plane spacing
SLICE_MM = 3.0  # slice spacing
DEFAULT_SHAPE = (256, 128)
WIDE_SHAPE = (256, 144)  # the release's one odd-sized case-week

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
            "y": _u(rng, -38, 10),  # nominal AP position (see _Canvas.Yn, canvas.py)
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
