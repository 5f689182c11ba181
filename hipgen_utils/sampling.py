"""Sampling code grids from a `GatedPixelCNN` prior.

`sample` is the fast sampler the CLI, the notebooks and the widgets use; `sample_naive` is the
textbook version (one forward pass over the whole grid per position), the reference for the
tests and the benchmark; notebook 06 writes the same loop out by hand. Both draw one uniform
per (sample, row, col) up front from a seeded CPU generator and turn it into a code by
inverse CDF (`_draw`: logits / T, optionally the k likeliest codes only), so for the same
arguments they return the same codes.

Why `sample` is fast: the vertical stack at row r depends only on rows < r, so it runs once
per row, each layer keeping only the input rows it can still read; within a row only the
horizontal stack runs, one column at a time, batched over the samples, on views made once.
Both samplers call the model's own modules. On the CPU the fast sampler runs single-threaded:
its work is thousands of tiny operations, and threads waiting for each other made it ~10x
slower on a busy machine. A completion keeps the first rows of a real grid (`keep_first`).
"""

from __future__ import annotations

import contextlib
import math
import numbers
from collections.abc import Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from hipgen_utils.config import CODE_GRID
from hipgen_utils.mirror import first_mirrored_row
from hipgen_utils.pixelcnn import GatedPixelCNN, horizontal_step


def sample(prior: GatedPixelCNN, n: int, *, temperature: float = 1.0, top_k: int | None = None, seed: int = 0,
           condition=None, prefix: torch.Tensor | None = None, shape: Sequence[int] = CODE_GRID,
           device: torch.device | str | None = None, progress: bool = False,
           lead_lines: int = 0) -> torch.LongTensor:  # fmt: skip
    """Draw n code grids from the prior (fast, row-cached sampler): (n, H, W) int64 on the CPU.

    temperature: > 0, the logits are divided by it (< 1 sharper, > 1 flatter).
    top_k:       None or 0 = all codes, else draw only among the k likeliest.
    lead_lines:  the first rows drawn at temperature 1 (below 1 the likeliest code at the
                 slice's edge is air, row after row, and the body would begin late or never).
    seed:        seeds a CPU torch.Generator: same seed, same samples.
    condition:   None (unconditional prior), an int for all samples, or n ints (slice positions).
    prefix:      None, or (n or 1, k, W) codes of the first k rows, kept as given (`keep_first`).
    shape:       (H, W) of the code grid; device: default the prior's; progress: a bar over rows.
    The prior is put in eval mode for the call, its mode restored after.
    """
    return _run(_fast_rows, prior, n, temperature=temperature, top_k=top_k, seed=seed, condition=condition,
                prefix=prefix, shape=shape, device=device, progress=progress, lead_lines=lead_lines)  # fmt: skip


def sample_naive(prior: GatedPixelCNN, n: int, *, temperature: float = 1.0, top_k: int | None = None, seed: int = 0,
                 condition=None, prefix: torch.Tensor | None = None, shape: Sequence[int] = CODE_GRID,
                 device: torch.device | str | None = None, progress: bool = False, rows: int | None = None,
                 lead_lines: int = 0) -> torch.LongTensor:  # fmt: skip
    """`sample` (same arguments, same codes) with one full forward pass per position.

    rows: stop after sampling this many rows (after the prefix); the rest is left as 0 (for
    timing a few rows and extrapolating). Returns (n, H, W) int64 codes on the CPU."""
    if rows is not None and (isinstance(rows, bool) or not isinstance(rows, numbers.Integral) or rows < 0):
        raise ValueError(f"rows={rows!r} must be None or an integer >= 0")
    return _run(_naive_rows, prior, n, temperature=temperature, top_k=top_k, seed=seed, condition=condition,
                prefix=prefix, shape=shape, device=device, progress=progress, rows=rows,
                lead_lines=lead_lines)  # fmt: skip


def _is_int(x) -> bool:
    return not isinstance(x, bool) and isinstance(x, numbers.Integral)


