"""HipMRI 2D-slice data: find the release, read NIfTI slices, harmonise, cache, batch.

The release is read as it is on disk::

    <root>/keras_slices_{train,validate,test}/case_NNN_week_W_slice_S.nii.gz      images
    <root>/keras_slices_seg_{train,validate,test}/seg_NNN_week_W_slice_S.nii.gz   labels (optional)

Slices are mostly 256x128, some case-weeks 256x144, some files carry a trailing singleton
dim, and the on-disk dtype and intensity scale vary. `load_split` turns a split into one
``(N, H, W) float32`` array in [0, 1] (per-image normalisation, then resize or centre
crop/pad to a common shape) plus ``(N, H, W) uint8`` labels 0..5, and caches the decoded
arrays so the next load is a memory map instead of 12k gzip decodes.

Bad input stops the load with a one-line `BadFileError` naming the file; with
``skip_bad=True`` bad files are skipped, listed in ``SliceSet.skipped`` and summarised.
"""

from __future__ import annotations

import concurrent.futures as cf
import hashlib
import io
import json
import os
import shutil
import tempfile
import warnings
import zlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np
import torch
from nibabel.filebasedimages import ImageFileError
from nibabel.spatialimages import HeaderDataError
from nibabel.wrapstruct import WrapStructError
from skimage.transform import resize as sk_resize
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from . import config
from .layout import FILE_RE as _NAME_RE
from .layout import LABEL_NAMES, N_CLASSES, SPLITS, image_folder, label_folder  # noqa: F401 (re-exported)

IMAGE_SHAPE = (256, 128)
RESIZE_MODES = ("resize", "crop")
NORMS = ("robust", "minmax", "zscore")
# Bump when the decoding/normalisation code changes so old caches are not reused.
CACHE_VERSION = 2  # 2: decode failures are recorded and re-tried, never trusted

_NIFTI_SUFFIXES = (".nii", ".nii.gz")
_HDR348 = (np.int32(348).astype("<i4").tobytes(), np.int32(348).astype(">i4").tobytes())
# Below this many files a process pool costs more to start than it saves.
_POOL_MIN_FILES = 256
_CHUNK = 64
_ORPHAN = "label file with no matching image (ignored)"


class DataError(ValueError):
    """Bad data folder, split or setting (message is one line)."""


