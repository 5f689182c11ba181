"""The vector quantiser: the discrete bottleneck of a VQ-VAE (van den Oord et al. 2017).

An encoder turns an image into a grid of D-dimensional vectors, ``z_e`` of shape
(B, D, h, w). The quantiser holds a codebook of K vectors ("codes", ``embedding`` (K, D))
and replaces every grid vector by its nearest code in Euclidean distance. What comes out
is a (B, h, w) grid of integers in [0, K) -- the discrete image that the PixelCNN prior
models -- and ``z_q``, the chosen code vectors, which is all the decoder ever sees.

Nearest-neighbour lookup raises three problems, each with a standard answer:

* **argmin has no gradient.** The straight-through estimator: the forward value is the
  code ``e``, and the backward pass hands the decoder's gradient to ``z_e`` unchanged
  (``z_q = z_e + sg(e - z_e)``, sg = stop-gradient). The encoder is also held close to
  the codes it picks by the commitment loss ``beta * ||z_e - sg(e)||^2`` (beta sits on
  the encoder side, as in the paper).
* **The codebook must learn too.** Two updates are available (``codebook=``):

  - ``"ema"`` (default): the codebook is not a parameter; each training forward moves every
    code towards the mean of the encoder outputs assigned to it (exponential moving
    averages of cluster sizes and sums, Laplace-smoothed sizes), which is more stable than
    gradients. It is k-means, one minibatch step at a time.
  - ``"loss"``: the codebook is a parameter trained by the codebook loss
    ``||sg(z_e) - e||^2``.

* **Codes die.** A code that wins no vector gets no update and stays unused for good. So
  the codebook starts from encoder outputs of the first training batch instead of near
  the origin, and codes unused for ``dead_after`` training updates are re-seeded from
  encoder outputs of the current batch, preferring those the codebook represents worst.

The distances and updates run in float32 even under autocast, so bf16 training on CUDA is
safe. Training-mode forwards update the codebook; eval mode and ``quantize`` (codes only)
change no state.

Used by `vqvae.VQVAE` (over image latents, as its ``quantizer`` attribute) and by
`hierarchy.TopCoder` (over embedded blocks of bottom codes).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

CODEBOOK_MODES = ("ema", "loss")


class VQOutput(NamedTuple):
    """What the quantiser returns for one batch."""

    z_q: torch.Tensor  # (B, D, h, w) quantised latents (straight-through gradient to z_e)
    loss: torch.Tensor  # scalar float32: beta * commitment (+ codebook loss when codebook="loss")
    codes: torch.Tensor  # (B, h, w) int64 code indices
    perplexity: torch.Tensor  # scalar float32: exp(entropy) of this batch's code histogram
    n_used: torch.Tensor  # scalar int64: distinct codes in this batch


def _no_autocast(t: torch.Tensor):
    """A context that turns autocast off on `t`'s device (distances must stay float32)."""
    return torch.autocast(device_type=t.device.type, enabled=False)


