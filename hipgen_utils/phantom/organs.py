"""The phantom's pelvic organs: bowel loops, bladder, prostate, seminal vesicles, rectum.

The bladder's size follows the week's filling (its wall thins as it fills); the prostate
has a capsule, a bright peripheral zone, a darker nodular transition zone and the urethra,
with the seminal vesicles above it; the rectum has a dark wall, variable content and gas
under a flat level, and becomes the anal canal low down. All as methods of `_Organs`,
which `_Renderer` (render.py) combines with `_Pelvis` (pelvis.py), whose pelvic cavity and
sacrum the organs fit into.
"""

from __future__ import annotations

import math

import numpy as np

from hipgen_utils.phantom.anatomy import PX_Z
from hipgen_utils.phantom.canvas import _Canvas, _ellipsoid, _lerp, _ramp, _sd_ellipse, _window


class _Organs(_Canvas):
    """Draws the bowel loops, bladder, prostate with seminal vesicles, and rectum of a slice."""

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
