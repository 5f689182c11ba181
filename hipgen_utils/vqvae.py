"""VQ-VAE (van den Oord et al. 2017): conv encoder -> nearest-neighbour codebook -> conv decoder.

A (B, 1, H, W) slice in [0, 1] becomes a (B, H/4, W/4) grid of integer codes (two stride-2
stages: 256x128 -> 64x32) and back. The quantiser keeps its maths in float32 even under
autocast, so bf16 training on CUDA is safe. Two codebook updates are available:

* ``"ema"`` (default): the codebook is not a parameter; each training forward moves every
  code towards the mean of the encoder outputs assigned to it (exponential moving averages
  of cluster sizes and sums, Laplace-smoothed sizes), which is more stable than gradients.
* ``"loss"``: the codebook is a parameter trained by the codebook loss ``||sg(z_e) - e||^2``.

Either way the encoder gets the commitment loss ``beta * ||z_e - sg(e)||^2`` (beta sits on
the encoder side, as in the paper) and the reconstruction gradient through the
straight-through estimator. Codes unused for ``dead_after`` training updates are re-seeded
from encoder outputs of the current batch.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from hipgen_utils.metrics import perplexity

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


class ResidualStack(nn.Module):
    """`n_layers` of x + Conv1x1(ReLU(Conv3x3(ReLU(x)))) (h -> res_h -> h), then ReLU."""

    def __init__(self, n_hiddens: int, n_residual_hiddens: int, n_layers: int):
        super().__init__()
        self.layers = nn.ModuleList(
            nn.Sequential(
                nn.ReLU(),
                nn.Conv2d(n_hiddens, n_residual_hiddens, 3, padding=1, bias=False),
                nn.ReLU(),
                nn.Conv2d(n_residual_hiddens, n_hiddens, 1, bias=False),
            )
            for _ in range(n_layers)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = x + layer(x)
        return F.relu(x)


class VQVAE(nn.Module):
    """Encoder (two stride-2 convs + residual stack) -> 1x1 conv -> quantiser -> decoder.

    Images are (B, 1, H, W) float32 in [0, 1] with H and W divisible by 4; codes are
    (B, H/4, W/4) int64 in [0, n_embeddings)."""

    def __init__(
        self,
        n_hiddens: int = 128,
        n_residual_hiddens: int = 32,
        n_residual_layers: int = 2,
        embedding_dim: int = 64,
        n_embeddings: int = 512,
        beta: float = 0.25,
        codebook: str = "ema",
        ema_decay: float = 0.99,
        restart_dead: bool = True,
        dead_after: int = 100,
        data_init: bool = True,
    ):
        super().__init__()
        if n_hiddens < 2 or n_hiddens % 2:
            raise ValueError(f"n_hiddens={n_hiddens} must be an even number >= 2")
        h = n_hiddens
        self.encoder = nn.Sequential(
            nn.Conv2d(1, h // 2, 4, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(h // 2, h, 4, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(h, h, 3, padding=1),
            ResidualStack(h, n_residual_hiddens, n_residual_layers),
        )
        self.pre_quantization = nn.Conv2d(h, embedding_dim, 1)
        self.quantizer = VectorQuantizer(
            n_embeddings,
            embedding_dim,
            beta=beta,
            codebook=codebook,
            decay=ema_decay,
            restart_dead=restart_dead,
            dead_after=dead_after,
            data_init=data_init,
        )
        self.decoder = nn.Sequential(
            nn.Conv2d(embedding_dim, h, 3, padding=1),
            ResidualStack(h, n_residual_hiddens, n_residual_layers),
            nn.ConvTranspose2d(h, h // 2, 4, stride=2, padding=1),
            nn.ReLU(),
            nn.ConvTranspose2d(h // 2, 1, 4, stride=2, padding=1),  # linear output
        )

    @classmethod
    def from_config(cls, cfg) -> VQVAE:
        """Build from a `hipgen_utils.config.VQVAEConfig` (model fields only)."""
        return cls(
            n_hiddens=cfg.n_hiddens,
            n_residual_hiddens=cfg.n_residual_hiddens,
            n_residual_layers=cfg.n_residual_layers,
            embedding_dim=cfg.embedding_dim,
            n_embeddings=cfg.n_embeddings,
            beta=cfg.beta,
            codebook=cfg.codebook,
            ema_decay=cfg.ema_decay,
            restart_dead=cfg.restart_dead,
            dead_after=cfg.dead_after,
        )

    @staticmethod
    def _check_images(x: torch.Tensor) -> None:
        if x.ndim != 4 or x.shape[1] != 1 or x.shape[2] % 4 or x.shape[3] % 4 or 0 in x.shape:
            raise ValueError(
                f"VQ-VAE input must be (B, 1, H, W) with H and W divisible by 4, got shape "
                f"{tuple(x.shape)}; resize or crop the slices (DataConfig.height/width)"
            )

    def _check_codes(self, codes: torch.Tensor) -> None:
        K = self.quantizer.n_embeddings
        if codes.ndim != 3 or codes.dtype.is_floating_point or codes.dtype == torch.bool:
            raise ValueError(
                f"codes must be an integer (B, h, w) tensor, got {codes.dtype} shape {tuple(codes.shape)}"
            )
        if codes.numel() and (int(codes.min()) < 0 or int(codes.max()) >= K):
            raise ValueError(
                f"codes range [{int(codes.min())}, {int(codes.max())}] is outside [0, {K - 1}]; "
                "were they made by a VQ-VAE with a different n_embeddings?"
            )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, VQOutput]:
        """(B, 1, H, W) float32 in [0, 1] -> (x_hat (B, 1, H, W) unclamped, `VQOutput`)."""
        self._check_images(x)
        vq = self.quantizer(self.pre_quantization(self.encoder(x)))
        return self.decoder(vq.z_q), vq

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1, H, W) float32 in [0, 1] -> codes (B, H/4, W/4) int64. Changes no state."""
        self._check_images(x)
        return self.quantizer.quantize(self.pre_quantization(self.encoder(x)))

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes (B, h, w) int -> x_hat (B, 1, 4h, 4w) float32 clamped to [0, 1]."""
        self._check_codes(codes)
        x_hat = self.decoder(self.quantizer.lookup(codes.long()))
        return x_hat.float().clamp(0.0, 1.0)

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1, H, W) -> (B, 1, H, W) float32 in [0, 1]; equals decode(encode(x)) exactly."""
        return self.decode(self.encode(x))