def _run(fill_rows, prior, n, *, temperature, top_k, seed, condition, prefix, shape, device, progress,
         rows=None, lead_lines=0):  # fmt: skip
    """Check the arguments, draw the uniforms, and let `fill_rows` fill the code grid."""
    if not isinstance(prior, GatedPixelCNN):
        raise TypeError(f"prior must be a GatedPixelCNN, got {type(prior).__name__}")
    if not _is_int(n) or n < 1:
        raise ValueError(f"n={n!r} must be an integer >= 1 (number of samples)")
    n, K = int(n), prior.n_codes
    if isinstance(temperature, bool) or not isinstance(temperature, numbers.Real) or not (
        math.isfinite(temperature) and temperature > 0
    ):
        raise ValueError(f"temperature={temperature!r} must be a finite number > 0")
    if not _is_int(lead_lines) or lead_lines < 0:
        raise ValueError(f"lead_lines={lead_lines!r} must be an integer >= 0 (rows drawn at temperature 1)")
    if top_k is not None and (not _is_int(top_k) or not 0 <= top_k <= K):
        raise ValueError(f"top_k={top_k!r} must be None, 0 (off) or an integer in 1..{K}")
    top_k = int(top_k) if top_k else None
    if not _is_int(seed):
        raise ValueError(f"seed={seed!r} must be an integer")
    try:
        H, W = (int(s) for s in shape)
    except (TypeError, ValueError):
        raise ValueError(f"shape={shape!r} must be (H, W), two positive integers") from None
    if H < 1 or W < 1:
        raise ValueError(f"shape={tuple(shape)!r} must be (H, W), two positive integers")

    codes = torch.zeros(n, H, W, dtype=torch.long)
    start = 0
    if prefix is not None:
        want = f"({n} or 1, k <= {H}, {W})"
        if not torch.is_tensor(prefix):
            try:  # numpy arrays / nested lists of codes
                prefix = torch.as_tensor(prefix)
            except (TypeError, ValueError, RuntimeError):
                raise ValueError(f"prefix must be an int tensor {want}, got {type(prefix).__name__}") from None
        if prefix.ndim != 3 or prefix.dtype.is_floating_point or prefix.dtype == torch.bool:
            raise ValueError(f"prefix must be an int tensor {want}, got shape {tuple(prefix.shape)} {prefix.dtype}")
        if prefix.shape[0] not in (1, n) or prefix.shape[1] > H or prefix.shape[2] != W:
            raise ValueError(f"prefix has shape {tuple(prefix.shape)}; expected {want} for n={n}, "
                             f"shape=({H}, {W}) (build it with keep_first)")  # fmt: skip
        if prefix.numel() and (int(prefix.min()) < 0 or int(prefix.max()) >= K):
            raise ValueError(f"prefix codes span {int(prefix.min())}..{int(prefix.max())}; valid codes are 0..{K - 1}")
        start = int(prefix.shape[1])
        codes[:, :start] = prefix.to("cpu", torch.long)

    # all randomness up front, in (sample, row, col) order, whatever the algorithm
    gen = torch.Generator(device="cpu").manual_seed(int(seed))
    u = torch.rand(n, H, W, generator=gen, dtype=torch.float64)
    home = next(prior.parameters()).device
    try:
        device = home if device is None else torch.device(device)
    except (TypeError, RuntimeError):
        raise ValueError(f"device={device!r} is not a torch device (e.g. 'cpu', 'cuda', 'cuda:1')") from None
    # the draw runs in float64 (ties between fast and naive even less likely), but Apple's
    # MPS has no float64
    u = u.to(device, torch.float32 if device.type == "mps" else torch.float64)
    prior.check_cond(condition, n)  # fail before touching the model
    was_training = prior.training
    prior.to(device).eval()
    try:
        cond = prior.check_cond(condition, n)  # on the model's (new) device
        codes_d = codes.to(device)
        temps = [1.0 if r < lead_lines else float(temperature) for r in range(H)]  # each row's temperature
        threads = one_cpu_thread(device) if fill_rows is _fast_rows else contextlib.nullcontext()
        with torch.no_grad(), threads:
            fill_rows(prior, codes_d, u, cond, start, temps, top_k, progress, rows)
        return codes_d.cpu()
    finally:
        prior.train(was_training)
        prior.to(home)


