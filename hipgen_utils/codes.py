"""Code extraction: every split encoded by a trained VQ-VAE into integer code grids.

The batched numpy helpers (`encode_images`, `decode_codes`, `reconstruct_images`, and
`codebook_usage`) run a `vqvae.VQVAE` over whole splits, memmaps included.

``run_dir/codes.npz`` holds, per split S: ``codes_S`` (N, h, w) int16, ``case_S``,
``week_S``, ``slice_S`` (N,) int, plus ``vqvae_id`` (the VQ-VAE's weight fingerprint, so
a prior trained on these codes can be checked against the VQ-VAE that decodes its
samples) and ``n_embeddings``.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from hipgen_utils.checkpoints import (
    CODES_FILE,
    PRODUCER,
    CheckpointError,
    atomic_write,
    missing,
    state_fingerprint,
)
from hipgen_utils.layout import SPLITS
from hipgen_utils.metrics import perplexity
from hipgen_utils.rundir import run_lock

CODE_SPLITS = SPLITS  # every split is encoded


def extract_codes(model, splits: dict, run_dir, *, device=None, batch_size=64, progress=True) -> Path:
    """Encode each SliceSet in `splits` ({"train": SliceSet, ...}) and write run_dir/codes.npz
    (device=None: the model's own)."""
    out = {
        "vqvae_id": np.array(state_fingerprint(model.state_dict())),
        "n_embeddings": np.array(model.quantizer.n_embeddings),
        "source_id": np.array(source_fingerprint(splits)),
    }
    for name, s in splits.items():
        out[f"codes_{name}"] = encode_images(model, s.images, batch_size=batch_size, device=device, progress=progress)
        for key in ("case", "week", "slice"):
            out[f"{key}_{name}"] = np.asarray(getattr(s, key), dtype=np.int64)
    path = Path(run_dir) / CODES_FILE
    with run_lock(run_dir):  # one writer per run directory
        _write_npz(path, out)
    return path


def source_fingerprint(splits: dict) -> str:
    """A short hash of the slices that were encoded (files and a sample of their decoded
    pixels, which depend on the normalisation): with the VQ-VAE's fingerprint it says
    whether a prior's training grids are the same ones, without trusting float
    arithmetic to reproduce the grids bit for bit."""
    h = hashlib.sha1()
    for name, s in sorted(splits.items()):
        step = max(1, len(s.images) // 16)
        h.update(json.dumps([name, list(getattr(s, "paths", [])), list(s.images.shape)]).encode())
        h.update(np.ascontiguousarray(s.images[::step]).tobytes())
    return h.hexdigest()[:16]


def _write_npz(path: Path, out: dict):
    """np.savez_compressed, atomically (np.savez wants a name ending in .npz)."""
    atomic_write(path, lambda tmp: np.savez_compressed(tmp, **out), suffix=".tmp.npz")


def load_codes(run_dir, vqvae_id: str | None = None) -> dict:
    """The arrays of run_dir/codes.npz as a dict (``vqvae_id`` as str, ``n_embeddings`` as int).

    Raises MissingStepError when absent, CheckpointError (one line naming the file and what
    rebuilds it) when unreadable or extracted with another VQ-VAE."""
    path = Path(run_dir) / CODES_FILE
    if not path.is_file():
        raise missing(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            d = {k: z[k] for k in z.files}
        d["vqvae_id"] = str(d["vqvae_id"])
        d["n_embeddings"] = int(d["n_embeddings"])
        if "source_id" in d:
            d["source_id"] = str(d["source_id"])
        if "codes_train" not in d:  # a file without grids is as useless as a broken one
            raise KeyError("codes_train")
    except Exception as e:  # BadZipFile, ValueError (not a zip or pickled), KeyError, OSError, EOFError
        raise CheckpointError(
            f"{path}: not a readable codes file ({type(e).__name__}); rebuild it with {PRODUCER[CODES_FILE]}"
        ) from None
    if vqvae_id is not None and d["vqvae_id"] != vqvae_id:
        raise CheckpointError(
            f"{path}: codes were extracted with another VQ-VAE; rerun notebooks/04_extract_codes"
        )
    return d


def rows_of(codes: dict, split: str, slice_set, path="codes.npz") -> dict:
    """`codes` with its `split` rows (``codes_S``, ``case_S``, ``week_S``, ``slice_S``) put in
    the order of `slice_set`'s slices, which may leave some out (a bad file skipped now, with
    ``skip_bad``, that was encoded then): code grid i then belongs to image i, as the judge
    and the sample scores pair them. A slice with no grid is refused in one line naming the
    count; `codes` itself is returned when the rows already match."""
    keys = [f"{k}_{split}" for k in ("case", "week", "slice")]
    now = list(zip(*(np.asarray(getattr(slice_set, k)).tolist() for k in ("case", "week", "slice"))))
    if not all(k in codes for k in keys):  # an older codes file: only the count can be checked
        if len(codes[f"codes_{split}"]) != len(now):
            raise CheckpointError(f"{path}: {len(codes[f'codes_{split}'])} {split} grids for {len(now)} "
                                  f"slices; rebuild it with {PRODUCER[CODES_FILE]}")  # fmt: skip
        return codes
    then = list(zip(*(np.asarray(codes[k]).tolist() for k in keys)))
    if then == now:
        return codes
    index = {key: i for i, key in enumerate(then)}
    new = [key for key in now if key not in index]
    if new:
        case, week, sl = new[0]
        raise CheckpointError(
            f"{path}: {len(new)} {split} slice(s) of the data have no code grid (first: case {case} week {week} "
            f"slice {sl}): the data changed since they were extracted; restore it, or extract them again "
            "(notebooks/04_extract_codes)"
        )
    rows = np.asarray([index[key] for key in now], dtype=np.int64)
    return {**codes, **{f"{k}_{split}": np.asarray(codes[f"{k}_{split}"])[rows] for k in ("codes", "case", "week", "slice")}}


def codes_are_current(run_dir, vqvae_id: str) -> bool:
    """True when run_dir/codes.npz exists and was extracted with this VQ-VAE."""
    try:
        load_codes(run_dir, vqvae_id)
    except (FileNotFoundError, CheckpointError):
        return False
    return True


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


def encode_images(model, images, batch_size=64, device=None, progress=False) -> np.ndarray:
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


def decode_codes(model, codes, batch_size=64, device=None, progress=False) -> np.ndarray:
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
    model, images, batch_size=64, device=None, progress=False
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
