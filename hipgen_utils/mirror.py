"""Mirror context for the PixelCNN prior: the second half of a slice sees its mirror image.

A pelvis is close to left-right symmetric, and in the default sampling order ("lr") code
rows run along the left-right axis: by the time the prior draws row r of the second half
(r >= ceil(H/2)), it has drawn the whole first half, so row H-1-r -- the row at the mirror
position across the midline, where the partner femoral head, acetabulum or obturator
muscle lies -- is already known. The convolutions alone reach it only through 30-60 rows
of dilated vertical stack; this map hands it to every gated layer directly.

`MirrorConditioner` turns the prior's input embeddings (B, H, W, C), channels-last, into a
feature map (B, H, W, C): the embeddings flipped along the rows, a small convolution over
the mirrored neighbourhood (`kernel` rows x columns, so a body a few pixels off centre still
finds its partner), and zeros for every row of the first half. Each gated layer maps it
(1x1) to gate biases, as it maps the positional features and a two-level prior's top map,
and the prior adds a 1x1 map of it to the summed skips its output head reads (so the mirror
row's codes reach the logits in one step, not only through the gates).

Why this is causal: a row r < first gets no mirror features at all (they are zeroed after
the convolution), and for r >= first every mirrored row the convolution reads holds either
zeros or the embeddings of a first-half row (H-1-r' < first for r' >= first), all of which
are drawn before row `first` starts. So the map for the second half is fixed once the
first half is known: the fast sampler computes it once, at row `first` (or from a prefix
that already holds the first half).
"""

from __future__ import annotations

import torch
from torch import nn


def first_mirrored_row(rows: int) -> int:
    """The first row whose mirror row (rows-1-r) comes strictly before it: ceil(rows/2)."""
    return (rows + 1) // 2


class MirrorConditioner(nn.Module):
    """(B, H, W, C) input embeddings -> (B, H, W, C) mirror features (zero in the first half)."""

    def __init__(self, channels: int, kernel: tuple[int, int] = (7, 3)):
        super().__init__()
        kr, kc = kernel
        if kr % 2 == 0 or kc % 2 == 0 or kr < 1 or kc < 1:
            raise ValueError(f"MirrorConditioner: kernel={kernel!r} must be two odd sizes >= 1")
        self.net = nn.Sequential(
            nn.Conv2d(channels, channels, kernel, padding=(kr // 2, kc // 2)),
            nn.GELU(),
            nn.Conv2d(channels, channels, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The whole (B, H, W, C) map; its first `first_mirrored_row(H)` rows are zeros."""
        first = first_mirrored_row(x.shape[1])
        half = self.second_half(x)
        return torch.cat([half.new_zeros(half.shape[0], first, *half.shape[2:]), half], dim=1)

    def second_half(self, x: torch.Tensor) -> torch.Tensor:
        """The map's rows first..H-1 only, (B, H - first, W, C): row first + i reads the rows
        around H-1-first-i. The same numbers as zeroing the other rows before and after a
        'same' convolution over the whole grid (the half's zero padding stands in for both),
        at half the cost."""
        rows = x.shape[1]
        m = x[:, : rows - first_mirrored_row(rows)].flip(1)  # row i: row rows-1-first-i
        return self.net(m.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
