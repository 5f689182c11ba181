"""Checkpoints and run-directory artefacts: atomic writes, safe loads, one-line errors.

A run directory holds, in pipeline order:
``vqvae.pt`` (notebook 02) -> ``codes.npz`` (notebook 04) -> ``pixelcnn.pt`` (notebook 05).
Every checkpoint is a plain dict (tensors, numbers, strings, lists) so it loads with
``torch.load(..., weights_only=True)``, and carries the config it was trained with.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

import torch

VQVAE_FILE = "vqvae.pt"
CODES_FILE = "codes.npz"
PRIOR_FILE = "pixelcnn.pt"

# which notebook / command produces each artefact, for "run X first" messages
PRODUCER = {
    VQVAE_FILE: "notebooks/02_train_vqvae (or `hipgen train --mode vq_vae`)",
    CODES_FILE: "notebooks/04_extract_codes (or `hipgen train --mode pixelcnn`, which extracts them)",
    PRIOR_FILE: "notebooks/05_train_pixelcnn (or `hipgen train --mode pixelcnn`)",
}


RETRAIN_HINT = "retrain with --overwrite, or RETRAIN = True in its notebook (the file is moved aside, not deleted)"


class MissingStepError(FileNotFoundError):
    """An artefact an earlier pipeline step writes is missing (message says which step to run)."""


class CheckpointError(RuntimeError):
    """A checkpoint exists but cannot be used (corrupt, wrong kind, config mismatch)."""


def missing(path: Path) -> MissingStepError:
    path = Path(path)
    step = PRODUCER.get(path.name, "the step that writes it")
    return MissingStepError(f"{path} not found: run {step} first")


def atomic_write(path, write, suffix: str = ".tmp") -> Path:
    """`write(tmp)` into a temp file beside `path`, then rename it to `path`: a crash never
    leaves half a file, and a reader sees the old file or the new one. The temp name ends in
    `suffix` (".tmp", or ".tmp.npz" for numpy's savez, which wants that ending), which is what
    `rundir.remove_temp_files` looks for after a kill. The one place the package does this."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=suffix, dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def atomic_save(obj, path) -> Path:
    """torch.save, atomically (`atomic_write`)."""
    return atomic_write(path, lambda tmp: torch.save(obj, tmp))


def write_json(path, obj, indent: int | None = None) -> Path:
    """json.dumps(obj) into `path`, atomically (`atomic_write`)."""
    text = json.dumps(obj, indent=indent)
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text))


def load_checkpoint(path, kind: str | None = None) -> dict:
    """Load a checkpoint dict with ``weights_only=True``.

    Raises MissingStepError (names the notebook to run) or CheckpointError (one line)."""
    path = Path(path)
    if not path.is_file():
        raise missing(path)
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for a truncated/corrupt/foreign file
        raise CheckpointError(f"{path}: not a readable hipgen checkpoint ({type(e).__name__}); {RETRAIN_HINT}") from None
    if not isinstance(ckpt, dict) or "model" not in ckpt or "config" not in ckpt:
        raise CheckpointError(f"{path}: not a hipgen checkpoint (no model/config); {RETRAIN_HINT}")
    if kind is not None and ckpt.get("kind") != kind:
        raise CheckpointError(f"{path}: holds a {ckpt.get('kind')!r} model, expected {kind!r}")
    return ckpt


def state_fingerprint(state_dict: dict) -> str:
    """A short hash of a model's weights: ties extracted codes and a prior to one VQ-VAE."""
    h = hashlib.sha1()
    for key in sorted(state_dict):
        t = state_dict[key]
        h.update(key.encode())
        if torch.is_tensor(t):
            h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]