@contextlib.contextmanager
def one_cpu_thread(device: torch.device):
    """Run the block with torch.set_num_threads(1) on the CPU; restore the count after."""
    old = torch.get_num_threads()
    if device.type != "cpu" or old == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def _draw(logits: torch.Tensor, u: torch.Tensor, temperature: float, top_k: int | None) -> torch.Tensor:
    """Inverse-CDF draw: logits (n, K), u (n,) in [0, 1) -> (n,) int64 codes.

    Computed in u's dtype. top_k=1 is the argmax (greedy). With top-k the CDF runs over the k
    likeliest codes only, still in code order (the same draw as masking the others out of all K).
    """
    codes = None
    if top_k is not None and top_k < logits.shape[-1]:
        # the k likeliest, in the logits' own dtype (dividing by a temperature keeps the order)
        codes = logits.topk(top_k, dim=-1, sorted=False).indices.sort(dim=-1).values  # (n, k) in code order
        logits = logits.gather(1, codes)
    z = logits.to(u.dtype) / temperature
    p = torch.softmax(z, dim=-1)
    cdf = p.cumsum(dim=-1)
    idx = torch.searchsorted(cdf, (u * cdf[:, -1]).unsqueeze(1), right=True).squeeze(1)
    # u * total can round up to total: never step past the last code with nonzero probability
    last = p.shape[-1] - 1 - (p > 0).flip(-1).to(torch.uint8).argmax(dim=-1)
    idx = torch.minimum(idx, last)
    return idx if codes is None else codes.gather(1, idx.unsqueeze(1)).squeeze(1)


# ---- the two algorithms: fill `codes` (n, H, W) in place from row `start` -----------------


def _naive_rows(prior, codes, u, cond, start, temps, top_k, progress, rows):
    # the textbook reference: the whole grid's logits for every position
    n, H, W = codes.shape
    end = H if rows is None else min(H, start + rows)
    for r in tqdm(range(start, end), desc="sampling (naive)", disable=not progress):
        for c in range(W):
            tab = codes if prior.tables is not None else None
            logits = prior.forward_embedded(prior.embed(codes), cond, tab)  # (n, K, H, W)
            codes[:, r, c] = _draw(logits[:, :, r, c], u[:, r, c], temps[r], top_k)


