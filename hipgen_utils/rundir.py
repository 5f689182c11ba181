"""One writer per run directory, and never a trained file lost or left inconsistent.

Two trainings on one run directory used to both "succeed", the second one's model
silently replacing the first's. `run_lock` makes the second exit with one line naming the
holder. The lock is an OS file lock (``fcntl.flock``) on ``RUN/.hipgen.lock``, so the
kernel releases it when its process ends, however it ends; the holder writes its pid (and
the folder and machine) in the file and clears it on a clean exit, so a pid still there when
the lock is free was left by a killed process, or came with a copy of the folder: which of
the two is said (`stale_lock_note`), and the lock taken over. The next holder also removes
the temp files a killed writer leaves behind (``vqvae.pt.*.tmp``). A run directory that
cannot be created or locked (read-only, a full disk) is one line (`checkpoints.WriteError`).

`move_aside` is what ``--overwrite`` (RETRAIN = True in the notebooks) does: a replaced
checkpoint and every file computed from it go together into ``RUN/replaced-<time>/``, so
nothing trained is deleted and no prior or code grid is left beside a VQ-VAE it does not
belong to; `resume.existing_checkpoint` does it once the new run's first checkpoint is
written.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import socket
import sys
import time
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows: no flock; the lock is then a no-op (see run_lock)
    fcntl = None

LOCK_FILE = ".hipgen.lock"
REPLACED_PREFIX = "replaced-"

# what is computed from each artefact, and so must go with it when it is replaced
PRIOR_DEPENDENTS = ("sample_quality.json", "temperature_sweep.json", "anatomy*.json")
VQVAE_DEPENDENTS = ("codes.npz", "pixelcnn.pt", "ssim_test.json", *PRIOR_DEPENDENTS)
DATA_DEPENDENTS = ("segmenter.pt",)  # trained on the data, not on the VQ-VAE
# temp files of atomic writes (checkpoints.atomic_save, codes.extract_codes)
TEMP_PATTERNS = ("*.tmp", "*.tmp.npz", "codes.?*.npz")


class RunBusyError(RuntimeError):
    """Another process holds the run directory's lock (message names its pid)."""


_held: dict[str, int | None] = {}  # resolved run dir -> lock fd, held by this process


@contextlib.contextmanager
def run_lock(run_dir):
    """Hold RUN's lock for the block; RunBusyError if another process holds it. Re-entrant
    (the CLI holds it around training functions that take it too); on taking it, leftover
    temp files of a killed writer are removed."""
    key = str(Path(run_dir).resolve())
    if key in _held:  # already ours: the outermost block releases it
        yield
        return
    _held[key] = _acquire(Path(key))
    fd = _held[key]
    try:
        yield
    finally:
        del _held[key]
        _release(fd)