# ---------------------------------------------------------------------- batched numpy helpers


def _model_device(model: nn.Module, device) -> torch.device:
    """`device` (the model is moved there, in place), else the model's current device."""
    if device is None:
        return next(model.parameters()).device
    device = torch.device(device)
    model.to(device)
    return device


def _check_stack(images, what: str) -> None:
    shape = getattr(images, "shape", None)
    if shape is None or len(shape) != 3:
        raise ValueError(f"{what} must be an (N, H, W) array, got shape {shape}")


@torch.no_grad()
def _batched(model, arrays, fn, out, batch_size, device, progress, desc, in_dtype):
    """Run `fn` over `arrays` in batches in eval mode, filling `out`; restores train mode."""
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size} must be >= 1")
    dev = _model_device(model, device)
    was_training = model.training
    model.eval()
    try:
        for s in tqdm(range(0, len(arrays), batch_size), desc=desc, disable=not progress):
            # np.array copies: a slice of a read-only memmap must not reach torch.from_numpy
            chunk = np.array(arrays[s : s + batch_size], dtype=in_dtype)
            result = fn(torch.from_numpy(chunk).to(dev))
            out[s : s + len(chunk)] = result.cpu().numpy()
    finally:
        model.train(was_training)
    return out


def encode_images(model: VQVAE, images, batch_size=64, device=None, progress=False) -> np.ndarray:
    """Images (N, H, W) float32 in [0, 1] (numpy or memmap) -> codes (N, H/4, W/4) int16.

    `device=None` uses the model's device; a given device moves the model there."""
    _check_stack(images, "images")
    K = model.quantizer.n_embeddings
    if K > np.iinfo(np.int16).max + 1:
        raise ValueError(f"n_embeddings={K} does not fit int16 codes; use at most 32768")
    N, H, W = images.shape
    if H % 4 or W % 4:
        raise ValueError(f"image size {H}x{W} must be divisible by 4 for the VQ-VAE")
    out = np.empty((N, H // 4, W // 4), dtype=np.int16)
    return _batched(
        model,
        images,
        lambda x: model.encode(x.unsqueeze(1)),
        out,
        batch_size,
        device,
        progress,
        "encode",
        np.float32,
    )


def decode_codes(model: VQVAE, codes, batch_size=64, device=None, progress=False) -> np.ndarray:
    """Codes (N, h, w) int in [0, n_embeddings) -> images (N, 4h, 4w) float32 in [0, 1]."""
    _check_stack(codes, "codes")
    if not np.issubdtype(np.asarray(codes[:0]).dtype, np.integer):
        raise ValueError(f"codes must be integers, got dtype {np.asarray(codes[:0]).dtype}")
    N, h, w = codes.shape
    out = np.empty((N, 4 * h, 4 * w), dtype=np.float32)
    return _batched(
        model,
        codes,
        lambda c: model.decode(c)[:, 0],
        out,
        batch_size,
        device,
        progress,
        "decode",
        np.int64,
    )


def reconstruct_images(
    model: VQVAE, images, batch_size=64, device=None, progress=False
) -> np.ndarray:
    """Images (N, H, W) float32 in [0, 1] -> reconstructions (N, H, W) float32 in [0, 1]."""
    _check_stack(images, "images")
    out = np.empty(images.shape, dtype=np.float32)
    return _batched(
        model,
        images,
        lambda x: model.reconstruct(x.unsqueeze(1))[:, 0],
        out,
        batch_size,
        device,
        progress,
        "reconstruct",
        np.float32,
    )


def codebook_usage(codes, n_embeddings: int) -> dict:
    """Code histogram over a whole set of (any-shape) integer codes in [0, n_embeddings).

    Returns {"counts": (K,) int64, "codes_used": int, "perplexity": float}, where
    perplexity = 2 ** (entropy of the histogram in bits): K for uniform use, 1 for one code."""
    codes = np.asarray(codes).ravel()
    if codes.size == 0:
        raise ValueError("codebook_usage got no codes")
    if not np.issubdtype(codes.dtype, np.integer):
        raise ValueError(f"codes must be integers, got dtype {codes.dtype}")
    lo, hi = int(codes.min()), int(codes.max())
    if lo < 0 or hi >= n_embeddings:
        raise ValueError(f"codes range [{lo}, {hi}] is outside [0, {n_embeddings - 1}]")
    counts = np.bincount(codes.astype(np.int64), minlength=n_embeddings)
    return {
        "counts": counts,
        "codes_used": int((counts > 0).sum()),
        "perplexity": perplexity(counts),
    }