def _fast_rows(prior, codes, u, cond, start, temps, top_k, progress, rows=None):
    # `rows` (stop early) is only offered by the naive sampler
    n, H, W = codes.shape
    C, L, a = prior.n_channels, prior.n_layers, prior.kernel_size // 2
    w = prior.embedding.weight
    mirror_from = first_mirrored_row(H) if prior.mirror else None
    none = codes.new_full((n,), prior.n_codes)  # the tables' "no left neighbour" row
    mirror = prior.mirror_map(prior.embed(codes))
    sources = prior.bias_sources(cond, (H, W), mirror)  # turned into one row's biases at a time
    skips = None if mirror is None else prior.mirror_skip(mirror)
    # vertical inputs (channels-last), one ring of e+1 rows per layer: layer i reads its input
    # rows r-e-s, r-e-s+d, .., r-s for row r (e = its v_extent = k//2 * dilation d; s = 1 for
    # layer 0, whose input is the codes themselves), and input row q lives in slot q mod (e+1).
    # Slots of rows above the grid stay zero (the padding); only the k//2+1 rows the kernel
    # reads are gathered, for an undilated convolution (`vertical(..., spaced=True)`). Which
    # slots those are repeats every e+1 rows, so reads[i] holds e+1 index tensors
    rings = [w.new_zeros(n, layer.v_extent + 1, W, C) for layer in prior.layers]
    reads = [
        [torch.tensor([(r - (i == 0) - layer.v_extent + j * layer.dilation) % (layer.v_extent + 1)
                       for j in range(a + 1)], device=w.device) for r in range(layer.v_extent + 1)]
        for i, layer in enumerate(prior.layers)
    ]  # fmt: skip
    steps = [layer.step_params() for layer in prior.layers]  # the horizontal steps' weights, fetched once
    # the horizontal stack's input row per layer, flattened to (n, cols * C) and left-padded
    # with zero columns (a+1 for layer 0, so column c sees c-a-1 .. c-1; a for the others,
    # which see c-a .. c): `h_in[i][c]` is the slice position c reads, `h_out[i][c]` where
    # column c's input goes. The padding is never written, and every other column is written
    # in a row before it is read, so the buffers are made once
    h_buf = [w.new_zeros(n, (W + a + (i == 0)) * C) for i in range(L)]
    h_in = [[b[:, c * C : (c + a + 1) * C] for c in range(W)] for b in h_buf]
    h_out = [[b[:, (c + a + (i == 0)) * C : (c + a + (i == 0) + 1) * C] for c in range(W)] for i, b in enumerate(h_buf)]
    tables = None if prior.tables is None else prior.tables.weight
    for r in tqdm(range(H), desc="sampling", disable=not progress):
        if r == mirror_from and r > start:  # the first half is drawn: its mirror map is final
            mirror = prior.mirror_map(prior.embed(codes))
            sources = prior.bias_sources(cond, (H, W), mirror)
            skips = prior.mirror_skip(mirror)
        # vertical stack for row r: only rows < r are involved
        links, v = [], None
        biases = prior.row_biases(sources, r)
        for i, layer in enumerate(prior.layers):
            if i > 0:  # the previous layer's output row r is this layer's input row r
                rings[i][:, r % (layer.v_extent + 1)] = v[:, 0]
            read = reads[i][r % (layer.v_extent + 1)]
            v, link = layer.vertical(rings[i].index_select(1, read), biases[i], spaced=True)
            links.append(link[:, 0].transpose(0, 1).contiguous().unbind(0))  # W contiguous (n, 2C), one per column
        if r >= start:
            # the horizontal stack on row r, one column at a time
            table_row = None if prior.tables is None else prior.table_row(codes, r).unbind(1)
            u_row = u[:, r].unbind(1)
            skip_row = None if skips is None else skips[:, r].unbind(1)
            drawn, left = [], none
            for c in range(W):
                acc = None
                for i in range(L):
                    acc = horizontal_step(h_in[i][c], links[i][c], acc, *steps[i])
                    if i + 1 < L:
                        h_out[i + 1][c].copy_(acc[:, :C])
                skip = acc[:, C:] if skip_row is None else acc[:, C:] + skip_row[c]
                logits = prior.head(skip)
                if table_row is not None:  # the upper/mirror neighbours' terms + the left one's
                    logits = logits + table_row[c] + tables.index_select(0, left)
                left = _draw(logits, u_row[c], temps[r], top_k)
                drawn.append(left)
                h_out[0][c].copy_(prior.embed(left))  # the code's embedding: layer 0's input
            codes[:, r] = torch.stack(drawn, dim=1)
        rings[0][:, r % (prior.layers[0].v_extent + 1)] = prior.embed(codes[:, r])  # layer 0's input row r


# ---- completion: keep the first rows of a real grid -------------------------------------------


def kept_lines(shape: Sequence[int] = CODE_GRID, fraction: float = 0.5) -> int:
    """How many code rows keeping `fraction` of an (H, W) grid means: round(fraction * H)."""
    if isinstance(fraction, bool) or not isinstance(fraction, numbers.Real) or not 0 <= fraction <= 1:
        raise ValueError(f"fraction={fraction!r} must be a number in [0, 1]")
    return int(round(float(fraction) * int(shape[0])))


def keep_first(codes, fraction: float = 0.5, *, k: int | None = None):
    """The completion prefix of codes (N, H, W) (numpy or torch, returned as the same type):
    the first k rows, k = `k` or `kept_lines((H, W), fraction)`; pass it as
    `sample(..., prefix=...)`."""
    if getattr(codes, "ndim", None) != 3:
        raise ValueError(f"codes must be (N, H, W), got shape {getattr(codes, 'shape', None)}")
    H = codes.shape[1]
    if k is None:
        k = kept_lines(codes.shape[1:], fraction)
    elif not _is_int(k) or not 0 <= k <= H:
        raise ValueError(f"k={k!r} must be an integer in 0..{H} (code rows)")
    return codes[:, :k]


def kept_mask(shape: Sequence[int], k: int) -> np.ndarray:
    """(H, W) bool array: True on the first k rows (the codes a prefix keeps), False where a
    completion samples. The pixel mask is this repeated 4x4 (`np.kron(mask, np.ones((4, 4)))`)."""
    H, W = (int(s) for s in shape)
    if not _is_int(k) or not 0 <= k <= H:
        raise ValueError(f"k={k!r} must be an integer in 0..{H} (code rows)")
    mask = np.zeros((H, W), dtype=bool)
    mask[:k] = True
    return mask