class VectorQuantizer(nn.Module):
    """Nearest-neighbour quantiser over channel-last vectors with an EMA or loss-trained codebook.

    Codebook init: uniform(-1/K, 1/K) like the seed, then (``data_init=True``, default) replaced
    on the first *training* forward by K randomly chosen encoder outputs of that batch. Tiny
    uniform codes all sit near the origin, so at first a handful of them win every vector and
    the rest never get used; codes taken from the data start where the data is. The
    ``initialised`` buffer records that this happened, so it is saved in the state_dict and
    a loaded model is never re-initialised.

    Buffers: ``unused_steps`` (K,) training updates since each code was last chosen;
    ``n_restarts`` running count of dead-code restarts; with ``codebook="ema"`` also
    ``ema_cluster_size`` (K,) and ``ema_embed_sum`` (K, D).
    """

    def __init__(
        self,
        n_embeddings: int,
        embedding_dim: int,
        beta: float = 0.25,
        codebook: str = "ema",
        decay: float = 0.99,
        eps: float = 1e-5,
        restart_dead: bool = True,
        dead_after: int = 100,
        data_init: bool = True,
    ):
        super().__init__()
        if codebook not in CODEBOOK_MODES:
            raise ValueError(f"codebook={codebook!r} is not supported; use one of {CODEBOOK_MODES}")
        if n_embeddings < 1 or embedding_dim < 1:
            raise ValueError(
                f"n_embeddings={n_embeddings} and embedding_dim={embedding_dim} must be >= 1"
            )
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"ema decay={decay} must be in [0, 1)")
        if dead_after < 1:
            raise ValueError(f"dead_after={dead_after} must be >= 1")
        self.n_embeddings = n_embeddings
        self.embedding_dim = embedding_dim
        self.beta = beta
        self.codebook = codebook
        self.decay = decay
        self.eps = eps
        self.restart_dead = restart_dead
        self.dead_after = dead_after

        init = torch.empty(n_embeddings, embedding_dim).uniform_(
            -1 / n_embeddings, 1 / n_embeddings
        )
        if codebook == "loss":
            self.embedding = nn.Parameter(init)
        else:
            # not a parameter: the optimiser must not touch it, EMA updates own it
            self.register_buffer("embedding", init)
            # consistent start: embedding == embed_sum / cluster_size
            self.register_buffer("ema_cluster_size", torch.ones(n_embeddings))
            self.register_buffer("ema_embed_sum", init.clone())
        self.register_buffer("initialised", torch.tensor(not data_init))
        self.register_buffer("unused_steps", torch.zeros(n_embeddings, dtype=torch.long))
        self.register_buffer("n_restarts", torch.zeros((), dtype=torch.long))

    def extra_repr(self) -> str:
        return (
            f"n_embeddings={self.n_embeddings}, embedding_dim={self.embedding_dim}, "
            f"beta={self.beta}, codebook={self.codebook!r}, decay={self.decay}, "
            f"restart_dead={self.restart_dead}, dead_after={self.dead_after}"
        )

    # ------------------------------------------------------------------ helpers
    def _flatten(self, z: torch.Tensor) -> torch.Tensor:
        """(B, D, h, w) -> (B*h*w, D) float32, one row per spatial position (channel-last).

        Reshaping NCHW directly would cut memory into D-long chunks mixing positions."""
        if z.ndim != 4 or z.shape[1] != self.embedding_dim:
            raise ValueError(
                f"quantiser expects (B, {self.embedding_dim}, h, w) latents, got shape {tuple(z.shape)}"
            )
        return z.float().permute(0, 2, 3, 1).reshape(-1, self.embedding_dim)

    @torch.no_grad()
    def _distances(self, flat: torch.Tensor) -> torch.Tensor:
        """(N, D) float32 -> (N, K) squared Euclidean distances to every code."""
        e = self.embedding.detach().float()
        # ||z||^2 - 2 z.e + ||e||^2 in one matmul; far cheaper than materialising z - e
        return torch.addmm((e * e).sum(1), flat, e.t(), beta=1.0, alpha=-2.0) + (flat * flat).sum(
            1, keepdim=True
        )

    @staticmethod
    def _cpu_choice(weights: torch.Tensor | None, n_total: int, k: int, device) -> torch.Tensor:
        """`k` row indices into `n_total` rows, drawn with torch's global CPU RNG.

        The CPU generator is the one a training checkpoint saves, so a resumed run makes
        the same choices. Distinct rows when possible; `weights` (N,) biases the draw."""
        if weights is not None:
            w = weights.detach().float().cpu().clamp_min(0)
            positive = int((w > 0).sum())
            if positive > 0:
                idx = torch.multinomial(w, k, replacement=positive < k)
                return idx.to(device)
        if n_total >= k:
            return torch.randperm(n_total)[:k].to(device)
        return torch.randint(n_total, (k,)).to(device)

    def _set_codes(self, idx: torch.Tensor, vectors: torch.Tensor) -> None:
        """Replace codes `idx` by `vectors` (k, D) and give them consistent EMA statistics."""
        self.embedding.data[idx] = vectors.to(self.embedding.dtype)
        if self.codebook == "ema":
            # size 1 and sum = vector, so the next EMA step does not pull it back to old stats
            self.ema_cluster_size[idx] = 1.0
            self.ema_embed_sum[idx] = vectors.to(self.ema_embed_sum.dtype)
        self.unused_steps[idx] = 0

    @torch.no_grad()
    def _data_init(self, flat: torch.Tensor) -> None:
        idx = self._cpu_choice(None, flat.shape[0], self.n_embeddings, flat.device)
        all_codes = torch.arange(self.n_embeddings, device=flat.device)
        self._set_codes(all_codes, flat[idx])
        self.initialised.fill_(True)

    @torch.no_grad()
    def _update(
        self, flat: torch.Tensor, codes: torch.Tensor, counts: torch.Tensor, err: torch.Tensor
    ):
        """One training update: EMA codebook step, then dead-code restarts."""
        if self.codebook == "ema":
            sums = torch.zeros_like(self.ema_embed_sum).index_add_(0, codes, flat)
            self.ema_cluster_size.mul_(self.decay).add_(counts.float(), alpha=1 - self.decay)
            self.ema_embed_sum.mul_(self.decay).add_(sums, alpha=1 - self.decay)
            # Laplace smoothing: no cluster size is ever 0, so no division by zero
            n = self.ema_cluster_size.sum()
            size = (self.ema_cluster_size + self.eps) / (n + self.n_embeddings * self.eps) * n
            self.embedding.copy_(self.ema_embed_sum / size.unsqueeze(1))
        if not self.restart_dead:
            return
        self.unused_steps.add_(1).masked_fill_(counts > 0, 0)
        dead = torch.nonzero(self.unused_steps >= self.dead_after).squeeze(1)
        if dead.numel() == 0:
            return
        # k-means++-style: favour vectors the codebook represents worst, so restarts go to
        # poorly covered regions rather than duplicating an already-used code (e.g. background)
        idx = self._cpu_choice(err, flat.shape[0], dead.numel(), flat.device)
        self._set_codes(dead, flat[idx])
        self.n_restarts.add_(dead.numel())

    # ------------------------------------------------------------------ API
    @torch.no_grad()
    def quantize(self, z: torch.Tensor) -> torch.Tensor:
        """Codes only, no state change: (B, D, h, w) latents -> (B, h, w) int64."""
        with _no_autocast(z):
            flat = self._flatten(z)
            codes = self._distances(flat).argmin(1)
        return codes.view(z.shape[0], z.shape[2], z.shape[3])

    def lookup(self, codes: torch.Tensor) -> torch.Tensor:
        """(B, h, w) int64 codes -> (B, D, h, w) float32 code vectors."""
        return F.embedding(codes, self.embedding).permute(0, 3, 1, 2).contiguous()

    def forward(self, z: torch.Tensor) -> VQOutput:
        """Quantise (B, D, h, w) encoder outputs (any float dtype); see `VQOutput`.

        In training mode this also counts as one codebook update (data init on the first
        call, EMA step, dead-code restarts); eval mode changes nothing."""
        with _no_autocast(z):
            flat = self._flatten(z)
            B, _, h, w = z.shape
            if self.training and not bool(self.initialised):
                self._data_init(flat.detach())
            dist = self._distances(flat.detach())
            err, codes = dist.min(1)
            e = F.embedding(codes, self.embedding).float()  # gradient only when codebook="loss"

            loss = self.beta * F.mse_loss(flat, e.detach())  # commitment: encoder side
            if self.codebook == "loss":
                loss = loss + F.mse_loss(e, flat.detach())

            counts = torch.bincount(codes, minlength=self.n_embeddings)
            probs = counts.float() / codes.numel()
            perplexity = torch.exp(torch.special.entr(probs).sum())
            n_used = (counts > 0).sum()

            if self.training:
                self._update(flat.detach(), codes, counts, err)

            # straight-through: forward value e, gradient passed unchanged to z_e
            q = flat + (e - flat).detach()
            z_q = q.view(B, h, w, -1).permute(0, 3, 1, 2).contiguous()
        return VQOutput(z_q, loss, codes.view(B, h, w), perplexity, n_used)