class BadFileError(DataError):
    """One unreadable or unusable file; ``str(e) == f"{path}: {reason}"``."""

    def __init__(self, path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")

    def __reduce__(self):  # picklable across the process pool
        return (type(self), (self.path, self.reason))


@dataclass
class SliceInfo:
    """One image slice on disk and its label file (None when the split has no labels)."""

    case: int
    week: int
    slice: int
    path: str
    label_path: str | None = None


def _expected() -> str:
    return ", ".join(image_folder(s) + "/" for s in SPLITS) + " (labels: keras_slices_seg_<split>/)"


def parse_slice_name(name) -> tuple[str, int, int, int]:
    """``"case_004_week_1_slice_17.nii.gz"`` -> ``("case", 4, 1, 17)``; labels give ``"seg"``.

    Accepts a bare name or a path; raises DataError for anything else."""
    base = os.path.basename(str(name))
    m = _NAME_RE.match(base)
    if m is None:
        raise DataError(
            f"{base!r} is not a HipMRI slice name; expected case_NNN_week_W_slice_S.nii.gz "
            "(or seg_... for labels)"
        )
    return m.group(1), int(m.group(2)), int(m.group(3)), int(m.group(4))


def _is_root(p: Path) -> bool:
    return any((p / image_folder(s)).is_dir() for s in SPLITS)


def find_root(data_dir) -> Path:
    """The HipMRI root: `data_dir` itself or its only sub-folder that holds split folders.

    A root needs at least one ``keras_slices_<split>/`` image folder. Raises DataError
    naming the folder and the expected layout otherwise."""
    if data_dir is None or str(data_dir) == "":
        raise DataError("no data folder given; pass data_dir or set $" + config.DATA_ENV)
    p = Path(data_dir).expanduser()
    if not p.exists():
        raise DataError(
            f"{p}: folder does not exist; expected a HipMRI folder holding {_expected()}"
        )
    if not p.is_dir():
        raise DataError(f"{p}: is a file, not a folder; expected a folder holding {_expected()}")
    if _is_root(p):
        return p.resolve()
    # The release unpacks into one extra folder level; accept the folder above it too.
    subs = [c for c in p.iterdir() if c.is_dir() and not c.name.startswith((".", "__"))]
    roots = [c for c in subs if _is_root(c)]
    if len(roots) == 1:
        return roots[0].resolve()
    raise DataError(f"{p}: not a HipMRI 2D-slice folder; expected {_expected()} inside it")


def _scan(folder: Path) -> list[tuple[str, int, int, bool]]:
    """(name, size, mtime_ns, is_file) of every non-hidden entry, sorted by name."""
    out = []
    with os.scandir(folder) as it:
        for e in it:
            if e.name.startswith("."):  # .DS_Store, ._foo, editor swap files
                continue
            try:
                st = e.stat()
            except OSError:  # dangling symlink, vanished file: reported by _index_folder
                out.append((e.name, -1, 0, False))
                continue
            out.append((e.name, st.st_size, st.st_mtime_ns, e.is_file()))
    out.sort()
    return out


def _index_folder(folder: Path, kind: str, entries, skipped) -> dict[tuple, str]:
    """Map (case, week, slice) -> path for one folder; bad names raise or go to `skipped`."""
    found: dict[tuple, str] = {}
    prefix = str(folder) + os.sep  # plain strings: pathlib costs ~0.5 s over 25k names
    for name, size, _mtime, is_file in entries:
        path = prefix + name
        reason = None
        if size < 0:
            reason = "cannot stat the file (a dangling link?)"
        elif not is_file:
            reason = "unexpected folder inside a split folder"
        elif not name.endswith(_NIFTI_SUFFIXES):
            reason = "not a NIfTI file name"
        else:
            m = _NAME_RE.match(name)
            if m is None:
                reason = f"not a HipMRI slice name (expected {kind}_NNN_week_W_slice_S.nii.gz)"
            elif m.group(1) != kind:
                reason = f"wrong prefix ({m.group(1)}_ file in a {kind}_ folder)"
            else:
                key = (int(m.group(2)), int(m.group(3)), int(m.group(4)))
                if key in found:
                    reason = (
                        f"duplicate slice (same case/week/slice as {os.path.basename(found[key])})"
                    )
                else:
                    found[key] = path
        if reason is not None:
            if skipped is None:
                raise BadFileError(path, reason + "; remove it or pass skip_bad=True")
            skipped.append((path, reason))
    return found


def _list_split(root: Path, split: str, skipped):
    """(infos, has_labels, fingerprint) for one split; see `list_split`."""
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    root = Path(root)
    folder = root / image_folder(split)
    if not folder.is_dir():
        raise DataError(f"{root}: no {image_folder(split)}/ folder; expected {_expected()}")
    entries = _scan(folder)
    if not entries:
        raise DataError(f"{folder} is empty; expected case_NNN_week_W_slice_S.nii.gz files")
    images = _index_folder(folder, "case", entries, skipped)
    if not images:
        raise DataError(f"{folder}: no HipMRI slice files among {len(entries)} entries")

    lfolder = root / label_folder(split)
    lentries = _scan(lfolder) if lfolder.is_dir() else []
    has_labels = bool(lentries)
    if lfolder.is_dir() and not lentries:
        warnings.warn(f"{lfolder} is empty; loading {split} without labels", stacklevel=3)
    labels = _index_folder(lfolder, "seg", lentries, skipped) if has_labels else {}

    infos = [SliceInfo(*k, path=p, label_path=labels.get(k)) for k, p in sorted(images.items())]
    # labels with no image do not stop a load, but are reported rather than dropped silently
    orphans = [(p, _ORPHAN) for k, p in sorted(labels.items()) if k not in images]
    fingerprint = [image_folder(split), entries, label_folder(split), lentries]
    return infos, has_labels, fingerprint, orphans


def list_split(root, split: str, *, skipped: list | None = None) -> list[SliceInfo]:
    """The image slices of one split, sorted by (case, week, slice), labels paired by name.

    ``label_path`` is None where the split has no label folder or that slice has no label.
    A bad entry in a split folder (odd name, duplicate, sub-folder) raises BadFileError,
    unless a `skipped` list is given: then ``(path, reason)`` is appended to it instead.
    Hidden dot-files are ignored. Raises DataError for a missing or empty split folder."""
    infos, _, _, orphans = _list_split(Path(root), split, skipped)
    if skipped is not None:
        skipped.extend(orphans)
    elif orphans:
        warnings.warn(
            f"{len(orphans)} label files have no matching image, e.g. {orphans[0][0]}",
            stacklevel=2,
        )
    return infos


def _gunzip(blob: bytes) -> bytes:
    """Whole-buffer gzip decode (all members); EOFError when the stream is cut short."""
    out = []
    while blob:
        d = zlib.decompressobj(wbits=31)  # 31: gzip wrapper, CRC checked
        out.append(d.decompress(blob))
        if not d.eof:
            raise EOFError("compressed file ended before the end-of-stream marker")
        blob = d.unused_data
    return b"".join(out)


def _open_nifti(path: str):
    """(header, read_data) for `path`; ``read_data()`` gives the scaled voxel array.

    Fast path for single-file NIfTI-1 (the release): read and gunzip the whole file in
    one go, parse the 348-byte header with nibabel and let the header read the voxels
    from memory. ``nib.load`` gives the same array but sniffs the format, builds an image
    and streams through GzipFile in small reads: ~3x slower per slice, and decoding ~25k
    small files is all a cold load does. Anything else (NIfTI-2, Analyze, other names,
    unrecognised bytes) goes through ``nib.load`` and its errors."""
    if path.endswith(_NIFTI_SUFFIXES):
        try:
            with open(path, "rb") as f:
                blob = f.read()
        except OSError as e:  # permissions, a dangling link: not a corrupt file
            raise BadFileError(
                path, f"cannot read file ({type(e).__name__}: {e.strerror})"
            ) from None
        if not blob:
            raise BadFileError(path, "empty file (0 bytes); re-copy it from the release")
        if path.endswith(".gz"):
            if blob[:2] != b"\x1f\x8b":
                raise BadFileError(path, "not a gzip file although named .gz; re-copy it")
            blob = _gunzip(blob)
        if len(blob) >= 348 and blob[344:348] == b"n+1\0" and blob[:4] in _HDR348:
            hdr = nib.Nifti1Header(blob[:348], check=True)  # validates codes/dims
            return hdr, lambda: hdr.data_from_fileobj(io.BytesIO(blob))
    img = nib.load(path)
    return img.header, lambda: np.asanyarray(img.dataobj)


def _read_nifti(path) -> tuple[np.ndarray, tuple]:
    """`read_nifti_slice` plus the shape stored in the header (singleton dims included)."""
    path = str(path)
    try:
        hdr, read_data = _open_nifti(path)
        shape = tuple(int(s) for s in hdr.get_data_shape())
        core = tuple(s for s in shape if s != 1)
        if len(core) > 2:
            raise BadFileError(
                path,
                f"3-D volume ({'x'.join(map(str, shape))}) where one 2-D slice was expected; "
                "is this a scan rather than a keras_slices file?",
            )
        if len(core) < 2:
            raise BadFileError(path, f"not a 2-D slice (shape {shape})")
        arr = np.asarray(read_data())
    except BadFileError:
        raise
    except ImageFileError as e:
        msg = str(e)
        if "Empty file" in msg:
            reason = "empty file (0 bytes); re-copy it from the release"
        elif "not a gzip file" in msg:
            reason = "not a gzip file although named .gz; re-copy it from the release"
        else:
            reason = "not a NIfTI file (unrecognised header)"
        raise BadFileError(path, reason) from None
    except (
        EOFError,
        OSError,
        ValueError,
        KeyError,
        zlib.error,
        HeaderDataError,
        WrapStructError,
    ) as e:
        # EOFError/zlib.error/BadGzipFile: broken gzip; OSError "Expected N bytes": short payload
        detail = " ".join(str(e).split())[:80]
        kind = "zlib.error" if isinstance(e, zlib.error) else type(e).__name__
        raise BadFileError(
            path, f"corrupt or truncated file ({kind}: {detail}); re-copy it"
        ) from None
    arr = arr.reshape(core)
    if not arr.flags.writeable:  # parsed from an immutable bytes buffer
        arr = arr.copy()
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        n = int(arr.size - np.isfinite(arr).sum())
        raise BadFileError(path, f"NaN/Inf voxels ({n} of {arr.size}); re-export the slice")
    if arr.dtype.kind not in "fiub":
        raise BadFileError(path, f"unsupported voxel dtype ({arr.dtype})")
    return arr, shape


def read_nifti_slice(path) -> np.ndarray:
    """One slice as a raw 2-D ``(H, W)`` array in its stored dtype (scl_slope applied if set).

    Singleton dims (e.g. a trailing ``(256, 128, 1)``) are dropped. Raises BadFileError
    for an empty, corrupt or truncated file, a non-NIfTI file, a 3-D volume, or NaN/Inf."""
    return _read_nifti(path)[0]


def _crop_or_pad(img: np.ndarray, shape) -> np.ndarray:
    out = np.zeros(shape, dtype=img.dtype)
    src, dst = [], []
    for n_in, n_out in zip(img.shape, shape):
        if n_in >= n_out:  # centre crop
            a = (n_in - n_out) // 2
            src.append(slice(a, a + n_out))
            dst.append(slice(0, n_out))
        else:  # centre zero-pad
            a = (n_out - n_in) // 2
            src.append(slice(0, n_in))
            dst.append(slice(a, a + n_in))
    out[tuple(dst)] = img[tuple(src)]
    return out


def harmonise(img: np.ndarray, shape=IMAGE_SHAPE, mode: str = "resize", is_label: bool = False):
    """Bring a 2-D slice to `shape` ``(H, W)``.

    ``mode="resize"``: images bilinear (order 1) with anti-aliasing, returned float32;
    labels nearest (order 0, no anti-aliasing) so no new label values appear, dtype kept.
    ``mode="crop"``: centre crop / zero pad each axis, dtype kept (float32 for images)."""
    if mode not in RESIZE_MODES:
        raise DataError(f"unknown resize mode {mode!r}; choose one of {', '.join(RESIZE_MODES)}")
    img = np.asarray(img)
    if img.ndim != 2:
        raise DataError(f"harmonise expects a 2-D slice, got shape {img.shape}")
    shape = tuple(int(s) for s in shape)
    if not is_label:
        img = img.astype(np.float32, copy=False)
    if img.shape == shape:
        return img
    if mode == "crop":
        return _crop_or_pad(img, shape)
    if is_label:
        out = sk_resize(img, shape, order=0, anti_aliasing=False, preserve_range=True)
        return out.astype(img.dtype)
    out = sk_resize(img, shape, order=1, anti_aliasing=True, preserve_range=True)
    return out.astype(np.float32)


def normalise(img: np.ndarray, method: str = "robust", path=None) -> np.ndarray:
    """Per-image intensity normalisation of any dtype/scale to float32 in [0, 1].

    ``"robust"``: min-max between the 0.5 and 99.5 percentiles, then clip (falls back to
    min-max when those percentiles coincide, e.g. a mostly-empty slice);
    ``"minmax"``: plain min-max; ``"zscore"``: (x - mean) / std clipped to +-3, mapped to
    [0, 1]. A constant image raises BadFileError naming `path`."""
    if method not in NORMS:
        raise DataError(f"unknown normalisation {method!r}; choose one of {', '.join(NORMS)}")
    x = np.asarray(img, dtype=np.float64)
    lo, hi = float(x.min()), float(x.max())
    if not hi > lo:
        raise BadFileError(
            path if path is not None else "<array>",
            f"constant image (every voxel = {lo:g}); nothing to learn, remove it or use skip_bad",
        )
    if method == "zscore":
        y = (np.clip((x - x.mean()) / x.std(), -3.0, 3.0) + 3.0) / 6.0
    else:
        if method == "robust":
            plo, phi = np.percentile(x, [0.5, 99.5])
            if phi > plo:
                lo, hi = float(plo), float(phi)
        y = np.clip((x - lo) / (hi - lo), 0.0, 1.0)
    return y.astype(np.float32)


# ----------------------------------------------------------------------------- decoding


def _decode_one(info: SliceInfo, shape, mode, norm):
    """Read, check, normalise and harmonise one slice (+ its label)."""
    raw, hdr_shape = _read_nifti(info.path)
    img = harmonise(normalise(raw, norm, path=info.path), shape, mode)
    lab, values = None, None
    if info.label_path is not None:
        lraw, _ = _read_nifti(info.label_path)
        if lraw.shape != raw.shape:
            raise BadFileError(
                info.label_path,
                f"label shape differs from its image (label {lraw.shape}, image {raw.shape})",
            )
        bad = (lraw < 0) | (lraw >= N_CLASSES) | (lraw != np.round(lraw))
        if bad.any():
            v = lraw[bad].flat[0].item()
            raise BadFileError(
                info.label_path,
                f"label values outside the integers 0..{N_CLASSES - 1} (found {v:g})",
            )
        lraw = lraw.astype(np.uint8)
        values = np.flatnonzero(np.bincount(lraw.ravel(), minlength=N_CLASSES)).tolist()
        lab = harmonise(lraw, shape, mode, is_label=True)
    return img, lab, hdr_shape, str(raw.dtype), float(raw.min()), float(raw.max()), values


def _decode_chunk(args):
    """Worker: decode files [(i, info)] -> [(i, result | None, (path, reason) | None)].

    With `out` ({"images": npy path, "labels": ...}) the rows are written straight into
    those memory-mapped files and left out of the result, so ~128 KB per slice is not
    pickled back to the parent (that cost a third of the CPU time of a pooled load)."""
    items, shape, mode, norm, skip_bad, out = args
    dst = {k: np.load(f, mmap_mode="r+") for k, f in out.items()} if out else None
    results = []
    for i, info in items:
        try:
            res = _decode_one(info, shape, mode, norm)
        except BadFileError as e:
            if not skip_bad:
                raise
            results.append((i, None, (e.path, e.reason)))
            continue
        if dst is not None:
            dst["images"][i] = res[0]
            if res[1] is not None:
                dst["labels"][i] = res[1]
            res = (None, None, *res[2:])
        results.append((i, res, None))
    return results


def _decode_all(infos, shape, mode, norm, skip_bad, workers, progress, desc, dst):
    """Decode every slice into dst['images'][i] / dst['labels'][i].

    Returns (meta, bad): meta[i] = (raw shape, dtype, min, max, label values), or None for
    a skipped file, whose (path, reason) is in bad[i]."""
    n = len(infos)
    meta: list = [None] * n
    bad: dict[int, tuple[str, str]] = {}
    pool = workers > 1 and n >= _POOL_MIN_FILES
    on_disk = all(isinstance(v, np.memmap) for v in dst.values())
    out = {k: v.filename for k, v in dst.items()} if pool and on_disk else None
    chunks = [
        ([(i, infos[i]) for i in range(a, min(a + _CHUNK, n))], shape, mode, norm, skip_bad, out)
        for a in range(0, n, _CHUNK)
    ]
    bar = tqdm(total=n, desc=desc, unit="slice", disable=not progress, leave=False)

    def take(results):
        for i, res, why in results:
            if res is None:
                bad[i] = why
                continue
            img, lab, *rest = res
            if img is not None:  # else the worker wrote it into the memmap already
                dst["images"][i] = img
            if lab is not None:
                dst["labels"][i] = lab
            meta[i] = tuple(rest)
        bar.update(len(results))

    try:
        if pool:
            ex = cf.ProcessPoolExecutor(max_workers=workers)
            try:
                for results in ex.map(_decode_chunk, chunks):
                    take(results)
            finally:  # on a bad file, do not wait for the rest of the split to decode
                ex.shutdown(wait=True, cancel_futures=True)
        else:
            for c in chunks:
                take(_decode_chunk(c))
    finally:
        bar.close()
    return meta, bad


def _cache_key(root: Path, split, fingerprint, shape, mode, norm) -> str:
    """Hash of everything the decoded arrays depend on: the root, every file's name, size
    and mtime, the settings and CACHE_VERSION. skip_bad is left out on purpose: a load
    without it only succeeds (and caches) when no file is bad, so both settings can share
    one entry, and `hipgen info` (skip_bad=True) warms the cache for training."""
    blob = json.dumps([CACHE_VERSION, str(root), split, fingerprint, list(shape), mode, norm])
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


@dataclass
class SliceSet:
    """One decoded split.

    images: ``(N, H, W) float32`` in [0, 1] (may be a read-only np.memmap);
    labels: ``(N, H, W) uint8`` 0..5, or None when the release has no labels for the split;
    case/week/slice: ``(N,) int64``; paths: image file per row; raw_*: per file, as stored
    (shape incl. singleton dims, dtype, min, max); skipped: ``(path, reason)`` of files left
    out; label_values: sorted label values found in the split's label files (or None)."""

    split: str
    root: Path
    images: np.ndarray
    labels: np.ndarray | None
    case: np.ndarray
    week: np.ndarray
    slice: np.ndarray
    paths: list[str]
    raw_shapes: list[tuple]
    raw_dtypes: list[str]
    raw_min: np.ndarray
    raw_max: np.ndarray
    skipped: list[tuple[str, str]] = field(default_factory=list)
    label_values: list[int] | None = None

    def __len__(self) -> int:
        return len(self.images)

    def __repr__(self) -> str:
        lab = "no labels" if self.labels is None else "labels"
        return (
            f"SliceSet({self.split!r}, {len(self)} slices of {tuple(self.images.shape[1:])}, "
            f"{lab}, {len(self.skipped)} skipped, root={str(self.root)!r})"
        )


def _summarise_skipped(skipped, n_files, split):
    if not skipped:
        return
    why = Counter(r.split(" (")[0].split(";")[0] for _, r in skipped)
    top = ", ".join(f"{c} {r}" for r, c in why.most_common(3))
    warnings.warn(
        f"skipped {len(skipped)} of {n_files} files in {image_folder(split)}: {top} (see .skipped)",
        stacklevel=3,
    )


def _check_settings(split, shape, resize_mode, norm):
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    if resize_mode not in RESIZE_MODES:
        raise DataError(
            f"unknown resize_mode {resize_mode!r}; choose one of {', '.join(RESIZE_MODES)}"
        )
    if norm not in NORMS:
        raise DataError(f"unknown norm {norm!r}; choose one of {', '.join(NORMS)}")
    try:
        shape = tuple(int(s) for s in shape)
    except (TypeError, ValueError):
        raise DataError(f"shape {shape!r} should be two positive ints (H, W)") from None
    if len(shape) != 2 or min(shape) < 1:
        raise DataError(f"shape {shape!r} should be two positive ints (H, W)")
    return shape


def load_split(
    data_dir=None,
    split: str = "train",
    *,
    shape=IMAGE_SHAPE,
    resize_mode: str = "resize",
    norm: str = "robust",
    skip_bad: bool = False,
    cache: bool = True,
    progress: bool = True,
    workers: int | None = None,
) -> SliceSet:
    """Decode one split into a `SliceSet` of ``(N, H, W) float32`` images in [0, 1].

    `data_dir` is resolved by `resolve_data_dir` (None -> $HIPMRI_DATA -> phantom). Each
    image is normalised (`norm`, on the raw slice) and then brought to `shape`
    (`resize_mode`, see `harmonise`). With `cache` the arrays are stored under
    ``cache_dir()/slices/<key>/`` and memory-mapped read-only; the key covers every file's
    name, size and mtime plus the settings, so an edited or added file triggers a fresh
    decode. `workers` processes decode in parallel (default ``min(2, cpu_count)``).
    A bad file raises BadFileError unless `skip_bad`; then it is listed in ``.skipped``."""
    shape = _check_settings(split, shape, resize_mode, norm)
    root = find_root(resolve_data_dir(data_dir))
    skipped: list | None = [] if skip_bad else None
    infos, has_labels, fingerprint, orphans = _list_split(root, split, skipped)
    skipped = (skipped or []) + orphans
    n_files = len(fingerprint[1])  # entries in the image folder

    key = _cache_key(root, split, fingerprint, shape, resize_mode, norm)
    cdir = config.cache_dir() / "slices" / key
    if cache and (cdir / "meta.json").is_file() and _failures_fixed(cdir, shape, resize_mode, norm):
        _discard(cdir)  # a file that failed before (e.g. permission denied) reads now
    if cache and (cdir / "meta.json").is_file():
        sset = _load_cached(cdir, root)
        bad = [(p, r) for p, r in sset.skipped if r != _ORPHAN]
        if bad and not skip_bad:  # cached by a skip_bad=True load; a fresh load would raise
            raise BadFileError(bad[0][0], bad[0][1] + "; remove it or pass skip_bad=True")
        _summarise_skipped(sset.skipped, n_files, split)
        _warn_resized(sset, shape, resize_mode)
        return sset

    if has_labels:  # a split with labels needs one for every image
        for info in infos:
            if info.label_path is None:
                name = f"seg_{info.case:03d}_week_{info.week}_slice_{info.slice}.nii.gz"
                reason = f"no label file (expected {name} in {label_folder(split)}/)"
                if not skip_bad:
                    raise BadFileError(info.path, reason + "; add it or pass skip_bad=True")
                skipped.append((info.path, reason))
        infos = [i for i in infos if i.label_path is not None]
    workers = min(2, os.cpu_count() or 1) if workers is None else max(1, int(workers))
    n = len(infos)
    desc = f"decoding {image_folder(split)}"

    if not cache:
        dst = {"images": np.empty((n, *shape), np.float32)}
        if has_labels:
            dst["labels"] = np.empty((n, *shape), np.uint8)
        meta, bad = _decode_all(
            infos, shape, resize_mode, norm, skip_bad, workers, progress, desc, dst
        )
        keep = [i for i, m in enumerate(meta) if m is not None]
        doc = _meta_doc(infos, meta, keep, skipped + list(bad.values()), has_labels, split, root)
        _check_some_left(doc, root, split)
        if len(keep) < n:
            dst = {k: v[keep] for k, v in dst.items()}
        sset = _from_doc(doc, dst["images"], dst.get("labels"), root)
        _summarise_skipped(sset.skipped, n_files, split)
        _warn_resized(sset, shape, resize_mode)
        return sset

    # Decode straight into .npy memmaps in a private temp dir, then publish it with one
    # rename so a crash or a concurrent load never leaves a half-written cache behind.
    cdir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{key}-", dir=cdir.parent))
    try:
        dst = {"images": _open_npy(tmp / "images.npy", np.float32, (n, *shape))}
        if has_labels:
            dst["labels"] = _open_npy(tmp / "labels.npy", np.uint8, (n, *shape))
        meta, bad = _decode_all(
            infos, shape, resize_mode, norm, skip_bad, workers, progress, desc, dst
        )
        keep = [i for i, m in enumerate(meta) if m is not None]
        doc = _meta_doc(infos, meta, keep, skipped + list(bad.values()), has_labels, split, root)
        _check_some_left(doc, root, split)
        for name in list(dst):
            arr = dst.pop(name)
            if len(keep) < n:  # drop skipped rows, chunk by chunk to keep memory flat
                small = _open_npy(tmp / f"{name}.part.npy", arr.dtype, (len(keep), *shape))
                for a in range(0, len(keep), 1024):
                    small[a : a + 1024] = arr[keep[a : a + 1024]]
                small.flush()
                del small, arr  # unmap both before replacing the file
                os.replace(tmp / f"{name}.part.npy", tmp / f"{name}.npy")
            else:
                arr.flush()
                del arr
        (tmp / "meta.json").write_text(json.dumps(doc))
        try:
            os.rename(tmp, cdir)
        except OSError:  # another process published the same key first; use theirs
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    sset = _load_cached(cdir, root)
    _summarise_skipped(sset.skipped, n_files, split)
    _warn_resized(sset, shape, resize_mode)
    return sset


def _failures_fixed(cdir: Path, shape, mode, norm) -> bool:
    """Whether a file that failed to decode when this cache entry was written decodes now.

    The key (names, sizes, mtimes) does not change when a file's permissions are fixed or a
    copy finishes, so failures are re-tried on every cache hit, never trusted."""
    try:
        failed = json.loads((cdir / "meta.json").read_text()).get("failed", [])
    except (OSError, ValueError):
        return True  # unreadable metadata: decode afresh
    for case, week, sl, path, label_path in failed:
        try:
            _decode_one(SliceInfo(case, week, sl, path, label_path), shape, mode, norm)
        except BadFileError:
            continue
        return True
    return False


def _discard(cdir: Path):
    """Remove a stale cache entry (renamed first, so no reader sees half of it)."""
    trash = cdir.with_name(f".tmp-stale-{cdir.name}-{os.getpid()}")
    try:
        os.rename(cdir, trash)
    except OSError:
        return  # another process removed it already
    shutil.rmtree(trash, ignore_errors=True)


def _warn_resized(sset: SliceSet, shape, mode):
    """One warning line when slices were not `shape` on disk (e.g. 256x144, 512x256): they
    were resized or centre-cropped to it, which changes what the model sees."""
    odd = Counter(
        "x".join(map(str, core))
        for core in (tuple(d for d in s if d != 1) for s in sset.raw_shapes)
        if core != tuple(shape)
    )
    if odd:
        how = "resized" if mode == "resize" else "centre-cropped/padded"
        shapes = ", ".join(f"{n} of {s}" for s, n in odd.most_common())
        warnings.warn(
            f"{image_folder(sset.split)}: {sum(odd.values())} of {len(sset)} slices are not "
            f"{shape[0]}x{shape[1]} on disk ({shapes}) and were {how} to it",
            stacklevel=3,
        )


def _open_npy(path, dtype, shape):
    return np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=shape)