def _acquire(run: Path):
    try:
        run.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise _lock_error(run, e, f"cannot create the run directory {run}") from e
    if fcntl is None:
        return None
    try:
        fd = os.open(run / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        raise _lock_error(run, e) from e
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _read_holder(fd)
        os.close(fd)
        raise RunBusyError(
            f"{run} is in use by another hipgen process (pid {holder.get('pid', '?')}, "
            f"{holder.get('command', 'unknown command')}, since {holder.get('since', '?')}); "
            "wait for it to finish or use another run directory"
        ) from None
    note = stale_lock_note(run, _read_holder(fd))
    if note:
        print(note, file=sys.stderr)
    me = json.dumps({"pid": os.getpid(), "command": " ".join(sys.argv[:4]) or "python",
                     "since": time.strftime("%Y-%m-%d %H:%M:%S"), "dir": str(run),
                     "host": socket.gethostname()}).encode()  # fmt: skip
    try:
        os.pwrite(fd, me, 0)
        os.ftruncate(fd, len(me))
    except OSError as e:
        _release(fd)
        raise _lock_error(run, e) from e
    removed = remove_temp_files(run)
    if removed:
        print(f"{run}: removed {len(removed)} temp file(s) left by a killed run: "
              f"{', '.join(p.name for p in removed)}", file=sys.stderr)  # fmt: skip
    return fd


def _lock_error(run: Path, e: OSError, what: str | None = None):
    """One line for a run directory that cannot be created or locked."""
    from hipgen_utils.checkpoints import FULL_OR_READ_ONLY, write_error  # torch: only on this path

    if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        advice = (f"{run} is not writable: make it writable (chmod -R u+w {run}), or copy it "
                  "(cp -r) and pass the copy as --run_dir")  # fmt: skip
        return write_error(run / LOCK_FILE, e, what=what, advice=advice)
    if e.errno in FULL_OR_READ_ONLY:
        return write_error(run / LOCK_FILE, e, what=what)
    return write_error(run / LOCK_FILE, e, what=what, advice="check that {folder} is a folder you can write to")


def _pid_alive(pid: int) -> bool:
    """Whether process `pid` is running on this machine (a zombie, ended but not yet reaped, is not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    except (OverflowError, ValueError):
        return False
    try:  # Linux: "pid (name) STATE ..."
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def stale_lock_note(run: Path, holder: dict) -> str | None:
    """What to say when the free lock of `run` still names a holder (None when it names none,
    or this process): a killed process's, or one copied with the folder from a process that is
    alive and working on the original (`cp -r` of a run in use). The pid is checked, never
    guessed; a holder on another machine is said to be uncheckable from here."""
    pid = holder.get("pid")
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0 or pid == os.getpid():
        return None  # none, this process, or not a pid (0 and -1 would name a process group)
    what = f"pid {pid} ({holder.get('command', 'unknown command')}, since {holder.get('since', '?')})"
    host = holder.get("host")
    if host and host != socket.gethostname():
        return (f"{run}: taking over the lock last written by {what} on {host}, which holds no lock "
                "here (its process cannot be checked from this machine)")  # fmt: skip
    alive = _pid_alive(pid)
    origin = holder.get("dir")
    if origin and origin != str(run):
        state = "that process is still running" if alive else "that process has ended"
        return (f"{run}: its lock file came from {origin}, copied or moved while {what} held it ({state}); "
                "this folder is a run directory of its own: taking its lock")  # fmt: skip
    if alive:
        return (f"{run}: taking over a lock naming {what}: that pid is running but does not hold "
                "this lock (the folder was copied or moved while it was in use, or the pid was reused)")  # fmt: skip
    return (f"{run}: taking over the stale lock of pid {pid} "
            "(that process ended without releasing it; was it killed?)")


def _release(fd):
    if fd is None:
        return
    try:
        os.ftruncate(fd, 0)  # an empty file: the next holder knows this exit was clean
        fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _read_holder(fd) -> dict:
    try:
        d = json.loads(os.pread(fd, 4096, 0).decode() or "{}")
    except (OSError, ValueError):
        return {}
    return d if isinstance(d, dict) else {}


def remove_temp_files(run_dir) -> list[Path]:
    """Delete the temp files of atomic writes in RUN (only safe while holding RUN's lock)."""
    run = Path(run_dir)
    found = {p for pat in TEMP_PATTERNS for p in run.glob(pat) if p.is_file() and p.name != "codes.npz"}
    removed = []
    for p in sorted(found):
        try:
            p.unlink(missing_ok=True)
        except OSError:  # a read-only run directory: they stay, and are not reported as removed
            continue
        removed.append(p)
    return removed


def move_aside(run_dir, patterns, why: str = "--overwrite") -> Path | None:
    """Move the files of RUN matching `patterns` into a fresh RUN/replaced-<time>/ and say so
    in one line; returns that folder, or None when nothing matched."""
    run = Path(run_dir)
    files = sorted({p for pat in patterns for p in run.glob(pat) if p.is_file()})
    if not files:
        return None
    stamp = time.strftime("%Y%m%d-%H%M%S")
    dest = run / f"{REPLACED_PREFIX}{stamp}"
    n = 1
    while dest.exists():
        n += 1
        dest = run / f"{REPLACED_PREFIX}{stamp}-{n}"
    dest.mkdir()
    for p in files:
        os.replace(p, dest / p.name)
    from tqdm.auto import tqdm  # may come in the middle of a training's progress bar

    tqdm.write(f"{why}: moved {', '.join(p.name for p in files)} to {dest}")
    return dest
