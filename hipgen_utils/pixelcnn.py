"""Gated PixelCNN prior over VQ-VAE code grids (van den Oord et al. 2016,
"Conditional Image Generation with PixelCNN Decoders").

Codes are integer grids (B, H, W) in [0, K); H and W need not be equal (256x128
images give 64x32 grids). The model predicts, for every position, a distribution
over the K codes given all positions before it in raster order (row by row, left
to right), optionally conditioned on an integer class (the slice position).

Causality is built by padding and cropping (shifting) instead of masked weights:

* vertical stack: a (k//2+1, k) convolution over the rows *strictly above* a
  position (first layer: rows r-k//2-1 .. r-1; later layers: rows r-k//2 .. r of
  the previous vertical output, which itself only saw rows < r);
* horizontal stack: a (1, k//2+1) convolution over the same row to the *left*
  (first layer: columns c-k//2-1 .. c-1, i.e. never the position itself -- "mask A";
  later layers: columns c-k//2 .. c of the previous horizontal output -- "mask B");
* each layer links the vertical pre-activation into the horizontal stack with a
  1x1 convolution. Because the vertical stack covers whole rows above (also to
  the right), there is no blind spot.

The model is split into small methods (`embed`, `cond_biases`, `GatedLayer.vertical`,
`GatedLayer.horizontal` / `horizontal_flat`, `head`) that work on any window of rows or
columns, so the fast sampler in `hipgen_utils.sampling` runs the same modules row by row
(vertical) and position by position (horizontal), and `forward` runs them on the whole grid.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from hipgen_utils.config import PixelCNNConfig

POS_FREQS = 6  # Fourier frequencies per axis for the positional biases


def position_features(H: int, W: int, device=None) -> torch.Tensor:
    """(H, W, 4 * POS_FREQS) fixed sin/cos features of the normalised row and column.

    Slices are roughly aligned (the body sits in the middle), so "where am I" carries
    much of the layout; zero padding alone tells a PixelCNN only near the borders."""
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

    Features are channels-last, (B, rows, cols, C), so that everything except the
    vertical convolution is a matrix product on the last dim: on a single position (the
    fast sampler's inner loop) a matmul is ~10x cheaper than a CPU convolution call.
    Inputs are pre-padded windows (the caller does the causal shift), so the same code
    serves a whole grid (`GatedPixelCNN.forward`), one row, or one position
    (`horizontal_flat`, which `horizontal` calls).
    """

    def __init__(
        self, n_channels: int, kernel_size: int, n_conditions: int, dropout: float, n_pos: int = 0
    ):
        super().__init__()
        c, a = n_channels, kernel_size // 2
        self.reach = a + 1  # rows (vertical) / columns (horizontal) each step looks at
        # vertical: a+1 rows, full kernel width; width padding is plain "same" padding
        self.v_conv = nn.Conv2d(c, 2 * c, (a + 1, kernel_size), padding=(0, a))
        self.v_to_h = nn.Linear(2 * c, 2 * c)
        # horizontal: a (1, a+1) convolution, written as a linear map of the a+1 columns;
        # no bias of its own: the link (which has one) is always added
        self.h_conv = nn.Linear((a + 1) * c, 2 * c, bias=False)
        # one linear map gives both the residual update and the skip output: [res | skip]
        self.h_out = nn.Linear(c, 2 * c)
        self.dropout = nn.Dropout(dropout)
        # class-conditional biases for the gate pre-activations: [vertical 2c | horizontal 2c]
        self.cond = nn.Embedding(n_conditions, 4 * c) if n_conditions else None
        # position-dependent gate biases from fixed Fourier features of (row, col)
        self.pos = nn.Linear(n_pos, 4 * c, bias=False) if n_pos else None

    def vertical(
        self, window: torch.Tensor, bias: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Vertical step on rows above.

        window: (B, R + k//2, W, C) -- the causal input rows of R output rows, top-padded.
        bias:   (B, 1, 1, 4C) conditioning biases [vertical | horizontal] or None.
        Returns (v_out (B, R, W, C), link (B, R, W, 2C)); `link` is the vertical
        pre-activation mapped (1x1) for the horizontal stack, plus the horizontal
        conditioning bias, i.e. everything the horizontal gate gets from outside its row.
        """
        # a contiguous channels-last tensor permuted to NCHW is channels_last memory format,
        # which the CPU/GPU convolution kernels take without a copy
        pre = self.v_conv(window.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        link = self.v_to_h(pre)
        if bias is not None:
            bias_v, bias_h = bias.chunk(2, dim=-1)
            pre, link = pre + bias_v, link + bias_h
        return gate(pre), link

    def horizontal(
        self, window: torch.Tensor, link: torch.Tensor, acc: torch.Tensor | None
    ) -> torch.Tensor:
        """Horizontal step on positions to the left (grid form of `horizontal_flat`).

        window: (B, R, N + k//2, C) -- the causal input columns of N output columns, left-padded.
        link:   (B, R, N, 2C) vertical link (with conditioning) for the same positions.
        acc:    (B, R, N, 2C) running sum [h | skip] of the layers below, or None (first layer).
        Returns (B, R, N, 2C), see `horizontal_flat`.
        """
        # (B, R, N, a+1, C) -> (positions, (a+1)*C): column-major blocks of C, the same
        # layout as the sampler's flat row buffer
        cols = window.unfold(2, self.reach, 1).transpose(-1, -2)
        shape = link.shape
        flat = self.horizontal_flat(
            cols.reshape(-1, cols.shape[-2] * cols.shape[-1]),
            link.reshape(-1, shape[-1]),
            None if acc is None else acc.reshape(-1, shape[-1]),
        )
        return flat.view(shape)

    def horizontal_flat(
        self, cols: torch.Tensor, link: torch.Tensor, acc: torch.Tensor | None
    ) -> torch.Tensor:
        """Horizontal step for P positions given as matrices.

        cols: (P, (k//2+1)*C) the a+1 input columns of each position, column by column.
        link: (P, 2C) vertical link (with conditioning).
        acc:  (P, 2C) running sum [h | skip] of the layers below, or None for the first layer.
        Returns acc + h_out(gate(h_conv(cols) + link)): (P, 2C).

        The residual stream h_i = h_{i-1} + res_i and the summed skips are both running
        sums of the [res | skip] outputs, so they travel together: acc[:, :C] is this
        layer's output h (the next layer's input), acc[:, C:] the skips so far. The first
        layer has no residual input (its input is the position's own code, which it must
        not pass on).
        """
        g = gate(torch.addmm(link, cols, self.h_conv.weight.t()))
        if self.training and self.dropout.p > 0:
            g = self.dropout(g)
        out = F.linear(g, self.h_out.weight, self.h_out.bias)
        return out if acc is None else acc + out


class GatedPixelCNN(nn.Module):
    """Gated PixelCNN over (B, H, W) int64 code grids in [0, n_codes).

    forward(codes, cond=None) -> logits (B, n_codes, H, W) float.
    `cond` (conditional models only): int or (B,) int tensor in [0, n_conditions).
    Logits at (r, c) depend exactly on positions before (r, c) in raster order:
    rows r-1 .. r-R with R = `receptive_field()` and columns within
    n_layers * (kernel_size // 2) either side, and columns c-R .. c-1 of row r.
    """

    def __init__(
        self,
        n_codes: int,
        n_channels: int = 128,
        n_layers: int = 15,
        kernel_size: int = 5,
        n_conditions: int = 0,
        dropout: float = 0.0,
        positional: bool = False,
    ):
        super().__init__()
        for name, value, low in (
            ("n_codes", n_codes, 2),
            ("n_channels", n_channels, 1),
            ("n_layers", n_layers, 1),
            ("n_conditions", n_conditions, 0),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"GatedPixelCNN: {name}={value!r} must be an integer >= {low}")
        if (
            isinstance(kernel_size, bool)
            or not isinstance(kernel_size, int)
            or kernel_size < 3
            or kernel_size % 2 == 0
        ):
            raise ValueError(
                f"GatedPixelCNN: kernel_size={kernel_size!r} must be an odd integer >= 3"
            )
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"GatedPixelCNN: dropout={dropout!r} must be in [0, 1)")
        self.n_codes = n_codes
        self.n_channels = n_channels
        self.n_layers = n_layers
        self.kernel_size = kernel_size
        self.n_conditions = n_conditions
        self.dropout = dropout
        self.positional = bool(positional)

        self.embedding = nn.Embedding(n_codes, n_channels)
        n_pos = 4 * POS_FREQS if positional else 0
        self.layers = nn.ModuleList(
            GatedLayer(n_channels, kernel_size, n_conditions, dropout, n_pos) for _ in range(n_layers)
        )
        self.out1 = nn.Linear(n_channels, n_channels)
        self.out2 = nn.Linear(n_channels, n_codes)

    @classmethod
    def from_config(cls, cfg: PixelCNNConfig, n_codes: int) -> GatedPixelCNN:
        """Build from a `PixelCNNConfig`; conditional models get cfg.n_slices classes."""
        return cls(
            n_codes,
            n_channels=cfg.n_channels,
            n_layers=cfg.n_layers,
            kernel_size=cfg.kernel_size,
            n_conditions=cfg.n_slices if cfg.conditional else 0,
            dropout=cfg.dropout,
            positional=cfg.positional,
        )

    def receptive_field(self) -> int:
        """Rows above a position that can influence its logits: 1 + n_layers * (kernel_size // 2).

        The same number of columns to the left is seen in the current row; in the rows above,
        columns up to n_layers * (kernel_size // 2) either side are seen.
        """
        return 1 + self.n_layers * (self.kernel_size // 2)

    # ---- building blocks shared by forward and the fast sampler -------------------------

    def check_cond(self, cond, batch: int) -> torch.Tensor | None:
        """Validate `cond` (None, int, or (batch,) ints) -> (batch,) int64 tensor or None.

        Raises a one-line ValueError when it is missing for a conditional model, given to
        an unconditional one, the wrong length, or out of [0, n_conditions).
        """
        if self.n_conditions == 0:
            if cond is not None:
                raise ValueError(
                    f"cond={_short(cond)} given, but this PixelCNN is unconditional (n_conditions=0); pass cond=None"
                )
            return None
        if cond is None:
            raise ValueError(
                f"this PixelCNN is conditional: pass cond, a slice position in 0..{self.n_conditions - 1}"
            )
        try:
            t = torch.as_tensor(cond)
        except (TypeError, ValueError, RuntimeError):
            raise ValueError(
                f"cond={_short(cond)} must be an int or a sequence/tensor of ints"
            ) from None
        if t.dtype.is_floating_point or t.dtype.is_complex or t.dtype == torch.bool:
            raise ValueError(f"cond={_short(cond)} must hold integers, got dtype {t.dtype}")
        if t.ndim == 0:
            t = t.expand(batch)
        if t.shape != (batch,):
            raise ValueError(
                f"cond has shape {tuple(t.shape)}; expected an int or {batch} ints (one per sample)"
            )
        lo, hi = int(t.min()), int(t.max())
        if lo < 0 or hi >= self.n_conditions:
            bad = lo if lo < 0 else hi
            raise ValueError(
                f"cond={bad} out of range; valid slice positions are 0..{self.n_conditions - 1}"
            )
        return t.to(device=self.embedding.weight.device, dtype=torch.long)

    def cond_biases(self, cond: torch.Tensor | None, shape=None) -> list:
        """Per layer gate biases [vertical | horizontal] (4C channels last), or None each.

        cond: a checked (B,) int64 tensor from `check_cond`, or None. shape: the (H, W) grid,
        needed by a positional model. The biases are (B, 1, 1, 4C) for the condition alone,
        (1, H, W, 4C) for position alone, (B, H, W, 4C) for both. They never depend on codes,
        so causality is untouched.
        """
        out = []
        feats = None
        if self.positional:
            if shape is None:
                raise ValueError("a positional PixelCNN needs the grid shape (H, W) for its biases")
            w = self.embedding.weight
            feats = position_features(*shape, device=w.device).to(w.dtype)
        for layer in self.layers:
            b = None if cond is None else layer.cond(cond)[:, None, None]
            if feats is not None:
                p = layer.pos(feats).unsqueeze(0)
                b = p if b is None else b + p
            out.append(b)
        return out

    def embed(self, codes: torch.Tensor) -> torch.Tensor:
        """(B, H, W) int64 codes -> (B, H, W, C) float embeddings (channels-last)."""
        return self.embedding(codes)

    def head(self, skip: torch.Tensor) -> torch.Tensor:
        """Summed skips (..., C) -> logits (..., n_codes): ReLU, 1x1, ReLU, 1x1."""
        # functional calls: this runs once per position in the sampler, where module-call
        # overhead is a large part of the cost
        x = F.linear(F.relu(skip), self.out1.weight, self.out1.bias)
        return F.linear(F.relu(x), self.out2.weight, self.out2.bias)

    # ---- full-grid pass ------------------------------------------------------------------

    def forward_embedded(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        """Logits (B, n_codes, H, W) from embeddings x (B, H, W, C) and a checked cond (or None).

        Exposed so that tests can differentiate with respect to the input grid.
        """
        return self.logits_last(x, cond).permute(0, 3, 1, 2)

    def logits_last(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        """Channels-last logits (B, H, W, n_codes) from embeddings x (B, H, W, C) and a checked cond."""
        H, W = x.shape[1:3]
        a = self.kernel_size // 2
        biases = self.cond_biases(cond, (H, W))
        v, acc = x, None
        for i, layer in enumerate(self.layers):
            s = 1 if i == 0 else 0  # first layer: shift by one so a position never sees itself
            h = x if i == 0 else acc[..., : self.n_channels]
            v_win = F.pad(v, (0, 0, 0, 0, a + s, 0))[:, : H + a]  # rows r-a-s .. r-s for row r
            h_win = F.pad(h, (0, 0, a + s, 0))[:, :, : W + a]  # cols c-a-s .. c-s for col c
            v, link = layer.vertical(v_win, biases[i])
            acc = layer.horizontal(h_win, link, acc)
        return self.head(acc[..., self.n_channels :])

    def forward(self, codes: torch.Tensor, cond=None) -> torch.Tensor:
        """codes (B, H, W) int64 in [0, n_codes); cond None / int / (B,) ints -> logits (B, n_codes, H, W)."""
        codes, cond = self._checked(codes, cond)
        return self.forward_embedded(self.embed(codes), cond)

    def nll(self, codes: torch.Tensor, cond=None, reduction: str = "mean") -> torch.Tensor:
        """Cross-entropy (nats) of `codes` under the model, `reduction` as in F.cross_entropy.

        The same numbers as cross_entropy(forward(codes, cond), codes), but computed on the
        channels-last logits: no (B, K, H, W) layout copy, ~15 % faster to train on a CPU."""
        codes, cond = self._checked(codes, cond)
        logits = self.logits_last(self.embed(codes), cond)
        return F.cross_entropy(
            logits.reshape(-1, self.n_codes).float(), codes.reshape(-1), reduction=reduction
        )

    def _checked(self, codes, cond) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Validated (int64 codes, cond tensor or None); one-line ValueError otherwise."""
        if not torch.is_tensor(codes) or codes.ndim != 3 or codes.dtype.is_floating_point:
            desc = (
                f"tensor of shape {tuple(codes.shape)} and dtype {codes.dtype}"
                if torch.is_tensor(codes)
                else type(codes).__name__
            )
            raise ValueError(f"PixelCNN input must be (B, H, W) integer codes, got a {desc}")
        if codes.numel() and (int(codes.min()) < 0 or int(codes.max()) >= self.n_codes):
            raise ValueError(
                f"PixelCNN codes span {int(codes.min())}..{int(codes.max())}; valid codes are 0..{self.n_codes - 1}"
            )
        return codes.long(), self.check_cond(cond, codes.shape[0])


def bits_per_code(logits: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy in bits: logits (B, K, H, W) float, codes (B, H, W) int64 -> 0-dim float tensor."""
    if logits.ndim != codes.ndim + 1 or logits.shape[:1] + logits.shape[2:] != codes.shape:
        raise ValueError(
            f"bits_per_code: logits {tuple(logits.shape)} do not match codes {tuple(codes.shape)}; expected (B, K, H, W) and (B, H, W)"
        )
    return F.cross_entropy(logits, codes.long()) / math.log(2.0)


def _short(x) -> str:
    """A short repr for error messages (tensors/lists can be long)."""
    r = repr(x.tolist() if torch.is_tensor(x) else x)
    return r if len(r) <= 40 else r[:37] + "..."