def _check_some_left(doc, root, split):
    if not doc["paths"]:
        raise DataError(
            f"{root / image_folder(split)}: all {len(doc['skipped'])} files were bad, "
            f"e.g. {doc['skipped'][0][0]}: {doc['skipped'][0][1]}"
        )


def _meta_doc(infos, meta, keep, skipped, has_labels, split, root) -> dict:
    """Everything but the pixel arrays, JSON-ready (also the cache's meta.json)."""
    good = [infos[i] for i in keep]
    rows = [meta[i] for i in keep]
    return {
        "version": CACHE_VERSION,
        "split": split,
        "root": str(root),
        "case": [g.case for g in good],
        "week": [g.week for g in good],
        "slice": [g.slice for g in good],
        "paths": [g.path for g in good],
        "raw_shapes": [list(r[0]) for r in rows],
        "raw_dtypes": [r[1] for r in rows],
        "raw_min": [r[2] for r in rows],
        "raw_max": [r[3] for r in rows],
        "skipped": [list(s) for s in skipped],
        "has_labels": has_labels,
        "label_values": sorted({v for r in rows for v in r[4]}) if has_labels else None,
        # files that failed to decode, re-tried on every cache hit (see _failures_fixed)
        "failed": [[i.case, i.week, i.slice, i.path, i.label_path] for i, m in zip(infos, meta) if m is None],
    }


