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

Switches for context over the whole slice (all off by default; see `PixelCNNConfig`):

* ``order="ap"``: the model works on the transposed grid, so its rows run
  anterior->posterior and left/right partners share a row. `forward`, `nll` and the
  samplers still take and return image-layout grids (B, H, W); the transposition is
  internal (`to_internal` / `internal_shape`).
* ``v_dilation``: the vertical convolutions of successive layers look at rows spaced
  1, 2, 4, .., v_dilation apart (cycled), so the vertical stack reaches
  1 + (k//2) * sum(dilations) rows up (the whole 64-row grid for 8 layers up to 8).
* ``attn_layers``: causal self-attention blocks (PixelSNAIL-style, `hipgen_utils.attention`)
  on the horizontal stream, each after a gated layer: every position attends to every
  position up to and including itself in sampling order. Including itself is safe: the horizontal stream at
  a position never contains that position's code (the first layer is "mask A" and every
  later step only mixes positions <= p, each of which saw only codes < itself). So every
  earlier code reaches a position but one: the previous line's last code, which no stream
  carries before the next line starts, unless the convolutions reach it (within
  n_layers * k//2 columns); a line later it is in the attended streams too.
  Queries and keys get the fixed Fourier position features. Pre-norm, residual, and, like
  a gated layer, one output map gives both the residual update and a skip.
* ``attn_pool=b``: the attention's keys/values are the means over b x b blocks, and a
  position attends to the blocks complete before it (plus a learned null key): a coarse
  grid of (rows/b) x (cols/b) keys, b**2 times cheaper to train and sample.
* ``mirror=True`` (order "lr" only): the second half of the rows also sees its mirror image.
  A pelvis is close to left-right symmetric, and once the first half is drawn, row r >=
  ceil(H/2) has its mirror row H-1-r (the partner femoral head) behind it;
  `hipgen_utils.mirror.MirrorConditioner` maps the embeddings around that row to per-layer gate
  biases and a term added to the summed skips before the output head (zero in the first
  half, so causality holds; the sampler computes it once the first half is known).
* ``tables=True``: full-rank logit terms looked up from the codes of earlier neighbours --
  left, up, up-left, up-right and, with mirror context, the three codes around the mirror
  position (H-1-r+d, c), d = -1, 0, 1, in the second half -- added to the head's logits
  (`table_index`, `table_logits`). The head maps n_channels features to n_codes logits, so
  its logits have rank n_channels: 32 channels cannot tell 512 codes apart on their own
  (the "softmax bottleneck"); a table row per neighbouring code can, for the price of a
  lookup. The tables start at zero (the plain prior) and read only positions before their
  own, so causality holds; the sampler looks up a row's terms from the rows above once
  (`table_row`) and adds the left neighbour's as it draws.
* ``top_codes=K_top``: a two-level prior (VQ-VAE-2 style, see `hipgen_utils.hierarchy`).
  A frozen `TopCoder` turns each top_factor x top_factor block of bottom codes into one of
  K_top top codes; a small PixelCNN (``top_prior``, this class without a top) models the
  coarse top grid, which it sees whole; this model draws the bottom grid given the top
  grid through per-layer gate biases from a `TopConditioner` map (like the positional
  biases, they never depend on bottom codes). `nll` gives the total bits (top + bottom given top) per bottom code;
  `hipgen_utils.sampling.sample` draws the top grid first.

The model is split into small methods (`embed`, `cond_biases`, `GatedLayer.vertical`,
`GatedLayer.horizontal` / `horizontal_flat`, `AttentionBlock.step`, `head`) that work on
any window of rows or columns, so the fast sampler in `hipgen_utils.sampling` runs the same
modules row by row (vertical) and position by position (horizontal, attention with cached
keys/values), and `forward` runs them on the whole grid.

`AttentionBlock` lives in `hipgen_utils.attention` (imported here, so
``from hipgen_utils.pixelcnn import AttentionBlock`` keeps working). The rest of the model is
one file, over the project's ~400-line guide, on purpose: the causal shifts in `logits_last`,
the windows `GatedLayer.vertical` / `horizontal` expect, and the per-window methods the
sampler calls make one argument (no position ever sees itself or a later one) that a reader
checks in one sitting, like nanoGPT's model.py; the conditioning biases and the two-level
hooks feed the same gates. About 100 of its lines are argument checks with one-line errors.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from hipgen_utils.attention import AttentionBlock
from hipgen_utils.config import PixelCNNConfig
from hipgen_utils.hierarchy import TopCoder, TopConditioner
from hipgen_utils.mirror import MirrorConditioner, first_mirrored_row

POS_FREQS = 6  # Fourier frequencies per axis for the positional biases
ORDERS = ("lr", "ap")  # sampling orders: rows along left-right (image layout) / anterior-posterior
# code tables (tables=True): the neighbours whose codes index them, as (row, column) offsets
# in sampling order -- left first (the only one in the row being drawn), then the row above --
# and, with mirror context, offsets of the mirror row (rows-1-r+d) for the second half
TABLE_OFFSETS = ((0, -1), (-1, 0), (-1, -1), (-1, 1))
MIRROR_OFFSETS = (-1, 0, 1)


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
        self,
        n_channels: int,
        kernel_size: int,
        n_conditions: int,
        dropout: float,
        n_pos: int = 0,
        dilation: int = 1,
        n_top: int = 0,
        n_mirror: int = 0,
    ):
        super().__init__()
        c, a = n_channels, kernel_size // 2
        self.reach = a + 1  # columns the horizontal step looks at
        self.dilation = dilation
        self.v_extent = a * dilation  # the vertical step spans v_extent + 1 rows
        # vertical: a+1 rows `dilation` apart, full kernel width; width padding is plain "same"
        self.v_conv = nn.Conv2d(
            c, 2 * c, (a + 1, kernel_size), padding=(0, a), dilation=(dilation, 1)
        )
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
        # gate biases from the top-level map of a two-level prior (n_top = its channels)
        self.top = nn.Linear(n_top, 4 * c, bias=False) if n_top else None
        # gate biases from the mirror map (n_mirror = its channels; zero in the first half)
        self.mirror = nn.Linear(n_mirror, 4 * c, bias=False) if n_mirror else None

    def vertical(
        self, window: torch.Tensor, bias: torch.Tensor | None = None, spaced: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Vertical step on rows above.

        window: (B, R + v_extent, W, C) -- the causal input rows of R output rows, top-padded
                (v_extent = k//2 * dilation).
        bias:   (B, 1, 1, 4C) conditioning biases [vertical | horizontal] or None.
        spaced: the window is (B, k//2+1, W, C), only the rows the kernel reads for one output
                row (`dilation` apart, gathered by the fast sampler); the convolution then runs
                undilated on them -- the same sums, without carrying the rows in between.
        Returns (v_out (B, R, W, C), link (B, R, W, 2C)); `link` is the vertical
        pre-activation mapped (1x1) for the horizontal stack, plus the horizontal
        conditioning bias, i.e. everything the horizontal gate gets from outside its row.
        """
        # a contiguous channels-last tensor permuted to NCHW is channels_last memory format,
        # which the CPU/GPU convolution kernels take without a copy
        x = window.permute(0, 3, 1, 2)
        if spaced:
            pre = F.conv2d(x, self.v_conv.weight, self.v_conv.bias, padding=self.v_conv.padding).permute(0, 2, 3, 1)
        else:
            if self.dilation > 1 and x.device.type == "cpu" and x.shape[1] % 16:
                # torch 2.14's CPU kernel returns a NaN weight gradient for a dilated bf16
                # convolution of a channels-last input at some widths (24, 40, 56, 72, 120
                # channels; none of 16, 32, .., 128): those get an NCHW copy (~10 % slower)
                x = x.contiguous()
            pre = self.v_conv(x).permute(0, 2, 3, 1)
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
        dropout = self.dropout if self.training and self.dropout.p > 0 else None
        return horizontal_step(cols, link, acc, *self.step_params(), dropout=dropout)

    def step_params(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(h_conv weight transposed, h_out weight transposed, h_out bias): `horizontal_step`'s
        weights, which the fast sampler fetches once instead of once per position and layer."""
        return self.h_conv.weight.t(), self.h_out.weight.t(), self.h_out.bias


def horizontal_step(cols, link, acc, conv_t, out_t, out_b, dropout=None) -> torch.Tensor:
    """acc + h_out(gate(cols @ conv_t + link)) on the weights `GatedLayer.step_params` gives
    (see `GatedLayer.horizontal_flat`); the fast sampler's inner loop calls it directly, so
    it is written as two plain matrix products (no module or F.linear call in between)."""
    g = gate(torch.addmm(link, cols, conv_t))
    out = torch.addmm(out_b, g if dropout is None else dropout(g), out_t)
    return out if acc is None else acc + out


class GatedPixelCNN(nn.Module):
    """Gated PixelCNN over (B, H, W) int64 code grids in [0, n_codes).

    forward(codes, cond=None) -> logits (B, n_codes, H, W) float.
    `cond` (conditional models only): int or (B,) int tensor in [0, n_conditions).
    Sampling order: raster order over the *internal* grid, which is the image-layout grid
    for order "lr" and its transpose for order "ap" (`to_internal`). Without attention or
    dilation, logits at internal (r, c) depend exactly on positions before (r, c): rows
    r-1 .. r-R with R = `receptive_field()` and columns within n_layers * (kernel_size // 2)
    either side, and columns c-R .. c-1 of row r. Attention blocks widen this to every
    earlier position; dilation to rows r-1 .. r-R with the larger R.
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
        order: str = "lr",
        v_dilation: int = 1,
        attn_layers: int = 0,
        attn_heads: int = 2,
        attn_dim: int = 0,
        attn_pool: int = 1,
        top_codes: int = 0,
        top_factor: int = 4,
        top_channels: int = 64,
        top_layers: int = 6,
        top_dilation: int = 2,
        mirror: bool = False,
        tables: bool = False,
    ):
        super().__init__()
        for name, value, low in (
            ("n_codes", n_codes, 2),
            ("n_channels", n_channels, 1),
            ("n_layers", n_layers, 1),
            ("n_conditions", n_conditions, 0),
            ("v_dilation", v_dilation, 1),
            ("attn_layers", attn_layers, 0),
            ("attn_heads", attn_heads, 1),
            ("attn_dim", attn_dim, 0),
            ("attn_pool", attn_pool, 1),
            ("top_codes", top_codes, 0),
            ("top_factor", top_factor, 2),
            ("top_channels", top_channels, 1),
            ("top_layers", top_layers, 1),
            ("top_dilation", top_dilation, 1),
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
        if order not in ORDERS:
            raise ValueError(f"GatedPixelCNN: order={order!r} must be one of {', '.join(map(repr, ORDERS))}")
        if mirror and order != "lr":
            raise ValueError(
                f"GatedPixelCNN: mirror=True needs order='lr' (rows along left-right), got order={order!r}"
            )
        if top_codes == 1:
            raise ValueError("GatedPixelCNN: top_codes=1 must be 0 (one level) or at least 2 (top codebook size)")
        if v_dilation & (v_dilation - 1):
            raise ValueError(f"GatedPixelCNN: v_dilation={v_dilation!r} must be a power of 2 (1 = off)")
        if attn_layers > n_layers:
            raise ValueError(f"GatedPixelCNN: attn_layers={attn_layers} must be at most n_layers={n_layers}")
        attn_dim = attn_dim or n_channels
        if attn_layers and attn_dim % attn_heads:
            raise ValueError(
                f"GatedPixelCNN: attn_dim={attn_dim} (0 = n_channels) must divide by attn_heads={attn_heads}"
            )
        self.n_codes = n_codes
        self.n_channels = n_channels
        self.n_layers = n_layers
        self.kernel_size = kernel_size
        self.n_conditions = n_conditions
        self.dropout = dropout
        self.positional = bool(positional)
        self.order = order
        self.v_dilation = v_dilation
        self.attn_layers, self.attn_heads, self.attn_dim = attn_layers, attn_heads, attn_dim
        self.attn_pool = attn_pool

        self.top_codes, self.top_factor = top_codes, top_factor
        self.top_coder = self.top_prior = self.top_cond = None
        if top_codes:
            # the top level: a frozen coder (bottom blocks -> top codes), a small prior over the
            # top grid (same conditions, order and positions; no top of its own), and the map
            # that conditions this (bottom) prior on the top codes
            self.top_coder = TopCoder(n_codes, top_codes, top_factor)
            self.top_prior = GatedPixelCNN(
                top_codes, n_channels=top_channels, n_layers=top_layers, kernel_size=kernel_size,
                n_conditions=n_conditions, dropout=dropout, positional=positional, order=order,
                v_dilation=top_dilation,
            )  # fmt: skip
            self.top_cond = TopConditioner(top_codes, n_channels, top_factor)

        # the second half's mirror context (hipgen_utils.mirror): features of the mirror rows
        self.mirror_cond = MirrorConditioner(n_channels) if mirror else None
        # ... and the same map straight into the summed skips that the output head reads
        self.mirror_out = nn.Linear(n_channels, n_channels, bias=False) if mirror else None
        self.mirror = bool(mirror)

        self.embedding = nn.Embedding(n_codes, n_channels)
        n_pos = 4 * POS_FREQS if positional else 0
        cycle = [2**j for j in range(v_dilation.bit_length())]  # 1, 2, 4, .., v_dilation
        n_top = n_channels if top_codes else 0
        self.layers = nn.ModuleList(
            GatedLayer(
                n_channels, kernel_size, n_conditions, dropout, n_pos, cycle[i % len(cycle)], n_top,
                n_channels if mirror else 0,
            )  # fmt: skip
            for i in range(n_layers)
        )
        # attention block j follows gated layer ceil((j+1) * L / A) - 1: spread evenly, the
        # last one after the last gated layer (PixelSNAIL's blocks each end with attention)
        self.attn_after = {
            -(-(j + 1) * n_layers // attn_layers) - 1: j for j in range(attn_layers)
        }
        self.attn = nn.ModuleList(
            AttentionBlock(n_channels, attn_dim, attn_heads, 4 * POS_FREQS, attn_pool)
            for _ in range(attn_layers)
        )
        self.out1 = nn.Linear(n_channels, n_channels)
        self.out2 = nn.Linear(n_channels, n_codes)
        # code tables: full-rank logit terms looked up from the codes of a few earlier
        # neighbours (TABLE_OFFSETS and, with mirror context, MIRROR_OFFSETS): the head's
        # logits have rank n_channels (32 in the demo), too few to tell 512 codes apart
        self.n_neighbours = (len(TABLE_OFFSETS) + len(MIRROR_OFFSETS) * mirror) if tables else 0
        self.tables = None
        if tables:
            self.tables = nn.Embedding(self.n_neighbours * (n_codes + 1), n_codes)
            nn.init.zeros_(self.tables.weight)  # starts as the plain prior

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
            order=cfg.order,
            v_dilation=cfg.v_dilation,
            attn_layers=cfg.attn_layers,
            attn_heads=cfg.attn_heads,
            attn_dim=cfg.attn_dim,
            attn_pool=getattr(cfg, "attn_pool", 1),
            top_codes=cfg.top_codes,
            top_factor=cfg.top_factor,
            top_channels=cfg.top_channels,
            top_layers=cfg.top_layers,
            top_dilation=cfg.top_dilation,
            mirror=getattr(cfg, "mirror", False),
            tables=getattr(cfg, "tables", False),
        )

    def receptive_field(self) -> int:
        """Rows above a position (in the internal grid) that the convolutions let influence its
        logits: 1 + (kernel_size // 2) * (sum of the layers' vertical dilations), i.e.
        1 + n_layers * (kernel_size // 2) without dilation. Attention blocks see further.

        Without dilation the same number of columns to the left is seen in the current row;
        in the rows above, columns up to n_layers * (kernel_size // 2) either side are seen.
        """
        return 1 + (self.kernel_size // 2) * sum(layer.dilation for layer in self.layers)

    # ---- sampling order: image layout <-> the model's internal grid ----------------------

    def to_internal(self, t: torch.Tensor) -> torch.Tensor:
        """(B, H, W, ...) image layout -> (B, rows, cols, ...) in sampling order: a view,
        transposed for order "ap". Its own inverse."""
        return t.transpose(1, 2) if self.order == "ap" else t

    def internal_shape(self, shape) -> tuple[int, int]:
        """Image-layout (H, W) -> the internal grid's (rows, cols) (swapped for order "ap")."""
        H, W = (int(s) for s in shape)
        return (W, H) if self.order == "ap" else (H, W)

    def attn_features(self, shape) -> torch.Tensor | None:
        """(rows, cols, 4 * POS_FREQS) position features of the internal grid for the attention
        blocks (None without attention)."""
        if not self.attn_layers:
            return None
        w = self.embedding.weight
        return position_features(*shape, device=w.device).to(w.dtype)

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

    def cond_biases(
        self, cond: torch.Tensor | None, shape=None, top: torch.Tensor | None = None,
        mirror: torch.Tensor | None = None,
    ) -> list:  # fmt: skip
        """Per layer gate biases [vertical | horizontal] (4C channels last), or None each.

        cond: a checked (B,) int64 tensor from `check_cond`, or None. shape: the internal
        (rows, cols) grid (`internal_shape`), needed by a positional model. top: a two-level
        prior's (B, H/f, W/f) top codes in image layout (required there, refused elsewhere).
        The biases are (B, 1, 1, 4C) for the condition alone, (1, H, W, 4C) for position
        alone, (B, H, W, 4C) for both or with a top. Apart from `mirror` they never depend on
        (bottom) codes, so causality is untouched. mirror: a mirror prior's (B, rows, cols, C)
        map from `mirror_map` (required there, refused elsewhere); it holds only first-half
        codes, and only second-half rows, so it is causal too (`hipgen_utils.mirror`).
        """
        return self.row_biases(self.bias_sources(cond, shape, top, mirror))

    def bias_sources(
        self, cond: torch.Tensor | None, shape=None, top: torch.Tensor | None = None,
        mirror: torch.Tensor | None = None,
    ) -> tuple:  # fmt: skip
        """What the gate biases are made from, checked and computed once (arguments as in
        `cond_biases`): (cond, position features (rows, cols, F) or None, top map (B, rows, cols,
        C) or None, mirror map or None). `row_biases` turns them into biases for any rows."""
        feats = tmap = None
        if (top is None) != (self.top_cond is None):
            raise ValueError(
                "this prior has a top level: pass its top codes" if top is None
                else "top codes given, but this prior has no top level (top_codes=0)"
            )
        if top is not None:
            tmap = self.to_internal(self.top_cond(top))  # (B, rows, cols, C)
        if (mirror is None) != (self.mirror_cond is None):
            raise ValueError(
                "this prior has mirror context: pass its mirror map" if mirror is None
                else "a mirror map given, but this prior has no mirror context (mirror=False)"
            )
        if self.positional:
            if shape is None:
                raise ValueError("a positional PixelCNN needs the grid shape (H, W) for its biases")
            w = self.embedding.weight
            feats = position_features(*shape, device=w.device).to(w.dtype)
        return cond, feats, tmap, mirror

    def row_biases(self, sources: tuple, row: int | None = None) -> list:
        """Per layer gate biases from `bias_sources`: for the whole grid (row None), else for
        internal row `row` alone ((B or 1, 1, cols, 4C) at most). The fast sampler asks one row
        at a time, so it never holds a (B, rows, cols, 4C) tensor per layer (60 MiB per sample
        for the `full` prior)."""
        cond, feats, tmap, mirror = sources
        if row is not None:
            rows = slice(row, row + 1)
            feats = None if feats is None else feats[rows]
            tmap = None if tmap is None else tmap[:, rows]
            if mirror is not None:  # zero in the first half
                mirror = mirror[:, rows] if row >= first_mirrored_row(mirror.shape[1]) else None
        out = []
        for layer in self.layers:
            b = None if cond is None else layer.cond(cond)[:, None, None]
            if feats is not None:
                p = layer.pos(feats).unsqueeze(0)
                b = p if b is None else b + p
            if tmap is not None:
                t = layer.top(tmap)
                b = t if b is None else b + t
            if mirror is not None:
                m = layer.mirror(mirror) if row is not None else _on_second_half(layer.mirror, mirror)
                b = m if b is None else b + m
            out.append(b)
        return out

    def mirror_map(self, x: torch.Tensor) -> torch.Tensor | None:
        """Mirror features (B, rows, cols, C) of internal-grid embeddings x, or None without
        mirror context. Row r >= `first_mirrored_row(rows)` reads rows near rows-1-r, every other
        row is zero: once the first half is drawn the map is final (`hipgen_utils.mirror`)."""
        return None if self.mirror_cond is None else self.mirror_cond(x)

    def mirror_skip(self, mirror: torch.Tensor) -> torch.Tensor:
        """(B, rows, cols, C) term a mirror prior adds to the summed skips before `head`, from
        its mirror map (zero in the first half, like the map)."""
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
        """(B, rows, cols) internal-grid codes -> (B, rows, cols, n_neighbours) rows of `tables`
        for every position: the codes at TABLE_OFFSETS (left first, then the row above: up,
        up-left, up-right) and, with mirror context, for rows r of the second half the codes
        at (rows-1-r+d, c), d in MIRROR_OFFSETS, where that row lies in the first half. A
        position without such a neighbour reads that neighbour's own "none" row (index
        n_codes). Every neighbour comes strictly before the position in sampling order.
        row: only that row's positions, (B, 1, cols, n_neighbours) (the sampler's)."""
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
        """(B, cols, n_codes): the table terms of internal row r's upper and mirror neighbours,
        all in rows before r (the fast sampler looks them up once per row and adds each
        position's left neighbour, `tables.weight[code to the left]`, as it draws)."""
        return self.table_logits(self.table_index(codes, r)[:, 0, :, 1:])  # left column dropped

    def table_logits(self, index: torch.Tensor) -> torch.Tensor:
        """(..., k) rows of `tables` -> (..., n_codes) their summed logit terms."""
        flat = F.embedding_bag(index.reshape(-1, index.shape[-1]), self.tables.weight, mode="sum")
        return flat.view(*index.shape[:-1], self.n_codes)

    # ---- full-grid pass ------------------------------------------------------------------

    def forward_embedded(
        self, x: torch.Tensor, cond: torch.Tensor | None = None, top: torch.Tensor | None = None,
        codes: torch.Tensor | None = None,
    ) -> torch.Tensor:  # fmt: skip
        """Logits (B, n_codes, H, W) from image-layout embeddings x (B, H, W, C), a checked
        cond (or None), for a two-level prior the top codes (B, H/f, W/f), and for a prior
        with code tables the codes (B, H, W) that x embeds.

        Exposed so that tests can differentiate with respect to the input grid.
        """
        codes = None if codes is None else self.to_internal(codes)
        logits = self.logits_last(self.to_internal(x), cond, top=top, codes=codes)
        return self.to_internal(logits).permute(0, 3, 1, 2)

    def logits_last(
        self, x: torch.Tensor, cond: torch.Tensor | None = None, kv: list | None = None,
        top: torch.Tensor | None = None, codes: torch.Tensor | None = None,
    ) -> torch.Tensor:  # fmt: skip
        """Channels-last logits (B, rows, cols, n_codes) from embeddings x (B, rows, cols, C) of
        the *internal* grid (`to_internal`), a checked cond, (two-level prior) the top codes
        and (code tables) the internal-grid codes that x embeds.

        kv: a list that receives each attention block's (keys, values) (the sampler's cache)."""
        if (codes is None) != (self.tables is None):
            raise ValueError(
                "this prior has code tables: pass the codes" if codes is None
                else "codes given, but this prior has no code tables (tables=False)"
            )
        H, W = x.shape[1:3]
        a, C = self.kernel_size // 2, self.n_channels
        mirror = self.mirror_map(x)
        biases = self.cond_biases(cond, (H, W), top, mirror)
        feats = self.attn_features((H, W))
        v, acc = x, None
        for i, layer in enumerate(self.layers):
            s = 1 if i == 0 else 0  # first layer: shift by one so a position never sees itself
            e = layer.v_extent
            h = x if i == 0 else acc[..., :C]
            v_win = F.pad(v, (0, 0, 0, 0, e + s, 0))[:, : H + e]  # rows r-e-s .. r-s for row r
            h_win = F.pad(h, (0, 0, a + s, 0))[:, :, : W + a]  # cols c-a-s .. c-s for col c
            v, link = layer.vertical(v_win, biases[i])
            acc = layer.horizontal(h_win, link, acc)
            if i in self.attn_after:
                acc = self.attn[self.attn_after[i]](acc, feats, kv)
        skip = acc[..., C:]
        if mirror is not None:
            skip = skip + self.mirror_skip(mirror)
        logits = self.head(skip)
        return logits if codes is None else logits + self.table_logits(self.table_index(codes))

    def forward(self, codes: torch.Tensor, cond=None) -> torch.Tensor:
        """codes (B, H, W) int64 in [0, n_codes); cond None / int / (B,) ints -> logits (B, n_codes, H, W).

        A two-level prior gives the bottom logits given the top codes of `codes` itself
        (`top_coder.encode`); the top level's own probabilities are in `nll`."""
        codes, cond = self._checked(codes, cond)
        top = None if self.top_coder is None else self.top_coder.encode(codes)
        return self.forward_embedded(self.embed(codes), cond, top, codes if self.tables is not None else None)

    def nll(self, codes: torch.Tensor, cond=None, reduction: str = "mean") -> torch.Tensor:
        """Cross-entropy (nats) of `codes` (B, H, W) under the model, `reduction` as in F.cross_entropy.

        One level: the same numbers as cross_entropy(forward(codes, cond), codes), but computed
        on the channels-last logits: no (B, K, H, W) layout copy, ~15 % faster to train on a
        CPU. Two levels: the top prior's nats of the top codes, each spread evenly over its
        f x f block, plus the bottom's nats given the top codes -- so "mean" is the total
        nats per bottom code, and "none" (flat, image-layout raster order) sums to the total."""
        codes, cond = self._checked(codes, cond)
        top = None if self.top_coder is None else self.top_coder.encode(codes)
        internal = self.to_internal(codes).contiguous()
        tab = internal if self.tables is not None else None
        logits = self.logits_last(self.embed(internal), cond, top=top, codes=tab)
        out = F.cross_entropy(
            logits.reshape(-1, self.n_codes).float(), internal.reshape(-1),
            reduction="none" if top is not None else reduction,
        )  # fmt: skip
        if top is None and reduction != "none":
            return out
        out = self.to_internal(out.view(internal.shape))  # image layout (B, H, W)
        if top is not None:
            f = self.top_factor
            t = self.top_prior.nll(top, cond, reduction="none").view(top.shape) / f**2
            out = out + t.repeat_interleave(f, 1).repeat_interleave(f, 2)
            if reduction != "none":
                return out.sum() if reduction == "sum" else out.mean()
        return out.reshape(-1)

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


def _on_second_half(fn, mirror: torch.Tensor) -> torch.Tensor:
    """fn (a per-position map) of a mirror map, computed on its second-half rows only and
    zero above them, where the map itself is zero: half the work of mapping the whole grid."""
    first = first_mirrored_row(mirror.shape[1])
    return F.pad(fn(mirror[:, first:]), (0, 0, 0, 0, first, 0))


def _short(x) -> str:
    """A short repr for error messages (tensors/lists can be long)."""
    r = repr(x.tolist() if torch.is_tensor(x) else x)
    return r if len(r) <= 40 else r[:37] + "..."
