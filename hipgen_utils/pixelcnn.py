"""The prior: a gated PixelCNN over VQ-VAE code grids (van den Oord et al. 2016, "Conditional
Image Generation with PixelCNN Decoders"), as VQ-VAE uses it (van den Oord et al. 2017).

Codes are integer grids (B, H, W) in [0, K) (256x128 slices give 64x32 grids). For every
position the model predicts a distribution over the K codes given all positions before it in
raster order (row by row, left to right), conditioned on the slice position.

Causality comes from padding and shifting, not from masked weights:

* vertical stack: a (k//2+1, k) convolution over rows *strictly above* a position (the first
  layer reads rows r-k//2-1 .. r-1; later layers read rows r-k//2 .. r of the previous
  vertical output, which itself saw only rows < r);
* horizontal stack: a (1, k//2+1) convolution over the same row to the *left* (the first
  layer reads columns c-k//2-1 .. c-1, never the position itself -- "mask A"; later layers
  c-k//2 .. c of the previous horizontal output -- "mask B");
* each layer links the vertical pre-activation into the horizontal stack (1x1), and since
  the vertical stack covers whole rows above, there is no blind spot.

Three additions give a 32-channel prior the whole slice (each can be switched off for an
ablation; `hipgen bench prior --compare` measured them, docs/experiments.md):

* ``v_dilation``: successive layers' vertical convolutions read rows 1, 2, 4, .., v_dilation
  apart, so 8 layers of kernel 5 reach 61 rows up, the whole 64-row grid: the far femoral
  head lies 30-40 code rows back.
* ``mirror``: once the first half of the rows is drawn, row r of the second half has its
  mirror row H-1-r behind it; `hipgen_utils.mirror.MirrorConditioner` maps it into every
  layer's gate biases and the output head (zero in the first half, so causality holds).
* ``tables``: the head maps C channels to K logits, a rank-C matrix: 32 channels cannot single
  out one code of 512 (the "softmax bottleneck"). Each position's logits also get one learned
  row per neighbouring code already drawn (left, up, up-left, up-right, and in the second half
  the three codes around the mirror position): a bigram model inside the prior.

The model is split into small methods that work on any window of rows or columns, so the
fast sampler (`hipgen_utils.sampling`) runs the same modules row by row and position by
position, and `forward` runs them on the whole grid.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from hipgen_utils.config import PixelCNNConfig
from hipgen_utils.mirror import MirrorConditioner, first_mirrored_row

POS_FREQS = 6  # Fourier frequencies per axis for the positional biases
# code tables: the neighbours whose codes index them, as (row, column) offsets -- left first
# (the only one in the row being drawn), then the row above -- and, with mirror context,
# offsets d of the mirror row (rows-1-r+d) for the second half
TABLE_OFFSETS = ((0, -1), (-1, 0), (-1, -1), (-1, 1))
MIRROR_OFFSETS = (-1, 0, 1)


def position_features(H: int, W: int, device=None) -> torch.Tensor:
    """(H, W, 4 * POS_FREQS) fixed sin/cos features of the normalised row and column.

    Slices are roughly aligned (the body sits in the middle), so "where am I" carries much of
    the layout; zero padding alone tells a PixelCNN only near the borders."""
    freqs = math.pi * 2.0 ** torch.arange(POS_FREQS, dtype=torch.float32, device=device)
    r = torch.linspace(0, 1, H, device=device)[:, None] * freqs  # (H, F)
    c = torch.linspace(0, 1, W, device=device)[:, None] * freqs  # (W, F)
    fr = torch.cat([r.sin(), r.cos()], -1)[:, None].expand(H, W, -1)
    fc = torch.cat([c.sin(), c.cos()], -1)[None].expand(H, W, -1)
    return torch.cat([fr, fc], -1)


def gate(x: torch.Tensor) -> torch.Tensor:
    """Gated activation tanh(a) * sigmoid(b), with a, b the two halves of the last dim."""
    a, b = x.chunk(2, dim=-1)
    return torch.tanh(a) * torch.sigmoid(b)


class GatedLayer(nn.Module):
    """One gated layer: a vertical and a horizontal stack step.

    Features are channels-last, (B, rows, cols, C), so everything but the vertical convolution
    is a matrix product on the last dim: on one position (the fast sampler's inner loop) a
    matmul is ~10x cheaper than a CPU convolution call. Inputs are pre-padded windows (the
    caller does the causal shift), so the same code serves a whole grid, one row or one position.
    """

    def __init__(self, n_channels: int, kernel_size: int, n_conditions: int, n_pos: int = 0,
                 dilation: int = 1, n_mirror: int = 0):  # fmt: skip
        super().__init__()
        c, a = n_channels, kernel_size // 2
        self.reach = a + 1  # columns the horizontal step looks at
        self.dilation = dilation
        self.v_extent = a * dilation  # the vertical step spans v_extent + 1 rows
        # vertical: a+1 rows `dilation` apart, full kernel width; width padding is plain "same"
        self.v_conv = nn.Conv2d(c, 2 * c, (a + 1, kernel_size), padding=(0, a), dilation=(dilation, 1))
        self.v_to_h = nn.Linear(2 * c, 2 * c)
        # horizontal: a (1, a+1) convolution, written as a linear map of the a+1 columns; no
        # bias of its own: the link (which has one) is always added
        self.h_conv = nn.Linear((a + 1) * c, 2 * c, bias=False)
        # one linear map gives both the residual update and the skip output: [res | skip]
        self.h_out = nn.Linear(c, 2 * c)
        # gate biases [vertical 2c | horizontal 2c] from the slice position, the (row, col)
        # position features and the mirror map (zero in the first half)
        self.cond = nn.Embedding(n_conditions, 4 * c) if n_conditions else None
        self.pos = nn.Linear(n_pos, 4 * c, bias=False) if n_pos else None
        self.mirror = nn.Linear(n_mirror, 4 * c, bias=False) if n_mirror else None

    def vertical(self, window: torch.Tensor, bias: torch.Tensor | None = None,
                 spaced: bool = False) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
        """Vertical step on rows above.

        window: (B, R + v_extent, W, C), the causal input rows of R output rows, top-padded.
        bias:   (B or 1, R or 1, W or 1, 4C) gate biases [vertical | horizontal], or None.
        spaced: the window is (B, k//2+1, W, C), only the rows the kernel reads for one output
                row (the fast sampler gathers them); the convolution then runs undilated.
        Returns (gated output (B, R, W, C), link (B, R, W, 2C)): the link is the vertical
        pre-activation mapped for the horizontal stack, plus the horizontal gate bias.
        """
        # a contiguous channels-last tensor permuted to NCHW is in channels_last memory
        # format, which the convolution kernels take without a copy
        x = window.permute(0, 3, 1, 2)
        if spaced:
            pre = F.conv2d(x, self.v_conv.weight, self.v_conv.bias, padding=self.v_conv.padding).permute(0, 2, 3, 1)
        else:
            if self.dilation > 1 and x.device.type == "cpu" and x.shape[1] % 16:
                # torch 2.14's CPU kernel gives a NaN weight gradient for a dilated bf16
                # convolution of channels-last input at some widths (24, 40, 56, ...; no
                # multiple of 16): those get an NCHW copy (~10 % slower)
                x = x.contiguous()
            pre = self.v_conv(x).permute(0, 2, 3, 1)
        link = self.v_to_h(pre)
        if bias is not None:
            bias_v, bias_h = bias.chunk(2, dim=-1)
            pre, link = pre + bias_v, link + bias_h
        return gate(pre), link

    def horizontal(self, window: torch.Tensor, link: torch.Tensor, acc: torch.Tensor | None) -> torch.Tensor:
        """Horizontal step on positions to the left, for a whole grid.

        window: (B, R, N + k//2, C) causal input columns of N output columns, left-padded.
        link:   (B, R, N, 2C) from `vertical`. acc: (B, R, N, 2C) running [h | skip] or None.
        Returns (B, R, N, 2C), see `horizontal_step`.
        """
        # (B, R, N, a+1, C) -> (positions, (a+1)*C): column-major blocks of C, the layout of
        # the sampler's flat row buffer
        cols = window.unfold(2, self.reach, 1).transpose(-1, -2)
        shape = link.shape
        flat = horizontal_step(
            cols.reshape(-1, cols.shape[-2] * cols.shape[-1]), link.reshape(-1, shape[-1]),
            None if acc is None else acc.reshape(-1, shape[-1]), *self.step_params(),
        )  # fmt: skip
        return flat.view(shape)

    def step_params(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """`horizontal_step`'s weights (h_conv transposed, h_out transposed, h_out bias), which
        the fast sampler fetches once instead of once per position and layer."""
        return self.h_conv.weight.t(), self.h_out.weight.t(), self.h_out.bias


def horizontal_step(cols, link, acc, conv_t, out_t, out_b) -> torch.Tensor:
    """The horizontal step for P positions: acc + h_out(gate(h_conv(cols) + link)), (P, 2C).

    cols: (P, (k//2+1)*C) the input columns of each position; link: (P, 2C); acc: (P, 2C) or None.
    The residual stream and the summed skips are both running sums of the [res | skip]
    outputs, so they travel together: acc[:, :C] is this layer's output h (the next layer's
    input), acc[:, C:] the skips so far. The first layer has no residual input (its input is
    the position's own code, which it must not pass on). Two plain matrix products, because
    the fast sampler's inner loop calls it thousands of times."""
    g = gate(torch.addmm(link, cols, conv_t))
    out = torch.addmm(out_b, g, out_t)
    return out if acc is None else acc + out


class GatedPixelCNN(nn.Module):
    """Gated PixelCNN over (B, H, W) int64 code grids in [0, n_codes).

    forward(codes, cond) -> logits (B, n_codes, H, W). `cond` (conditional models): an int or
    (B,) ints in [0, n_conditions), the slice position. The defaults are the shipped model at
    the `full` profile's size (`PixelCNNConfig`). Without dilation the logits at (r, c) depend
    exactly on rows r-1 .. r-R (R = `receptive_field()`) within n_layers * (kernel_size // 2)
    columns either side, and columns c-R .. c-1 of row r; with mirror context and code tables
    the second half also sees the mirror rows.
    """

    def __init__(self, n_codes: int = 512, n_channels: int = 128, n_layers: int = 15, kernel_size: int = 5,
                 n_conditions: int = 60, positional: bool = True, v_dilation: int = 8, mirror: bool = True,
                 tables: bool = True):  # fmt: skip
        super().__init__()
        for name, value, low in (("n_codes", n_codes, 2), ("n_channels", n_channels, 1), ("n_layers", n_layers, 1),
                                 ("n_conditions", n_conditions, 0), ("v_dilation", v_dilation, 1)):  # fmt: skip
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"GatedPixelCNN: {name}={value!r} must be an integer >= {low}")
        if isinstance(kernel_size, bool) or not isinstance(kernel_size, int) or kernel_size < 3 or kernel_size % 2 == 0:
            raise ValueError(f"GatedPixelCNN: kernel_size={kernel_size!r} must be an odd integer >= 3")
        if v_dilation & (v_dilation - 1):
            raise ValueError(f"GatedPixelCNN: v_dilation={v_dilation!r} must be a power of 2 (1 = off)")
        self.n_codes, self.n_channels, self.n_layers = n_codes, n_channels, n_layers
        self.kernel_size, self.n_conditions = kernel_size, n_conditions
        self.positional, self.v_dilation, self.mirror = bool(positional), v_dilation, bool(mirror)

        # the second half's mirror context: features of the mirror rows, into every layer's
        # gate biases and (mirror_out) straight into the summed skips the output head reads
        self.mirror_cond = MirrorConditioner(n_channels) if mirror else None
        self.mirror_out = nn.Linear(n_channels, n_channels, bias=False) if mirror else None
        self.embedding = nn.Embedding(n_codes, n_channels)
        cycle = [2**j for j in range(v_dilation.bit_length())]  # 1, 2, 4, .., v_dilation
        self.layers = nn.ModuleList(
            GatedLayer(n_channels, kernel_size, n_conditions, 4 * POS_FREQS if positional else 0,
                       cycle[i % len(cycle)], n_channels if mirror else 0)
            for i in range(n_layers)
        )  # fmt: skip
        self.out1 = nn.Linear(n_channels, n_channels)
        self.out2 = nn.Linear(n_channels, n_codes)
        # code tables: one row of K logits per (neighbour, code), plus a "none" row per
        # neighbour for positions without it; zeros at first (the plain prior)
        self.n_neighbours = (len(TABLE_OFFSETS) + len(MIRROR_OFFSETS) * mirror) if tables else 0
        self.tables = None
        if tables:
            self.tables = nn.Embedding(self.n_neighbours * (n_codes + 1), n_codes)
            nn.init.zeros_(self.tables.weight)

    @classmethod
    def from_config(cls, cfg: PixelCNNConfig, n_codes: int) -> GatedPixelCNN:
        """Build from a `PixelCNNConfig`; conditional models get cfg.n_slices classes."""
        return cls(
            n_codes, n_channels=cfg.n_channels, n_layers=cfg.n_layers, kernel_size=cfg.kernel_size,
            n_conditions=cfg.n_slices if cfg.conditional else 0, positional=cfg.positional,
            v_dilation=cfg.v_dilation, mirror=cfg.mirror, tables=cfg.tables,
        )  # fmt: skip

    def receptive_field(self) -> int:
        """Rows above a position whose codes reach its logits through the convolutions:
        1 + (kernel_size // 2) * (sum of the layers' vertical dilations)."""
        return 1 + (self.kernel_size // 2) * sum(layer.dilation for layer in self.layers)

    # ---- building blocks shared by forward and the fast sampler -------------------------

    def check_cond(self, cond, batch: int) -> torch.Tensor | None:
        """`cond` (None, an int, or (batch,) ints) checked -> (batch,) int64 tensor, or None for
        an unconditional model; a one-line ValueError when missing, extra, or out of range."""
        if self.n_conditions == 0:
            if cond is not None:
                raise ValueError(f"cond={_short(cond)} given, but this PixelCNN is unconditional "
                                 "(n_conditions=0); pass cond=None")  # fmt: skip
            return None
        if cond is None:
            raise ValueError(f"this PixelCNN is conditional: pass cond, a slice position in 0..{self.n_conditions - 1}")
        try:
            t = torch.as_tensor(cond)
        except (TypeError, ValueError, RuntimeError):
            raise ValueError(f"cond={_short(cond)} must be an int or a sequence/tensor of ints") from None
        if t.dtype.is_floating_point or t.dtype.is_complex or t.dtype == torch.bool:
            raise ValueError(f"cond={_short(cond)} must hold integers, got dtype {t.dtype}")
        if t.ndim == 0:
            t = t.expand(batch)
        if t.shape != (batch,):
            raise ValueError(f"cond has shape {tuple(t.shape)}; expected an int or {batch} ints (one per sample)")
        lo, hi = int(t.min()), int(t.max())
        if lo < 0 or hi >= self.n_conditions:
            raise ValueError(f"cond={lo if lo < 0 else hi} out of range; valid slice positions are "
                             f"0..{self.n_conditions - 1}")  # fmt: skip
        return t.to(device=self.embedding.weight.device, dtype=torch.long)

    def bias_sources(self, cond: torch.Tensor | None, shape=None, mirror: torch.Tensor | None = None) -> tuple:
        """What the gate biases are made from, computed once: (cond, position features (H, W, F)
        or None, mirror map or None). cond: a checked (B,) tensor or None; shape: the grid (H, W),
        needed by a positional model; mirror: the (B, H, W, C) map from `mirror_map` (required
        with mirror context). Apart from the mirror map (first-half codes only, in second-half
        rows) nothing here depends on codes, so causality is untouched."""
        if (mirror is None) != (self.mirror_cond is None):
            raise ValueError("this prior has mirror context: pass its mirror map" if mirror is None
                             else "a mirror map given, but this prior has no mirror context (mirror=False)")  # fmt: skip
        feats = None
        if self.positional:
            if shape is None:
                raise ValueError("a positional PixelCNN needs the grid shape (H, W) for its biases")
            w = self.embedding.weight
            feats = position_features(*shape, device=w.device).to(w.dtype)
        return cond, feats, mirror

    def row_biases(self, sources: tuple, row: int | None = None) -> list:
        """Per layer gate biases [vertical | horizontal] (..., 4C) from `bias_sources`, or None
        each: for the whole grid (row None), else for row `row` alone. The fast sampler asks one
        row at a time, so it never holds a (B, H, W, 4C) tensor per layer."""
        cond, feats, mirror = sources
        if row is not None:
            feats = None if feats is None else feats[row : row + 1]
            if mirror is not None:  # zero in the first half
                mirror = mirror[:, row : row + 1] if row >= first_mirrored_row(mirror.shape[1]) else None
        out = []
        for layer in self.layers:
            b = None if cond is None else layer.cond(cond)[:, None, None]
            if feats is not None:
                p = layer.pos(feats).unsqueeze(0)
                b = p if b is None else b + p
            if mirror is not None:
                m = layer.mirror(mirror) if row is not None else _on_second_half(layer.mirror, mirror)
                b = m if b is None else b + m
            out.append(b)
        return out

    def mirror_map(self, x: torch.Tensor) -> torch.Tensor | None:
        """Mirror features (B, H, W, C) of embeddings x, or None without mirror context. Rows
        from `first_mirrored_row(H)` on read the rows around H-1-r; the rest are zero, so once
        the first half is drawn the map is final."""
        return None if self.mirror_cond is None else self.mirror_cond(x)

    def mirror_skip(self, mirror: torch.Tensor) -> torch.Tensor:
        """(B, H, W, C) term added to the summed skips before `head` (zero in the first half)."""
        return _on_second_half(self.mirror_out, mirror)

    def embed(self, codes: torch.Tensor) -> torch.Tensor:
        """(B, H, W) int64 codes -> (B, H, W, C) float embeddings (channels-last)."""
        return self.embedding(codes)

    def head(self, skip: torch.Tensor) -> torch.Tensor:
        """Summed skips (..., C) -> logits (..., n_codes): ReLU, 1x1, ReLU, 1x1."""
        # functional calls: this runs once per position in the sampler, where module-call
        # overhead is a large part of the cost
        x = F.linear(F.relu(skip), self.out1.weight, self.out1.bias)
        return F.linear(F.relu(x), self.out2.weight, self.out2.bias)

    def table_index(self, codes: torch.Tensor, row: int | None = None) -> torch.Tensor:
        """(B, H, W) codes -> (B, H, W, n_neighbours) rows of `tables`: the codes at TABLE_OFFSETS
        and, with mirror context, for rows r of the second half the codes at (H-1-r+d, c), d in
        MIRROR_OFFSETS, where that row lies in the first half; a missing neighbour reads its own
        "none" row (index n_codes). Every neighbour comes strictly before the position.
        row: only that row's positions, (B, 1, W, n_neighbours) (the sampler's)."""
        K1, none = self.n_codes + 1, self.n_codes
        B, H, W = codes.shape
        r = torch.arange(H, device=codes.device) if row is None else torch.tensor([row], device=codes.device)
        padded = F.pad(codes, (1, 1, 1, 1), value=none)
        idx = [padded[:, 1 + dr + r, 1 + dc : 1 + dc + W] for dr, dc in TABLE_OFFSETS]
        if self.n_neighbours > len(TABLE_OFFSETS):
            first = first_mirrored_row(H)
            for d in MIRROR_OFFSETS:
                m = H - 1 - r + d
                ok = (r >= first) & (m >= 0) & (m < first)  # a first-half row: drawn before row `first`
                rows = codes[:, m.clamp(0, H - 1)]
                idx.append(torch.where(ok[None, :, None], rows, rows.new_tensor(none)))
        return torch.stack([t + j * K1 for j, t in enumerate(idx)], dim=-1)

    def table_row(self, codes: torch.Tensor, r: int) -> torch.Tensor:
        """(B, W, n_codes): the table terms of row r's upper and mirror neighbours, all in rows
        before r (the sampler adds each position's left neighbour as it draws)."""
        return self.table_logits(self.table_index(codes, r)[:, 0, :, 1:])  # left column dropped

    def table_logits(self, index: torch.Tensor) -> torch.Tensor:
        """(..., k) rows of `tables` -> (..., n_codes) their summed logit terms."""
        flat = F.embedding_bag(index.reshape(-1, index.shape[-1]), self.tables.weight, mode="sum")
        return flat.view(*index.shape[:-1], self.n_codes)

    # ---- full-grid pass ------------------------------------------------------------------

    def forward_embedded(self, x: torch.Tensor, cond: torch.Tensor | None = None,
                         codes: torch.Tensor | None = None) -> torch.Tensor:  # fmt: skip
        """Logits (B, n_codes, H, W) from embeddings x (B, H, W, C), a checked cond (or None) and,
        for a prior with code tables, the codes (B, H, W) that x embeds. Exposed so that tests
        can differentiate with respect to the input grid."""
        return self.logits_last(x, cond, codes=codes).permute(0, 3, 1, 2)

    def logits_last(self, x: torch.Tensor, cond: torch.Tensor | None = None,
                    codes: torch.Tensor | None = None) -> torch.Tensor:  # fmt: skip
        """Channels-last logits (B, H, W, n_codes) from embeddings x (B, H, W, C), a checked cond
        and (code tables) the codes that x embeds."""
        if (codes is None) != (self.tables is None):
            raise ValueError("this prior has code tables: pass the codes" if codes is None
                             else "codes given, but this prior has no code tables (tables=False)")  # fmt: skip
        H, W = x.shape[1:3]
        a, C = self.kernel_size // 2, self.n_channels
        mirror = self.mirror_map(x)
        biases = self.row_biases(self.bias_sources(cond, (H, W), mirror))
        v, acc = x, None
        for i, layer in enumerate(self.layers):
            s = 1 if i == 0 else 0  # first layer: shift by one so a position never sees itself
            e = layer.v_extent
            h = x if i == 0 else acc[..., :C]
            v_win = F.pad(v, (0, 0, 0, 0, e + s, 0))[:, : H + e]  # rows r-e-s .. r-s for row r
            h_win = F.pad(h, (0, 0, a + s, 0))[:, :, : W + a]  # cols c-a-s .. c-s for col c
            v, link = layer.vertical(v_win, biases[i])
            acc = layer.horizontal(h_win, link, acc)
        skip = acc[..., C:]
        if mirror is not None:
            skip = skip + self.mirror_skip(mirror)
        logits = self.head(skip)
        return logits if codes is None else logits + self.table_logits(self.table_index(codes))

    def forward(self, codes: torch.Tensor, cond=None) -> torch.Tensor:
        """codes (B, H, W) int64 in [0, n_codes), cond None / int / (B,) ints -> logits (B, n_codes, H, W)."""
        codes, cond = self._checked(codes, cond)
        return self.forward_embedded(self.embed(codes), cond, codes if self.tables is not None else None)

    def nll(self, codes: torch.Tensor, cond=None, reduction: str = "mean") -> torch.Tensor:
        """Cross-entropy (nats) of `codes` (B, H, W) under the model, `reduction` as in
        F.cross_entropy ("none": flat, raster order). The same numbers as cross_entropy(forward(
        codes, cond), codes), computed on the channels-last logits: no (B, K, H, W) layout copy,
        ~15 % faster to train on a CPU."""
        codes, cond = self._checked(codes, cond)
        codes = codes.contiguous()
        logits = self.logits_last(self.embed(codes), cond, codes=codes if self.tables is not None else None)
        return F.cross_entropy(logits.reshape(-1, self.n_codes).float(), codes.reshape(-1), reduction=reduction)

    def _checked(self, codes, cond) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Validated (int64 codes, cond tensor or None); one-line ValueError otherwise."""
        if not torch.is_tensor(codes) or codes.ndim != 3 or codes.dtype.is_floating_point:
            desc = (f"tensor of shape {tuple(codes.shape)} and dtype {codes.dtype}" if torch.is_tensor(codes)
                    else type(codes).__name__)  # fmt: skip
            raise ValueError(f"PixelCNN input must be (B, H, W) integer codes, got a {desc}")
        if codes.numel() and (int(codes.min()) < 0 or int(codes.max()) >= self.n_codes):
            raise ValueError(f"PixelCNN codes span {int(codes.min())}..{int(codes.max())}; valid codes are "
                             f"0..{self.n_codes - 1}")  # fmt: skip
        return codes.long(), self.check_cond(cond, codes.shape[0])


def _on_second_half(fn, mirror: torch.Tensor) -> torch.Tensor:
    """fn (a per-position map) of a mirror map, computed on its second-half rows only and zero
    above them, where the map itself is zero: half the work of mapping the whole grid."""
    first = first_mirrored_row(mirror.shape[1])
    return F.pad(fn(mirror[:, first:]), (0, 0, 0, 0, first, 0))


def _short(x) -> str:
    """A short repr for error messages (tensors/lists can be long)."""
    r = repr(x.tolist() if torch.is_tensor(x) else x)
    return r if len(r) <= 40 else r[:37] + "..."
