"""The top level of a two-level prior (VQ-VAE-2 style): a coarse code grid that sees the slice.

Why: the bottom PixelCNN draws a 64x32 grid of VQ-VAE codes position by position. Two
femoral heads lie 30-40 code rows apart, so whatever draws the second one has to carry the
first across half the slice. A coarse grid is cheap to see whole: with ``factor`` 4 the top
grid of a 64x32 bottom grid is 16x8 = 128 codes, and a small PixelCNN over it covers every
top row. The bottom prior then draws its 2048 codes *given* the top grid, so it only has to
fill in local detail around a layout that is already decided.

How the top codes are made: `TopCoder` is a small VQ-VAE over the bottom *codes* (not over
the image): each factor x factor block of bottom codes is embedded, flattened and mapped by
an MLP to one vector, which a second nearest-neighbour codebook (`quantizer.VectorQuantizer`,
EMA updates, dead-code restarts) turns into one top code; a convolutional decoder predicts
every bottom code of the grid back from the top codes (cross-entropy). This is the "further
downsampled encoder output with its own quantiser" of VQ-VAE-2 (Razavi et al. 2019), taken
over the discrete bottom codes as in hierarchical quantised autoencoders (Williams et al.
2020). The difference from VQ-VAE-2 proper is on purpose: the image decoder keeps using the
bottom codes alone, so the VQ-VAE, its reconstructions and its SSIM are untouched by the
hierarchy; the top codes exist only to give the prior a plan of the whole slice.

Two properties the rest of the package relies on:

* the encoder is *blockwise*: a top code depends only on its own block of bottom codes.
  So the top codes of a completion's kept half are exactly computable from that half alone
  (no peeking at the part to be completed), and `sampling.sample` derives the top prefix
  from the bottom prefix;
* the coder is trained first and then frozen (`GatedPixelCNN.nll` encodes with
  `quantize`, which changes no state), so the two priors learn a fixed target.

Total bits: ``GatedPixelCNN.nll`` of a hierarchical prior is the top prior's bits plus the
bottom prior's bits given the top codes, spread over the bottom positions, so bits per code
compare directly with a one-level prior's and with the unigram baseline.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from hipgen_utils.quantizer import VectorQuantizer


class TopCoder(nn.Module):
    """Bottom code grids (B, H, W) in [0, n_codes) <-> top code grids (B, H/f, W/f) in [0, n_top).

    encode(codes)  -> (B, H/f, W/f) int64 top codes (no state change)
    loss(codes)    -> (loss, stats): cross-entropy of the decoder's bottom-code logits
                      + the quantiser's commitment term; stats has "ce", "accuracy",
                      "perplexity" (of the top codes in the batch) as floats.
    """

    def __init__(self, n_codes: int, n_top: int, factor: int = 4, dim: int = 32,
                 hidden: int = 64, embed_dim: int = 32):  # fmt: skip
        super().__init__()
        for name, value, low in (("n_codes", n_codes, 2), ("n_top", n_top, 2), ("factor", factor, 2),
                                 ("dim", dim, 1), ("hidden", hidden, 1), ("embed_dim", embed_dim, 1)):  # fmt: skip
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"TopCoder: {name}={value!r} must be an integer >= {low}")
        self.n_codes, self.n_top, self.factor = n_codes, n_top, factor
        f = factor
        self.embed = nn.Embedding(n_codes, embed_dim)
        # one block of f x f bottom codes -> one top vector
        self.enc = nn.Sequential(nn.Linear(f * f * embed_dim, hidden), nn.GELU(), nn.Linear(hidden, dim))
        # data-initialised EMA codebook; unused codes restart quickly (top grids are small)
        self.quantizer = VectorQuantizer(n_top, dim, beta=0.25, codebook="ema", dead_after=20)
        # decoder: top grid (3x3: each block sees its neighbours) -> f x f feature vectors per
        # block -> code logits; all the convolutions run on the coarse grid, so it is cheap
        self.dec = nn.Sequential(
            nn.Conv2d(dim, hidden, 3, padding=1), nn.GELU(),
            nn.Conv2d(hidden, hidden, 3, padding=1), nn.GELU(),
            nn.Conv2d(hidden, f * f * embed_dim, 1), nn.PixelShuffle(f),
        )  # fmt: skip
        self.logits = nn.Linear(embed_dim, n_codes)  # channels-last: a fast softmax on a CPU

    def top_shape(self, shape) -> tuple[int, int]:
        """Bottom (H, W) -> top (H/f, W/f); a one-line ValueError when f does not divide them."""
        H, W = (int(s) for s in shape)
        f = self.factor
        if H % f or W % f:
            raise ValueError(f"top_factor={f} must divide the code grid {H}x{W}; choose a divisor of both sides")
        return H // f, W // f

    def latent(self, codes: torch.Tensor) -> torch.Tensor:
        """(B, H, W) bottom codes -> (B, dim, H/f, W/f) pre-quantisation top vectors, block by block."""
        B, (Ht, Wt), f = codes.shape[0], self.top_shape(codes.shape[1:]), self.factor
        e = self.embed(codes.long())  # (B, H, W, E)
        blocks = e.view(B, Ht, f, Wt, f, -1).permute(0, 1, 3, 2, 4, 5).reshape(B, Ht, Wt, -1)
        return self.enc(blocks).permute(0, 3, 1, 2)

    @torch.no_grad()
    def encode(self, codes: torch.Tensor) -> torch.Tensor:
        """(B, H, W) bottom codes -> (B, H/f, W/f) int64 top codes (deterministic, no state change)."""
        with torch.autocast(codes.device.type, enabled=False):
            return self.quantizer.quantize(self.latent(codes).float())

    def decode_logits(self, z_q: torch.Tensor) -> torch.Tensor:
        """(B, dim, H/f, W/f) top vectors -> (B, H, W, n_codes) channels-last bottom-code logits."""
        return self.logits(F.gelu(self.dec(z_q).permute(0, 2, 3, 1)))

    def loss(self, codes: torch.Tensor) -> tuple[torch.Tensor, dict]:
        """Training loss on (B, H, W) bottom codes (one codebook update in training mode)."""
        vq = self.quantizer(self.latent(codes))
        logits = self.decode_logits(vq.z_q).reshape(-1, self.n_codes)
        target = codes.long().reshape(-1)
        ce = F.cross_entropy(logits.float(), target)
        stats = {
            "ce": float(ce.detach()),
            "accuracy": float((logits.argmax(1) == target).float().mean()),
            "perplexity": float(vq.perplexity),
        }
        return ce + vq.loss, stats


class TopConditioner(nn.Module):
    """Top codes (B, H/f, W/f) -> a (B, H, W, C) feature map for the bottom prior's gate biases.

    The top codes are all known before the bottom grid is drawn, so this map may look at
    every one of them (two 3x3 convolutions: each block also sees its neighbours), then it is
    repeated over each f x f block. Each gated layer maps it (1x1) to its gate biases, like
    the positional features: the biases never depend on bottom codes, so causality holds."""

    def __init__(self, n_top: int, channels: int, factor: int):
        super().__init__()
        self.factor = factor
        self.embed = nn.Embedding(n_top, channels)
        self.net = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1), nn.GELU(), nn.Conv2d(channels, channels, 3, padding=1)
        )

    def forward(self, top: torch.Tensor) -> torch.Tensor:
        x = self.embed(top.long()).permute(0, 3, 1, 2)
        x = self.net(x)
        x = x.repeat_interleave(self.factor, 2).repeat_interleave(self.factor, 3)
        return x.permute(0, 2, 3, 1)  # channels-last, image layout


def train_top_coder(coder: TopCoder, train_codes, *, n_updates: int, batch_size: int = 32,
                    learning_rate: float = 2e-3, seed: int = 0, device="cpu", progress=True) -> dict:  # fmt: skip
    """Train `coder` on (N, H, W) bottom codes (numpy or torch) for `n_updates` Adam updates
    (cosine learning rate); returns its history {"step", "ce", "accuracy", "perplexity"}
    every 50 updates. The coder is left in eval mode with its gradients switched off: from
    here on it only encodes."""
    import numpy as np
    from tqdm.auto import tqdm

    from hipgen_utils.training import batch_indices, scheduled_lr

    coder.to(device).train().requires_grad_(True)
    opt = torch.optim.Adam(coder.parameters(), lr=learning_rate)
    data = np.asarray(train_codes)
    history = {"step": [], "ce": [], "accuracy": [], "perplexity": []}
    bar = tqdm(range(n_updates), desc="top coder", disable=not progress)
    for step in bar:
        for group in opt.param_groups:
            group["lr"] = scheduled_lr(learning_rate, "cosine", step, n_updates)
        idx = batch_indices(len(data), batch_size, seed, step)
        loss, stats = coder.loss(torch.as_tensor(data[idx], dtype=torch.long, device=device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if (step + 1) % 50 == 0 or step + 1 == n_updates:
            history["step"].append(step + 1)
            for key in ("ce", "accuracy", "perplexity"):
                history[key].append(stats[key])
            bar.set_postfix(acc=f"{stats['accuracy']:.2f}", ppl=f"{stats['perplexity']:.0f}")
    bar.close()
    coder.eval().requires_grad_(False)
    return history
