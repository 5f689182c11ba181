"""Checkpoints and run-directory artefacts: atomic writes, safe loads, one-line errors.

A run directory holds, in pipeline order:
``vqvae.pt`` (notebook 02) -> ``codes.npz`` (notebook 04) -> ``pixelcnn.pt`` (notebook 05).
Every checkpoint is a plain dict (tensors, numbers, strings, lists) so it loads with
``torch.load(..., weights_only=True)``, and carries the config it was trained with.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import json
import os
import tempfile
from collections.abc import Callable
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


class WriteError(OSError):
    """A file could not be written (a full disk, a read-only folder, ...): the message is
    one line naming the path and what to do (`write_error`). An OSError, so code that
    catches OSError still does."""

    def __init__(self, message: str, code: int | None = None, filename=None):
        super().__init__(code, message, None if filename is None else str(filename))
        self.message = message

    def __str__(self) -> str:
        return self.message


# what to do about the OSErrors a write meets, by errno ({folder}: where it was writing)
_ADVICE = {
    errno.ENOSPC: "the disk holding {folder} is full: free some space, or use a folder on another disk",
    errno.EDQUOT: "your disk quota is used up: free some space, or use a folder on another disk",
    errno.EFBIG: "the file size limit was reached (`ulimit -f`): raise it, or run where there is none",
    errno.EACCES: "{folder} is not writable: make it writable (chmod u+w), or use another folder",
    errno.EPERM: "{folder} is not writable: make it writable (chmod u+w), or use another folder",
    errno.EROFS: "{folder} is on a read-only disk: use a folder on a writable one",
}
FULL_OR_READ_ONLY = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EACCES, errno.EPERM, errno.EROFS)


def write_error(path, e: OSError, *, what: str | None = None, folder=None, then: str = "run the command again",
                advice: str | None = None) -> WriteError:  # fmt: skip
    """The one line for an OSError `e` met while writing `path`: "cannot write WHAT (reason);
    what to do, then THEN". `what` replaces the path in the line, `folder` the folder named
    in the advice (default: the path's own), `advice` the advice."""
    path = Path(path)
    folder = Path(folder) if folder is not None else path.parent
    while not folder.exists() and folder != folder.parent:  # the folder that refused a new entry
        folder = folder.parent
    reason = e.strerror or str(e) or type(e).__name__
    todo = (advice or _ADVICE.get(e.errno, "check {folder}")).format(folder=folder)
    return WriteError(f"cannot write {what or path} ({reason}); {todo}, then {then}", e.errno, path)


def check_writable(folder, what: str | None = None) -> Path:
    """Create `folder` (and its parents) if needed and try a file in it, so a command that
    cannot write its result there fails at once, before its work, with one line
    (`WriteError`; `what` names the folder in it, e.g. "--out folder /x")."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".hipgen-write-test-", dir=folder)
        os.close(fd)
        os.remove(probe)
    except OSError as e:
        raise write_error(folder / "x", e, what=what or str(folder), folder=folder) from e
    return folder


# --overwrite: what to do just before a path is first replaced (`before_first_replace`)
_before_replace: dict[str, Callable[[], object]] = {}


def missing(path: Path) -> MissingStepError:
    path = Path(path)
    step = PRODUCER.get(path.name, "the step that writes it")
    return MissingStepError(f"{path} not found: run {step} first")


def atomic_write(path, write, suffix: str = ".tmp") -> Path:
    """`write(tmp)` into a temp file beside `path`, then rename it to `path`: a crash never
    leaves half a file, and a reader sees the old file or the new one. The temp name ends in
    `suffix` (".tmp", or ".tmp.npz" for numpy's savez, which wants that ending), which is what
    `rundir.remove_temp_files` looks for after a kill. The one place the package does this.

    A write that fails (a full disk, a read-only folder: any OSError) removes the temp file,
    leaves `path` as it was and raises `WriteError`, one line saying what to do."""
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=suffix, dir=path.parent)
        os.close(fd)
        write(tmp)
        key = str(path.resolve())
        if key in _before_replace:
            _before_replace[key]()  # kept when it fails: the next write tries again
            del _before_replace[key]
        os.replace(tmp, path)
    except WriteError:
        raise
    except OSError as e:
        kept = f" (the previous {path.name} is kept)" if path.exists() else ""
        raise write_error(path, e, then="run the command again" + kept) from e
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.remove(tmp)
    return path


def atomic_save(obj, path) -> Path:
    """torch.save, atomically (`atomic_write`). Serialised in memory first: torch's own file
    writer reports a full disk as "RuntimeError: unexpected pos ...", a plain write as the
    OSError it is."""

    def write(tmp):
        buf = io.BytesIO()
        torch.save(obj, buf)
        with open(tmp, "wb") as f:
            f.write(buf.getbuffer())

    return atomic_write(path, write)


@contextlib.contextmanager
def deferred_replacements():
    """The scope of `before_first_replace` hooks: those not run by the end of the block are
    dropped (a training that failed before its first checkpoint leaves the old run in place)."""
    before = set(_before_replace)
    try:
        yield
    finally:
        for key in set(_before_replace) - before:
            del _before_replace[key]


def before_first_replace(path, hook: Callable[[], object]) -> None:
    """Call `hook()` once, when an atomic write first replaces `path`: after the new file is
    completely written, just before the rename. How ``--overwrite`` moves the old run aside
    only once the new one has written its first checkpoint (`resume.existing_checkpoint`);
    a hook of a write that never comes is dropped at the end of `deferred_replacements`."""
    _before_replace[str(Path(path).resolve())] = hook


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

