"""The phantom's pelvis around the organs: body wall, fat, muscles, bones and vessels.

Skin and subcutaneous fat with fibrous septa, the muscle compartment with fascial fat
planes, pelvic and ischioanal fat, the levator sling and iliopsoas; femora, acetabula,
pubis, ischia, ilium, sacrum and coccyx (dark cortex around textured marrow); the femoral
and external iliac vessels. All as methods of `_Pelvis`, which `_Renderer` (render.py)
combines with `_Organs` (organs.py). The two use each other's per-slice geometry: the
organs fit the pelvic cavity (``a_cav``, set by `_pelvic_fat`) and the sacrum (``sac_a``,
``sac_b``, ``y_sac``), and the levator sling hugs the rectum (``rec``) and the prostate
(`prostate_size`). `_Renderer.render` works out the sacrum and rectum first, then draws
the pelvis before the organs.
"""

from __future__ import annotations

import math

import numpy as np

from hipgen_utils.phantom.anatomy import PX_Z, TISSUE_NAMES
from hipgen_utils.phantom.canvas import _Canvas, _ellipsoid, _lerp, _ramp, _window


class _Pelvis(_Canvas):
    """Draws the body wall, the pelvic fat and muscles, the bones and the vessels of a slice."""

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
