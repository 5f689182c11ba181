"""What a training run starts from: a fresh start, a resume, or a replacement.

A run directory holds at most one VQ-VAE and one prior, and both are expensive, so:
- an existing checkpoint is never replaced in silence: without ``--resume`` or
  ``--overwrite`` (``RETRAIN`` in the notebooks) training refuses in one line;
- ``--resume`` continues only with the settings that give the same result (`restore`
  names every field that differs; the run length may grow), on the same data (`data_diff`)
  and the same code grids (`grids_id`);
- ``--overwrite`` moves the checkpoint and everything computed from it aside together
  (`rundir.move_aside`), once the new run has written its first checkpoint (a command that
  fails before that leaves the old run in place), and a prior trained on another VQ-VAE's
  codes is moved aside on its own (`move_stale_prior`);
- a training holds its run directory's lock throughout (`holding_run_lock`).
"""

from __future__ import annotations

import functools
import hashlib
import os
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from hipgen_utils import rundir
from hipgen_utils.checkpoints import (
    CheckpointError,
    before_first_replace,
    deferred_replacements,
    load_checkpoint,
)
from hipgen_utils.config import (
    DATA_ENV,
    ConfigError,
    DataConfig,
    checkpoint_config,
    from_dict,
    upgrade_prior_config,
)

# settings that do not change the trained weights, so --resume may change them
FREE_ON_RESUME = ("log_interval", "val_images", "val_grids", "device", "cpu_bf16")


def _resume_diff(saved: dict, wanted: dict, grows: str) -> list[str]:
    """`name: saved -> wanted` for every setting --resume may not change (all but
    FREE_ON_RESUME; `grows`, the run length, only upwards)."""
    out = []
    for k, v in wanted.items():
        if k in FREE_ON_RESUME or saved.get(k) == v or (k == grows and v > saved.get(k, v)):
            continue
        out.append(f"{k}: {saved.get(k)!r} -> {v!r}" + (" (can only grow)" if k == grows else ""))
    return out


def data_diff(saved: dict | None, wanted: dict | None) -> list[str]:
    """The data settings that differ (the phantom's sizes only matter when it is used)."""
    if not isinstance(saved, dict) or not isinstance(wanted, dict):
        return []
    saved, wanted = asdict(from_dict(DataConfig, saved)), asdict(from_dict(DataConfig, wanted))
    keys = [k for k in wanted if not (wanted["data_dir"] and k.startswith("phantom_"))]
    return [f"{k}: {saved[k]!r} -> {wanted[k]!r}" for k in keys if saved[k] != wanted[k]]


def pin_data_dir(extra: dict | None) -> dict | None:
    """`extra` with data.data_dir made absolute (as given, else $HIPMRI_DATA; None = the
    phantom), so the checkpoint says which data it saw and --resume can compare it."""
    if not extra or not isinstance(extra.get("data"), dict):
        return extra
    data = dict(extra["data"])
    src = data.get("data_dir") or os.environ.get(DATA_ENV)
    data["data_dir"] = str(Path(src).expanduser().resolve()) if src else None
    return {**extra, "data": data}


def restore(model, opt, ckpt, cfg, grows: str, path, other_diffs=()):
    """Load model/optimiser/RNG state from `ckpt` for --resume; (step, history).

    Refused in one line naming the fields when any setting that changes the result differs
    (CheckpointError); a longer run (`grows` upwards) is said and recorded in the history."""
    try:  # fields added since get their old values, removed ones are dropped
        saved = asdict(checkpoint_config(type(cfg), ckpt))
    except ConfigError as e:
        raise CheckpointError(f"{path}: {e}") from None
    wanted = asdict(cfg)
    diff = _resume_diff(saved, wanted, grows) + list(other_diffs)
    if diff:
        raise CheckpointError(
            f"{path}: --resume with settings that differ from the checkpoint's ({'; '.join(diff)}); "
            "use the same settings, start again with --overwrite (RETRAIN = True in a notebook), "
            "or use another run directory (--run_dir, $HIPGEN_RUN_DIR)"
        )
    model.load_state_dict(ckpt["model"])
    opt.load_state_dict(ckpt["optimizer"])
    torch.set_rng_state(ckpt["rng"])
    step, history = int(ckpt["step"]), {k: list(v) for k, v in ckpt["history"].items()}
    if wanted[grows] > saved[grows]:
        note = f"{grows} {saved[grows]} -> {wanted[grows]} at update {step}"
        history.setdefault("extended", []).append(note)
        print(f"{path}: extending the run, {note} (recorded in the history)")
    return step, history


