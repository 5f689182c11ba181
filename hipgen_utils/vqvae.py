"""VQ-VAE (van den Oord et al. 2017): conv encoder -> nearest-neighbour codebook -> conv decoder.

A (B, 1, H, W) slice in [0, 1] becomes a (B, H/4, W/4) grid of integer codes (two stride-2
stages: 256x128 -> 64x32) and back. The codebook in the middle is
`quantizer.VectorQuantizer` (EMA or loss-trained codes, commitment loss, straight-through
gradient, dead-code restarts; see `hipgen_utils.quantizer`), held as the ``quantizer``
attribute, so checkpoint keys read ``quantizer.*``. Batched numpy helpers that encode a
whole split or decode code grids live in `hipgen_utils.codes`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

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
