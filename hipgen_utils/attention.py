"""Causal self-attention for the gated PixelCNN prior (`hipgen_utils.pixelcnn`): the
``attn_layers`` blocks, PixelSNAIL-style (Chen et al. 2018), that let a position see every
earlier code, not only those within the convolutions' reach.

A block works on the prior's horizontal stream in its channels-last layout, (B, rows, cols,
2C) running sums [h | skip], and on the fixed Fourier position features of the grid
(`hipgen_utils.pixelcnn.position_features`), which it receives as an argument. `forward`
runs on a whole grid (training, `GatedPixelCNN.logits_last`); `new_cache`, `step_params`,
`slots` and `step` run one position at a time against cached keys/values (the fast sampler
in `hipgen_utils.sampling`). Why attending to a position itself is causal is explained in
the `hipgen_utils.pixelcnn` docstring, where the blocks are placed.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class AttentionBlock(nn.Module):
    """Causal multi-head self-attention on the horizontal stream (PixelSNAIL-style).

    Pre-norm: q, k, v are linear maps of LayerNorm(h), h = acc[..., :C] the residual
    stream; queries and keys also get a linear map of the fixed position features
    (`qkv_bias`). The output, one linear map to [res | skip] (2C) like a gated layer's, is
    added to `acc`. `forward` runs on a whole grid; `step` runs one position against cached
    keys/values (the fast sampler).

    pool = 1: every position is a key; position p attends to positions 0..p
    (scaled_dot_product_attention with is_causal over the positions in sampling order).
    pool = b > 1: keys and values are the means over b x b blocks of the grid (a coarse
    grid, rows and columns must divide by b), and position p attends to the blocks whose
    positions are all <= p, plus a learned "null" key/value (so the first positions, before
    any block is complete, attend to something). Per position that is at most
    1 + (rows/b) * (cols/b) keys instead of up to rows * cols: b**2 times less work.
    """

    def __init__(self, n_channels: int, dim: int, heads: int, n_pos: int, pool: int = 1):
        super().__init__()
        self.heads, self.dim, self.pool = heads, dim, pool
        self.norm = nn.LayerNorm(n_channels)
        self.qkv = nn.Linear(n_channels, 3 * dim)
        self.pos = nn.Linear(n_pos, 2 * dim, bias=False)  # position -> [query | key]
        self.out = nn.Linear(dim, 2 * n_channels)
        self.null = nn.Parameter(torch.randn(2, dim) * 0.02) if pool > 1 else None  # [key; value]

    def qkv_bias(self, feats: torch.Tensor) -> torch.Tensor:
        """(..., n_pos) position features -> (..., 3*dim): each position's additive terms of
        [query | key | value], i.e. the position map for q and k plus the biases."""
        pos = self.pos(feats)
        return torch.cat([pos, pos.new_zeros(*pos.shape[:-1], self.dim)], dim=-1) + self.qkv.bias

    def _normed(self, h: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(h, self.norm.normalized_shape, self.norm.weight, self.norm.bias, self.norm.eps)

    def slots(self, H: int, W: int) -> tuple[torch.Tensor, torch.Tensor]:
        """For each position p of an (H, W) grid in raster order: (slot (P,), count (P,)) --
        the cache index its key/value goes to, and how many cache entries (0..count-1) it
        attends to. pool 1: slot p, count p+1. pool b: slot 1 + its block's raster index
        (slot 0 is the null key), count 1 + the number of blocks complete at p (a prefix of
        the blocks in raster order: the block rows above, and in the last row of a block row
        the blocks up to this column)."""
        b = self.pool
        if H % b or W % b:
            raise ValueError(f"attention pool={b} needs grid sides that divide by {b}, got {H}x{W}")
        r, c = torch.arange(H).repeat_interleave(W), torch.arange(W).repeat(H)
        if b == 1:
            p = torch.arange(H * W)
            return p, p + 1
        slot = 1 + (r // b) * (W // b) + c // b
        count = 1 + (r // b) * (W // b) + torch.where(r % b == b - 1, (c + 1) // b, 0)
        return slot, count

    def forward(self, acc: torch.Tensor, feats: torch.Tensor, kv: list | None = None) -> torch.Tensor:
        """acc (B, H, W, 2C) running [h | skip], feats (H, W, n_pos) -> acc + out (B, H, W, 2C).

        `kv`: a list to which each position's (B, heads, H*W, dim/heads) key and value are
        appended (before pooling; the sampler's cache of a prefix).
        """
        B, H, W, C2 = acc.shape
        qkv = F.linear(self._normed(acc[..., : C2 // 2]), self.qkv.weight) + self.qkv_bias(feats)
        q, k, v = qkv.chunk(3, dim=-1)
        if kv is not None:  # per position, before any pooling (the sampler pools as it goes)
            kv.append(tuple(t.reshape(B, H * W, self.heads, -1).transpose(1, 2) for t in (k, v)))
        mask = None
        if self.pool > 1:
            b = self.pool
            _, count = self.slots(H, W)
            k, v = (t.reshape(B, H // b, b, W // b, b, self.dim).mean((2, 4)) for t in (k, v))
            k, v = (
                torch.cat([n.expand(B, 1, self.dim), t.reshape(B, -1, self.dim)], dim=1)
                for n, t in zip(self.null.to(k.dtype), (k, v))
            )
            mask = torch.arange(k.shape[1], device=acc.device) < count.to(acc.device)[:, None]
        q, k, v = (t.reshape(B, -1, self.heads, self.dim // self.heads).transpose(1, 2) for t in (q, k, v))
        if mask is None:
            o = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:  # few keys: plain matmuls (a masked SDPA falls back to a slow path in CPU bf16)
            scores = (q * q.shape[-1] ** -0.5) @ k.transpose(-1, -2)
            o = torch.softmax(scores.masked_fill(~mask, float("-inf")), dim=-1) @ v
        return acc + self.out(o.transpose(1, 2).reshape(B, H, W, self.dim))

    def new_cache(self, n: int, H: int, W: int, like: torch.Tensor):
        """Empty (keys (n, heads, dim/heads, S), values (n, heads, S, dim/heads)) for `step`;
        with pooling, slot 0 holds the null key/value."""
        h, dh = self.heads, self.dim // self.heads
        S = H * W if self.pool == 1 else 1 + (H // self.pool) * (W // self.pool)
        keys, values = like.new_zeros(n, h, dh, S), like.new_zeros(n, h, S, dh)
        if self.pool > 1:
            keys[..., 0] = self.null[0].to(like.dtype).view(h, dh)
            values[:, :, 0] = self.null[1].to(like.dtype).view(h, dh)
        return keys, values

    def step_params(self, feats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(weight_t (C, 3*dim), bias (P, 3*dim)) for `step` from (P, n_pos) position features:
        the q/k/v map transposed and each position's `qkv_bias`, with the query part scaled by
        1/sqrt(dim/heads) (one op less per step than scaling the scores)."""
        scale = torch.ones(3 * self.dim, dtype=feats.dtype, device=feats.device)
        scale[: self.dim] = (self.dim // self.heads) ** -0.5
        return self.qkv.weight.t() * scale, self.qkv_bias(feats) * scale

    def step(
        self, acc: torch.Tensor, params: tuple, p: int, keys: torch.Tensor, values: torch.Tensor,
        slot: int, count: int,
    ) -> torch.Tensor:  # fmt: skip
        """One position p for n samples: acc (n, 2C); params from `step_params`; slot/count
        of p from `slots`.

        keys (n, heads, dim/heads, S) and values (n, heads, S, dim/heads): the cache (keys
        transposed: a query's scores are then one contiguous row-vector product, ~1.6x faster
        on a CPU). This position's key and value are written at `slot` (pool 1) or added to
        its block's mean there (pool b); the query attends to entries 0..count-1. Returns
        acc + out (n, 2C). Functional calls: this runs once per position and block in the
        sampler, where call overhead adds up."""
        n, h = acc.shape[0], self.heads
        qkv = torch.addmm(params[1][p], self._normed(acc[:, : acc.shape[1] // 2]), params[0])
        q, k, v = (t.view(n, h, -1) for t in qkv.chunk(3, dim=-1))
        if self.pool == 1:
            keys[..., slot] = k
            values[:, :, slot] = v
        else:  # the block's mean, accumulated; attended only once the block is complete
            keys[..., slot].add_(k, alpha=1.0 / self.pool**2)
            values[:, :, slot].add_(v, alpha=1.0 / self.pool**2)
        scores = q.unsqueeze(2) @ keys[..., :count]  # (n, h, 1, count), q already scaled
        o = torch.softmax(scores, dim=-1) @ values[:, :, :count]  # (n, h, 1, dim/h)
        return torch.addmm(acc, o.view(n, self.dim), self.out.weight.t()).add_(self.out.bias)
