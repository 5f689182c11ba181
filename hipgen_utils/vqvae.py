"""VQ-VAE (van den Oord et al. 2017): conv encoder -> nearest-neighbour codebook -> conv decoder.

A (B, 1, H, W) slice in [0, 1] becomes a (B, H/4, W/4) grid of integer codes (two stride-2
stages: 256x128 -> 64x32) and back. The codebook in the middle is
`quantizer.VectorQuantizer` (EMA or loss-trained codes, commitment loss, straight-through
gradient, dead-code restarts; see `hipgen_utils.quantizer`), held as the ``quantizer``
attribute, so checkpoint keys read ``quantizer.*``. Also here: batched numpy helpers
(``encode_images``, ``decode_codes``, ``reconstruct_images``) and ``codebook_usage``.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from hipgen_utils.metrics import perplexity
from hipgen_utils.quantizer import VectorQuantizer, VQOutput  # also importable from here


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
