"""Decode a split's files into arrays, in a process pool when it pays, and cache the arrays.

Decoding: `_decode_one` reads one slice and its label (`nifti`), checks them and brings the
image to the models' form (`preprocess`); `_decode_all` does that for every listed slice,
into the arrays it is given, in a process pool when there is more than one worker and at
least ``_POOL_MIN_FILES`` files. When those arrays are the cache's memory-mapped ``.npy``
files, the workers write into them directly.

The cache: one folder ``cache_dir()/slices/<_cache_key>/`` per split and settings, holding
``images.npy``, ``labels.npy`` (when the split has labels) and ``meta.json`` (`_meta_doc`:
everything but the pixels; an uncached load builds its `SliceSet` from the same document
with `_from_doc`). `_load_cached` memory-maps an entry back, files that failed to decode
are re-tried on every hit (`_failures_fixed`) and a stale entry is removed (`_discard`).
`data.load_split` drives all of this and publishes a new entry with one rename of a private
temp folder, so no reader ever sees half an entry.
"""

from __future__ import annotations

import concurrent.futures as cf
import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from .data_types import BadFileError, SliceInfo, SliceSet
from .layout import LABEL_NAMES, N_CLASSES
from .nifti import _read_nifti
from .preprocess import harmonise, normalise_with_notes, repair_nonfinite

# Bump when the decoding/normalisation code changes so old caches are not reused.
CACHE_VERSION = 3  # 2: decode failures are re-tried, never trusted; 3: NaN/Inf repair, intensity notes

# Below this many files a process pool costs more to start than it saves.
_POOL_MIN_FILES = 256
_CHUNK = 64


# ----------------------------------------------------------------------------- decoding


def _decode_one(info: SliceInfo, shape, mode, norm):
    """Read, check, repair, normalise and harmonise one slice (+ its label).

    Returns (image, label, header shape, raw dtype, raw min, raw max, label values, NaN/Inf
    voxels repaired, spike, bulk): see `preprocess.repair_nonfinite` and `normalise_with_notes`."""
    raw, hdr_shape = _read_nifti(info.path, allow_nonfinite=True)
    raw, n_nonfinite = repair_nonfinite(raw, info.path)
    normed, spike, bulk = normalise_with_notes(raw, norm, path=info.path)
    img = harmonise(normed, shape, mode)
    lab, values = None, None
    if info.label_path is not None:
        lraw, _ = _read_nifti(info.label_path)  # NaN in a label map: refused, no class to guess
        if lraw.shape != raw.shape:
            raise BadFileError(
                info.label_path,
                f"label map is {'x'.join(map(str, lraw.shape))} but its image is "
                f"{'x'.join(map(str, raw.shape))}; re-export the pair at one shape",
            )
        bad = (lraw < 0) | (lraw >= N_CLASSES) | (lraw != np.round(lraw))
        if bad.any():
            found = np.unique(lraw[bad])
            shown = ", ".join(f"{v:.6g}" for v in found[:5].tolist()) + (", ..." if len(found) > 5 else "")
            raise BadFileError(
                info.label_path,
                f"label values outside the integers 0..{N_CLASSES - 1} (found {shown} in "
                f"{int(bad.sum())} voxels); remap them to 0..{N_CLASSES - 1} "
                f"({', '.join(f'{i} {n}' for i, n in enumerate(LABEL_NAMES))})",
            )
        lraw = lraw.astype(np.uint8)
        values = np.flatnonzero(np.bincount(lraw.ravel(), minlength=N_CLASSES)).tolist()
        lab = harmonise(lraw, shape, mode, is_label=True)
    return (img, lab, hdr_shape, str(raw.dtype), float(raw.min()), float(raw.max()), values,
            n_nonfinite, spike, bulk)  # fmt: skip


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

    Returns (meta, bad): meta[i] = (raw shape, dtype, min, max, label values, NaN/Inf voxels
    repaired, spike, bulk), or None for a skipped file, whose (path, reason) is in bad[i]."""
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


# ----------------------------------------------------------------------------- cache


def _cache_key(root: Path, split, fingerprint, shape, mode, norm) -> str:
    """Hash of everything the decoded arrays depend on: the root, every file's name, size
    and mtime, the settings and CACHE_VERSION. skip_bad is left out on purpose: a load
    without it only succeeds (and caches) when no file is bad, so both settings can share
    one entry, and `hipgen info` (skip_bad=True) warms the cache for training."""
    blob = json.dumps([CACHE_VERSION, str(root), split, fingerprint, list(shape), mode, norm])
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


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


def _open_npy(path, dtype, shape):
    return np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=shape)


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
        "nonfinite": [r[5] for r in rows],
        "spike": [r[6] for r in rows],
        "bulk": [r[7] for r in rows],
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
        nonfinite=np.asarray(doc["nonfinite"], dtype=np.int64),
        spike=np.asarray(doc["spike"], dtype=np.float64),
        bulk=np.asarray(doc["bulk"], dtype=np.float64),
    )


def _load_cached(cdir: Path, root) -> SliceSet:
    doc = json.loads((cdir / "meta.json").read_text())
    images = np.load(cdir / "images.npy", mmap_mode="r")
    labels = np.load(cdir / "labels.npy", mmap_mode="r") if doc["has_labels"] else None
    return _from_doc(doc, images, labels, root)