def _from_doc(doc, images, labels, root) -> SliceSet:
    return SliceSet(
        split=doc["split"],
        root=Path(root),
        images=images,
        labels=labels,
        case=np.asarray(doc["case"], dtype=np.int64),
        week=np.asarray(doc["week"], dtype=np.int64),
        slice=np.asarray(doc["slice"], dtype=np.int64),
        paths=list(doc["paths"]),
        raw_shapes=[tuple(s) for s in doc["raw_shapes"]],
        raw_dtypes=list(doc["raw_dtypes"]),
        raw_min=np.asarray(doc["raw_min"], dtype=np.float64),
        raw_max=np.asarray(doc["raw_max"], dtype=np.float64),
        skipped=[tuple(s) for s in doc["skipped"]],
        label_values=doc["label_values"],
    )


def _load_cached(cdir: Path, root) -> SliceSet:
    doc = json.loads((cdir / "meta.json").read_text())
    images = np.load(cdir / "images.npy", mmap_mode="r")
    labels = np.load(cdir / "labels.npy", mmap_mode="r") if doc["has_labels"] else None
    return _from_doc(doc, images, labels, root)


# ----------------------------------------------------------------------------- where from


def resolve_data_dir(data_dir=None, data_cfg=None, *, progress: bool = True) -> Path:
    """The data folder to use: `data_dir`, else ``data_cfg.data_dir``, else $HIPMRI_DATA,
    else the built-in phantom, generated on first use into
    ``cache_dir()/phantom_{train}_{validate}_{test}_{slices}_s{seed}`` with the sizes in
    `data_cfg` (a `config.DataConfig`, default ``DataConfig()``). Returns the HipMRI root
    (see `find_root`); a given folder that is not one raises DataError."""
    cfg = data_cfg if data_cfg is not None else config.DataConfig()
    for value, source in (
        (data_dir, "data_dir"),
        (cfg.data_dir, "data.data_dir"),
        (os.environ.get(config.DATA_ENV), "$" + config.DATA_ENV),
    ):
        if value is not None and str(value) != "":
            try:
                return find_root(value)
            except DataError as e:
                raise DataError(f"{e} (from {source})") from None
    try:
        from .phantom import ensure_phantom  # lazy: only needed when no real data is given
    except ImportError as e:
        raise DataError(
            f"no data folder given and the built-in phantom is unavailable ({e}); "
            f"pass data_dir or set ${config.DATA_ENV}"
        ) from None
    sizes = (cfg.phantom_train, cfg.phantom_validate, cfg.phantom_test, cfg.phantom_slices)
    out = config.cache_dir() / ("phantom_" + "_".join(map(str, sizes)) + f"_s{cfg.phantom_seed}")
    ensure_phantom(
        out,
        n_train=cfg.phantom_train,
        n_validate=cfg.phantom_validate,
        n_test=cfg.phantom_test,
        n_slices=cfg.phantom_slices,
        seed=cfg.phantom_seed,
        progress=progress,
    )
    return find_root(out)