def _trained_for(ckpt: dict) -> str:
    """'20 updates' or '10 of 20 updates' for a checkpoint dict."""
    cfg, step = ckpt.get("config", {}), int(ckpt.get("step", 0))
    if ckpt.get("kind") == "pixelcnn":
        try:
            cfg = upgrade_prior_config(cfg, ckpt.get("history"))  # an epoch budget in updates
        except ConfigError:
            return f"{step} updates"
    total = cfg.get("n_updates", step)
    return f"{step} updates" if step >= total else f"{step} of {total} updates"


def existing_checkpoint(path: Path, kind: str, *, resume: bool, overwrite: bool, moved_with=()):
    """What to start from when `path` may hold a checkpoint: its dict for --resume, None to
    train from scratch. Without --resume or --overwrite an existing checkpoint is refused in
    one line (never replaced in silence); with --overwrite it and the files computed from it
    (`moved_with`) are moved aside together (rundir.move_aside) when the new run's first
    checkpoint replaces it (`checkpoints.before_first_replace`; inside `holding_run_lock`, a
    training that fails before then leaves them where they are)."""
    if resume and overwrite:
        raise CheckpointError("--resume and --overwrite exclude each other; pick one")
    if not path.exists():
        return None
    if overwrite:
        patterns = (path.name, *moved_with)
        before_first_replace(path, lambda: rundir.move_aside(path.parent, patterns))
        return None
    refuse_existing(path, kind, resume=resume, overwrite=overwrite)
    return load_checkpoint(path, kind)


def refuse_existing(path: Path, kind: str, *, resume: bool, overwrite: bool) -> None:
    """The one-line refusal of `existing_checkpoint` when `path` holds a checkpoint and
    neither --resume nor --overwrite is given; nothing otherwise. The CLI asks it before
    loading any data, so a refused command fails at once."""
    path = Path(path)
    if not path.exists() or resume or overwrite:
        return
    label = {"vqvae": "VQ-VAE", "pixelcnn": "PixelCNN prior"}[kind]
    try:
        what = f"a trained {label} ({_trained_for(load_checkpoint(path, kind))})"
    except CheckpointError:
        raise CheckpointError(f"{path.parent} holds an unreadable {path.name}; pass --overwrite to start "
                              "again (it is moved aside, not deleted)") from None  # fmt: skip
    raise CheckpointError(
        f"{path.parent} already holds {what}; pass --resume to continue or --overwrite to start again"
    )


def holding_run_lock(train):
    """Run a training function holding its run directory's lock (its 4th argument), so a
    second training on the same run directory is refused instead of replacing this one; an
    --overwrite whose first checkpoint never came is forgotten when it returns or fails."""

    @functools.wraps(train)
    def locked(cfg, a, b, run_dir, **kw):
        with rundir.run_lock(run_dir), deferred_replacements():
            return train(cfg, a, b, run_dir, **kw)

    return locked


def data_changed(path: Path, data: dict | None) -> bool:
    """Whether the VQ-VAE in `path` saw other data than `data` (also when unreadable): then
    what was trained on the data alone (the segmenter) is replaced too."""
    if not path.exists():
        return False
    try:
        saved = load_checkpoint(path, "vqvae").get("extra", {}).get("data")
    except CheckpointError:
        return True
    return bool(data_diff(saved, data))


def grids_id(codes: dict) -> str:
    """What the grids a prior trains on were made from (ties a resume to them): the VQ-VAE
    and the encoded slices (codes.source_fingerprint), else a hash of the grids themselves."""
    if "source_id" in codes and "vqvae_id" in codes:
        return f"{codes['vqvae_id']}:{codes['source_id']}"
    h = hashlib.sha1()
    for key in ("codes_train", "slice_train", "codes_validate", "slice_validate"):
        if key in codes:
            h.update(key.encode() + np.ascontiguousarray(codes[key]).tobytes())
    return h.hexdigest()[:16]


def move_stale_prior(path: Path, vqvae_id: str):
    """A prior trained on another VQ-VAE's codes cannot be resumed nor sampled with this
    VQ-VAE: move it (and its sample scores) aside, saying so, rather than refuse."""
    if not path.exists():
        return
    try:
        stale = load_checkpoint(path, "pixelcnn").get("vqvae_id") != vqvae_id
    except CheckpointError:
        return  # unreadable: existing_checkpoint refuses it unless --overwrite
    if stale:
        rundir.move_aside(path.parent, (path.name, *rundir.PRIOR_DEPENDENTS),
                          why=f"{path.name} was trained on another VQ-VAE's codes")  # fmt: skip
