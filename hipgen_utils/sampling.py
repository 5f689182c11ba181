"""Sampling code grids from a `GatedPixelCNN` prior.

`sample` is the fast sampler used by the CLI, the notebooks and the widgets;
`sample_naive` is the textbook version (a full forward pass over the whole grid for
every position), kept as a reference for tests and the speed benchmark.

Both draw their randomness the same way -- one uniform per (sample, row, col), drawn
up front from a CPU `torch.Generator` seeded with `seed`, turned into a code by
inverse-CDF sampling -- so for the same arguments they return the same codes
(up to floating-point differences in the logits, which in practice never flip a draw).

Why `sample` is fast: the vertical stack at row r only depends on rows < r, so it is
computed once per row, and each layer keeps only the rows of its input it can still read
(a ring of k//2 * dilation + 1 rows, of which it gathers the k//2+1 its kernel reads).
Within a row only the horizontal stack runs, one column at a time, on a window of k//2+1
columns per layer, batched over the n samples; every operand of that inner loop is a view
made once, so it runs only the model's arithmetic (thousands of tiny operations, where
per-call overhead is most of the cost). Both samplers call the model's own modules
(`GatedLayer.vertical`, `horizontal_step`, `head`), the same ones `forward` uses.

Sampling order: the prior samples its internal grid in raster order, which is the
image-layout grid for `order="lr"` (row by row along the left-right axis) and its transpose
for `order="ap"` (image column by column: anterior to posterior). Everything here takes and
returns image-layout grids. A completion keeps the first k *lines* in that order: the first
k image rows ("lr") or the first k image columns ("ap"). `keep_first`, `kept_lines` and
`kept_mask` build the prefix and say which codes it keeps, so a caller never needs to know
the order. With attention blocks the fast sampler also caches each block's keys and
values, so a position costs time linear in the positions before it. A prior with mirror
context (``mirror=True``, `hipgen_utils.mirror`) gets its mirror map once, when the first
half of the rows is drawn (from the prefix, if that already holds it).

A two-level prior (``top_codes > 0``, `hipgen_utils.hierarchy`) is sampled top first: its
top prior draws the coarse top grid (with the same sampler, temperature and top-k), then the
bottom grid is drawn given it. The top grid's uniforms come first from the same seeded
generator. A completion's top prefix is the top coder's encoding of the kept bottom lines:
every top line whose block lies wholly in the kept part (the coder is blockwise, so these
top codes see nothing of the part to be completed); a kept part that ends inside a block
leaves that block's top code to be drawn.

On the CPU the fast sampler runs single-threaded (the thread count is restored after):
its work is thousands of tiny sequential ops that extra threads cannot speed up, and on a
busy machine OpenMP threads waiting for each other made it ~10x slower.

Why one file of about 400 lines: the fast and the naive sampler must draw identical codes,
and reading them next to each other (same uniforms, same inverse CDF, same prefix and
top-grid handling) is how one checks that they do; the tests check it too.
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


def sample(
    prior: GatedPixelCNN,
    n: int,
    *,
    temperature: float = 1.0,
    top_k: int | None = None,
    seed: int = 0,
    condition=None,
    prefix: torch.Tensor | None = None,
    shape: Sequence[int] = CODE_GRID,
    device: torch.device | str | None = None,
    progress: bool = False,
    lead_lines: int = 0,
) -> torch.LongTensor:
    """Draw n code grids from the prior (fast, row-cached sampler).

    prior:       a `GatedPixelCNN`; put in eval mode for the call, its mode restored after.
    n:           number of samples (>= 1).
    temperature: finite > 0; logits are divided by it (< 1 sharper, > 1 flatter).
    lead_lines:  the first this many lines in sampling order (rows for order "lr") are drawn
                 at temperature 1, the model's own probabilities, and the rest at
                 `temperature` (0 = all at `temperature`). A lower temperature sharpens every
                 choice towards the likeliest code, and at the slice's edge that is air, line
                 after line: the body begins late or never. Lines of a prefix are kept as given.
    top_k:       None or 0 = off, else 1..K: sample only among the k most likely codes.
    seed:        seeds a CPU torch.Generator; same seed -> same samples.
    condition:   None (unconditional prior), an int for all samples, or n ints (slice positions).
    prefix:      None, or an int tensor/array of codes for the first k lines in the prior's
                 sampling order, in image layout: (n or 1, k, W) = the first k rows for order
                 "lr", (n or 1, H, k) = the first k columns for order "ap". They are kept as given
                 (completion of a real image) and only the rest is sampled. Build it with
                 `keep_first`; `kept_mask` says which codes it keeps.
    shape:       (H, W) of the code grid, e.g. (64, 32) for 256x128 images.
    device:      where to compute; default the prior's device (the prior is moved there for the
                 call and moved back after).
    progress:    show a tqdm bar over rows.
    Returns (n, H, W) int64 codes in [0, K) on the CPU.
    On the CPU this runs with one torch thread (restored after); see the module docstring.
    """
    return _run(
        _fast_rows, prior, n, temperature=temperature, top_k=top_k, seed=seed, condition=condition,
        prefix=prefix, shape=shape, device=device, progress=progress, lead_lines=lead_lines,
    )  # fmt: skip


def sample_naive(
    prior: GatedPixelCNN,
    n: int,
    *,
    temperature: float = 1.0,
    top_k: int | None = None,
    seed: int = 0,
    condition=None,
    prefix: torch.Tensor | None = None,
    shape: Sequence[int] = CODE_GRID,
    device: torch.device | str | None = None,
    progress: bool = False,
    rows: int | None = None,
    lead_lines: int = 0,
) -> torch.LongTensor:
    """Same as `sample` (same arguments, same codes) but one full forward pass per position.

    rows: stop after sampling this many lines in sampling order (rows for order "lr", columns
          for "ap"; counted after the prefix); the rest is left as 0. Useful for timing a few
          lines and extrapolating.
    Returns (n, H, W) int64 codes on the CPU.
    """
    if rows is not None and (
        isinstance(rows, bool) or not isinstance(rows, numbers.Integral) or rows < 0
    ):
        raise ValueError(f"rows={rows!r} must be None or an integer >= 0")
    return _run(
        _naive_rows, prior, n, temperature=temperature, top_k=top_k, seed=seed, condition=condition,
        prefix=prefix, shape=shape, device=device, progress=progress, rows=rows, lead_lines=lead_lines,
    )  # fmt: skip


# ---- shared front end ----------------------------------------------------------------------


def _run(
    fill_rows,
    prior,
    n,
    *,
    temperature,
    top_k,
    seed,
    condition,
    prefix,
    shape,
    device,
    progress,
    rows=None,
    lead_lines=0,
):
    """Validate the arguments, draw the uniforms, and let `fill_rows` fill the code grid."""
    if not isinstance(prior, GatedPixelCNN):
        raise TypeError(f"prior must be a GatedPixelCNN, got {type(prior).__name__}")
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1:
        raise ValueError(f"n={n!r} must be an integer >= 1 (number of samples)")
    n = int(n)
    if (
        isinstance(temperature, bool)
        or not isinstance(temperature, numbers.Real)
        or not (math.isfinite(temperature) and temperature > 0)
    ):
        raise ValueError(f"temperature={temperature!r} must be a finite number > 0")
    if isinstance(lead_lines, bool) or not isinstance(lead_lines, numbers.Integral) or lead_lines < 0:
        raise ValueError(f"lead_lines={lead_lines!r} must be an integer >= 0 (lines drawn at temperature 1)")
    K = prior.n_codes
    if top_k is not None and (
        isinstance(top_k, bool) or not isinstance(top_k, numbers.Integral) or not 0 <= top_k <= K
    ):
        raise ValueError(f"top_k={top_k!r} must be None, 0 (off) or an integer in 1..{K}")
    top_k = int(top_k) if top_k else None
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise ValueError(f"seed={seed!r} must be an integer")
    try:
        H, W = (int(s) for s in shape)
    except (TypeError, ValueError):
        raise ValueError(f"shape={shape!r} must be (H, W), two positive integers") from None
    if H < 1 or W < 1:
        raise ValueError(f"shape={tuple(shape)!r} must be (H, W), two positive integers")

    codes = torch.zeros(n, H, W, dtype=torch.long)
    start = 0
    ap = prior.order == "ap"
    want = f"({n} or 1, {H}, k <= {W})" if ap else f"({n} or 1, k <= {H}, {W})"
    if prefix is not None:
        if not torch.is_tensor(prefix):
            try:  # numpy arrays / nested lists of codes
                prefix = torch.as_tensor(prefix)
            except (TypeError, ValueError, RuntimeError):
                raise ValueError(
                    f"prefix must be an int tensor {want}, got {type(prefix).__name__}"
                ) from None
        if prefix.ndim != 3 or prefix.dtype.is_floating_point or prefix.dtype == torch.bool:
            raise ValueError(
                f"prefix must be an int tensor {want}, got shape {tuple(prefix.shape)} {prefix.dtype}"
            )
        lines, across = (prefix.shape[2], prefix.shape[1]) if ap else prefix.shape[1:]
        if prefix.shape[0] not in (1, n) or lines > (W if ap else H) or across != (H if ap else W):
            raise ValueError(
                f"prefix has shape {tuple(prefix.shape)}; expected {want} for n={n}, shape=({H}, {W}), "
                f"order {prior.order!r} (build it with keep_first)"
            )
        if prefix.numel() and (int(prefix.min()) < 0 or int(prefix.max()) >= K):
            raise ValueError(
                f"prefix codes span {int(prefix.min())}..{int(prefix.max())}; valid codes are 0..{K - 1}"
            )
        start = int(lines)
        prior.to_internal(codes)[:, :start] = prior.to_internal(prefix.to("cpu", torch.long))

    # all randomness up front, in (sample, row, col) order, independent of the algorithm;
    # a two-level prior's top grid first
    gen = torch.Generator(device="cpu").manual_seed(int(seed))
    top = prior.top_prior
    if top is not None:
        Ht, Wt = prior.top_coder.top_shape((H, W))  # one-line error when the factor does not divide
        u_top = torch.rand(n, Ht, Wt, generator=gen, dtype=torch.float64)
    u = torch.rand(n, H, W, generator=gen, dtype=torch.float64)

    home = next(prior.parameters()).device
    try:
        device = home if device is None else torch.device(device)
    except (TypeError, RuntimeError):
        raise ValueError(
            f"device={device!r} is not a torch device (e.g. 'cpu', 'cuda', 'cuda:1')"
        ) from None
    # the draw is done in float64 (exact ties between fast and naive are then even less
    # likely), except on Apple's MPS, which has no float64
    u = u.to(device, torch.float32 if device.type == "mps" else torch.float64)
    if top is not None:
        u_top = u_top.to(device, u.dtype)
    prior.check_cond(condition, n)  # fail before touching the model
    was_training = prior.training
    prior.to(device).eval()
    try:
        cond = prior.check_cond(condition, n)  # on the model's (new) device
        codes_d = codes.to(device)
        threads = one_cpu_thread(device) if fill_rows is _fast_rows else contextlib.nullcontext()
        with torch.no_grad(), threads:
            top_codes = None
            if top is not None:
                top_codes = _top_grid(prior, codes_d, start, (Ht, Wt))
                f = prior.top_factor  # a top line is a lead line when its block starts in the lead
                fill_rows(top, top_codes, u_top, cond, start // f, _line_temperatures(top, (Ht, Wt), temperature,
                          -(-int(lead_lines) // f)), top_k, False, None)  # fmt: skip
            temps = _line_temperatures(prior, (H, W), temperature, int(lead_lines))
            fill_rows(prior, codes_d, u, cond, start, temps, top_k, progress, rows, top=top_codes)
        return codes_d.cpu()
    finally:
        prior.train(was_training)
        prior.to(home)


def _line_temperatures(prior, shape, temperature: float, lead: int) -> list[float]:
    """The temperature of each line in sampling order: 1.0 for the first `lead`, else `temperature`."""
    return [1.0 if r < lead else float(temperature) for r in range(_lines(prior, shape))]


def _top_grid(prior, codes, start, top_shape):
    """A two-level prior's (n, Ht, Wt) top grid before sampling: the top codes of the whole
    blocks among the first `start` kept lines (in sampling order), zeros elsewhere."""
    n, f = codes.shape[0], prior.top_factor
    grid = codes.new_zeros(n, *top_shape)
    lines = start // f
    if lines:
        kept = prior.to_internal(prior.to_internal(codes)[:, : lines * f])  # image layout
        prior.to_internal(grid)[:, :lines] = prior.to_internal(prior.top_coder.encode(kept))
    return grid


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


def _draw(
    logits: torch.Tensor, u: torch.Tensor, temperature: float, top_k: int | None
) -> torch.Tensor:
    """Inverse-CDF draw: logits (n, K), u (n,) float in [0, 1) -> (n,) int64 codes.

    Computed in u's dtype. top_k=1 gives the argmax (greedy). With top_k the CDF runs over
    the k likeliest codes only, still in code order (the same draw as masking the others
    out of all K, on k entries instead of K).
    """
    codes = None
    if top_k is not None and top_k < logits.shape[-1]:
        # the k likeliest in the logits' own dtype (dividing by a temperature keeps the order)
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


# ---- the two algorithms (fill `codes` in place from line `start` in sampling order) ----------


def _naive_rows(prior, codes, u, cond, start, temps, top_k, progress, rows, top=None):
    # the textbook reference: the public full-grid pass in image layout for every position,
    # visited in the prior's sampling order (`to_internal` views write through to `codes`)
    ci, ui = prior.to_internal(codes), prior.to_internal(u)
    n, R, W = ci.shape
    end = R if rows is None else min(R, start + rows)
    for r in tqdm(range(start, end), desc="sampling (naive)", disable=not progress):
        for c in range(W):
            tab = codes if prior.tables is not None else None
            logits = prior.forward_embedded(prior.embed(codes), cond, top, tab)  # (n, K, H, W)
            logits = prior.to_internal(logits.permute(0, 2, 3, 1))[:, r, c]
            ci[:, r, c] = _draw(logits, ui[:, r, c], temps[r], top_k)


def _fast_rows(prior, codes, u, cond, start, temps, top_k, progress, rows=None, top=None):
    # `rows` (stop early) is only offered by the naive sampler. Works on the internal grid
    # (rows in sampling order) and writes it back into the image-layout `codes` at the end;
    # temps[r]: the temperature of internal row r (`_line_temperatures`).
    ci, u = prior.to_internal(codes).contiguous(), prior.to_internal(u)
    n, H, W = ci.shape
    C, L, a = prior.n_channels, prior.n_layers, prior.kernel_size // 2
    w = prior.embedding.weight
    mirror_from = first_mirrored_row(H) if prior.mirror else None
    none = ci.new_full((n,), prior.n_codes)  # the tables' "no left neighbour" row
    mirror = prior.mirror_map(prior.embed(ci))
    # the gate biases' sources, turned into one row's biases at a time (`row_biases`)
    sources = prior.bias_sources(cond, (H, W), top, mirror)
    skips = None if mirror is None else prior.mirror_skip(mirror)
    attn_after, caches, params, slots = prior.attn_after, [], [], None
    if prior.attn_layers:
        feats = prior.attn_features((H, W)).reshape(H * W, -1)
        params = [block.step_params(feats) for block in prior.attn]
        slot, count = prior.attn[0].slots(H, W)
        slots = list(zip(slot.tolist(), count.tolist()))  # (cache slot, entries attended) per p
        caches = [block.new_cache(n, H, W, w) for block in prior.attn]
        if start:  # the prefix's keys and values: one teacher-forced pass (causal, so exact)
            kv, P0, share = [], start * W, 1.0 / prior.attn_pool**2
            prior.logits_last(prior.embed(ci), cond, kv=kv, top=top, codes=ci if prior.tables is not None else None)
            idx = slot[:P0].to(w.device)
            for (keys, values), (k, v) in zip(caches, kv):
                if prior.attn_pool == 1:
                    keys[..., :P0] = k[:, :, :P0].transpose(2, 3)
                    values[:, :, :P0] = v[:, :, :P0]
                else:  # each position adds its share to its block's mean, as `step` does
                    keys.index_add_(3, idx, k[:, :, :P0].transpose(2, 3) * share)
                    values.index_add_(2, idx, v[:, :, :P0] * share)
    # vertical inputs (channels-last), one ring of e+1 rows per layer: layer i reads its input
    # rows r-e-s, r-e-s+d, .., r-s for row r (e = its v_extent = k//2 * dilation d, s = 1 for
    # layer 0, whose input is the codes themselves), and input row q lives in slot q mod (e+1).
    # Slots of rows above the grid stay zero (the padding), and only the k//2+1 rows the
    # kernel reads are gathered, for an undilated convolution (`vertical(..., spaced=True)`);
    # which slots those are repeats every e+1 rows, so reads[i] holds e+1 index tensors
    rings = [w.new_zeros(n, layer.v_extent + 1, W, C) for layer in prior.layers]
    reads = [
        [torch.tensor([(r - (i == 0) - layer.v_extent + j * layer.dilation) % (layer.v_extent + 1)
                       for j in range(a + 1)], device=w.device) for r in range(layer.v_extent + 1)]
        for i, layer in enumerate(prior.layers)
    ]  # fmt: skip
    steps = [layer.step_params() for layer in prior.layers]  # weights of the horizontal steps, fetched once
    # the horizontal stack's input rows: layer i's flattened to (n, cols * C) and left-padded
    # with zero columns (a+1 for layer 0, so column c sees c-a-1 .. c-1; a for the others,
    # which see c-a .. c): the a+1 columns position c reads are one slice, `h_in[i][c]`, in
    # `horizontal_flat`'s layout, and `h_out[i][c]` is where column c's input goes. The
    # padding is never written, and every other column is written in a row before it is read,
    # so the buffers are made once
    h_buf = [w.new_zeros(n, (W + a + (i == 0)) * C) for i in range(L)]
    h_in = [[b[:, c * C : (c + a + 1) * C] for c in range(W)] for b in h_buf]
    h_out = [[b[:, (c + a + (i == 0)) * C : (c + a + (i == 0) + 1) * C] for c in range(W)] for i, b in enumerate(h_buf)]
    tables = None if prior.tables is None else prior.tables.weight
    for r in tqdm(range(H), desc="sampling", disable=not progress):
        if r == mirror_from and r > start:  # the first half is drawn: its mirror map is final
            mirror = prior.mirror_map(prior.embed(ci))
            sources = prior.bias_sources(cond, (H, W), top, mirror)
            skips = prior.mirror_skip(mirror)
        # vertical stack for row r: only rows < r are involved
        links, v = [], None
        biases = prior.row_biases(sources, r)  # this row's, (n or 1, 1, W or 1, 4C) per layer
        for i, layer in enumerate(prior.layers):
            if i > 0:  # the previous layer's output row r is this layer's input row r
                rings[i][:, r % (layer.v_extent + 1)] = v[:, 0]
            read = reads[i][r % (layer.v_extent + 1)]
            v, link = layer.vertical(rings[i].index_select(1, read), biases[i], spaced=True)
            links.append(link[:, 0].transpose(0, 1).contiguous().unbind(0))  # W contiguous (n, 2C), one per column
        if r >= start:
            # horizontal stack on row r only, one column at a time; every per-position operand
            # is a view made once (`h_in`, `h_out`, the row's links, uniforms, skips and table
            # terms), so the inner loop runs only the model's arithmetic
            table_row = None if prior.tables is None else prior.table_row(ci, r).unbind(1)
            u_row = u[:, r].unbind(1)
            skip_row = None if skips is None else skips[:, r].unbind(1)
            drawn, left = [], none
            for c in range(W):
                acc, p = None, r * W + c
                for i in range(L):
                    acc = horizontal_step(h_in[i][c], links[i][c], acc, *steps[i])
                    j = attn_after.get(i)
                    if j is not None:
                        acc = prior.attn[j].step(acc, params[j], p, *caches[j], *slots[p])
                    if i + 1 < L:
                        h_out[i + 1][c].copy_(acc[:, :C])
                skip = acc[:, C:] if skip_row is None else acc[:, C:] + skip_row[c]
                logits = prior.head(skip)
                if table_row is not None:  # the upper/mirror neighbours' terms + the left one's
                    logits = logits + table_row[c] + tables.index_select(0, left)
                left = _draw(logits, u_row[c], temps[r], top_k)
                drawn.append(left)
                h_out[0][c].copy_(prior.embed(left))  # the code's embedding: layer 0's input
            ci[:, r] = torch.stack(drawn, dim=1)
        rings[0][:, r % (prior.layers[0].v_extent + 1)] = prior.embed(ci[:, r])  # layer 0's input row r
    if ci is not codes:
        prior.to_internal(codes).copy_(ci)


# ---- completion: which codes a prefix keeps, whatever the sampling order ----------------------


def _lines(prior: GatedPixelCNN, shape) -> int:
    """Lines in sampling order of an image-layout (H, W) grid: H for order "lr", W for "ap"
    (read from the prior's ``order`` alone, so a stand-in prior needs nothing else)."""
    H, W = (int(s) for s in shape)
    return W if getattr(prior, "order", "lr") == "ap" else H


def kept_lines(prior: GatedPixelCNN, shape: Sequence[int] = CODE_GRID, fraction: float = 0.5) -> int:
    """How many lines (in the prior's sampling order) keeping `fraction` of an image-layout
    (H, W) code grid means: round(fraction * lines), lines = H ("lr") or W ("ap")."""
    if isinstance(fraction, bool) or not isinstance(fraction, numbers.Real) or not 0 <= fraction <= 1:
        raise ValueError(f"fraction={fraction!r} must be a number in [0, 1]")
    return int(round(float(fraction) * _lines(prior, shape)))


def keep_first(prior: GatedPixelCNN, codes, fraction: float = 0.5, *, k: int | None = None):
    """The completion prefix of image-layout codes (N, H, W) (numpy or torch, returned as the
    same type): the first k lines in the prior's sampling order, k = `k` or
    `kept_lines(prior, (H, W), fraction)`. (N, k, W) for order "lr", (N, H, k) for "ap"; pass
    it as `sample(..., prefix=...)`; `kept_mask(prior, (H, W), k)` marks the kept codes."""
    if getattr(codes, "ndim", None) != 3:
        raise ValueError(f"codes must be (N, H, W), got shape {getattr(codes, 'shape', None)}")
    shape = tuple(codes.shape[1:])
    if k is None:
        k = kept_lines(prior, shape, fraction)
    elif isinstance(k, bool) or not isinstance(k, numbers.Integral) or not 0 <= k <= _lines(prior, shape):
        raise ValueError(f"k={k!r} must be an integer in 0..{_lines(prior, shape)} (lines in sampling order)")
    return codes[:, :, :k] if getattr(prior, "order", "lr") == "ap" else codes[:, :k]


def kept_mask(prior: GatedPixelCNN, shape: Sequence[int], k: int):
    """(H, W) bool numpy array in image layout: True at the codes a prefix of k lines (in the
    prior's sampling order) keeps, False where a completion samples. The image-pixel mask
    is this repeated 4x4 (`np.kron(mask, np.ones((4, 4), bool))`)."""
    H, W = (int(s) for s in shape)
    if isinstance(k, bool) or not isinstance(k, numbers.Integral) or not 0 <= k <= _lines(prior, (H, W)):
        raise ValueError(f"k={k!r} must be an integer in 0..{_lines(prior, (H, W))} (lines in sampling order)")
    mask = np.zeros((H, W), dtype=bool)
    if prior.order == "ap":
        mask[:, :k] = True
    else:
        mask[:k] = True
    return mask