def describe(data_dir, skip_bad: bool = True, *, progress: bool = True) -> dict:
    """A JSON-ready census of a release (for ``hipgen info`` and the exploration notebook).

    ``{"root": str, "splits": {split: {...}}}`` where each present split has n_files,
    n_slices (loaded), n_case_weeks, shapes ``{"256x128": n, ...}`` (as stored, singleton
    dims included), dtypes ``{"float32": n}``, intensity_range ``[min, max]`` over raw voxels,
    labels (sorted label values in its label files, or None), skipped ``[[path, reason]]``;
    a missing or unreadable split has ``{"error": message}``. Uses `load_split` (and its
    cache) with the default shape and normalisation."""
    root = find_root(resolve_data_dir(data_dir))
    out = {"root": str(root), "splits": {}}
    for split in SPLITS:
        try:
            with warnings.catch_warnings():  # the skip summary is in the result instead
                warnings.simplefilter("ignore")
                s = load_split(root, split, skip_bad=skip_bad, progress=progress)
        except DataError as e:
            out["splits"][split] = {"error": str(e)}
            continue
        n_files = sum(
            1 for _ in os.scandir(root / image_folder(split)) if not _.name.startswith(".")
        )
        out["splits"][split] = {
            "folder": image_folder(split),
            "n_files": n_files,
            "n_slices": len(s),
            "n_case_weeks": len(set(zip(s.case.tolist(), s.week.tolist()))),
            "shapes": dict(Counter("x".join(map(str, t)) for t in s.raw_shapes)),
            "dtypes": dict(Counter(s.raw_dtypes)),
            "intensity_range": [float(s.raw_min.min()), float(s.raw_max.max())],
            "labels": s.label_values,
            "skipped": [list(x) for x in s.skipped],
        }
    return out


# ----------------------------------------------------------------------------- torch


class SliceDataset(Dataset):
    """A `SliceSet` as a torch Dataset: item ``i`` -> (``(1, H, W) float32`` in [0, 1],
    ``{"case", "week", "slice", "index"}`` ints)."""

    def __init__(self, sliceset: SliceSet):
        self.s = sliceset

    def __len__(self) -> int:
        return len(self.s)

    def __getitem__(self, i):
        # copy: the cache is a read-only memmap and torch wants writable memory
        x = torch.from_numpy(np.array(self.s.images[i], dtype=np.float32, copy=True))
        meta = {
            "case": int(self.s.case[i]),
            "week": int(self.s.week[i]),
            "slice": int(self.s.slice[i]),
            "index": int(i),
        }
        return x.unsqueeze(0), meta


def make_loader(
    sliceset: SliceSet,
    batch_size: int = 32,
    shuffle: bool = False,
    seed: int = 0,
    num_workers: int = 0,
) -> DataLoader:
    """Batches of ``(B, 1, H, W) float32`` images plus a dict of ``(B,) int64`` tensors
    (case, week, slice, index). Shuffling uses its own seeded torch.Generator, so the
    order depends only on `seed`."""
    gen = torch.Generator().manual_seed(int(seed)) if shuffle else None
    return DataLoader(
        SliceDataset(sliceset),
        batch_size=batch_size,
        shuffle=shuffle,
        generator=gen,
        num_workers=num_workers,
        persistent_workers=num_workers > 0,
    )
