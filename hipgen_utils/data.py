"""HipMRI 2D-slice data: find the release, list its splits, load a split into a `SliceSet`.

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
What is kept but changed (resized slices, a few NaN/Inf voxels repaired, intensity spikes
clipped) or looks wrong (slices left nearly black) is counted in one warning line per kind.
docs/data.md says all of it for users.

The parts that stand on their own live beside this module: `nifti` reads one file,
`preprocess` normalises and harmonises one slice, `decode_cache` decodes many files and
caches the arrays, `data_report` words the load's warnings and the census, `data_types`
defines the errors, `SliceInfo` and `SliceSet`. Import those types, `read_nifti_slice` and
`census_lines` from here. This module is the path from a folder to a
`SliceSet` and is over 400 lines for that reason: the listing decides which files are bad,
unpaired or orphaned and `load_split` acts on those decisions (and publishes a cache entry
as one transaction), so a file can be followed from the disk to its row in one place.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import warnings
from collections import Counter
from pathlib import Path

import numpy as np

from . import config
from .data_report import census_lines, finding_files, intensity_findings, load_report  # noqa: F401 (re-exported)
from .data_types import BadFileError, DataError, SliceInfo, SliceSet
from .decode_cache import (
    _cache_key,
    _decode_all,
    _discard,
    _failures_fixed,
    _from_doc,
    _load_cached,
    _meta_doc,
    _open_npy,
)
from .layout import FILE_RE as _NAME_RE
from .layout import LABEL_NAMES, N_CLASSES, SPLITS, image_folder, label_folder  # noqa: F401 (re-exported)
from .nifti import is_nifti_name, read_nifti_slice  # noqa: F401 (read_nifti_slice re-exported)
from .preprocess import IMAGE_SHAPE, NORMS, RESIZE_MODES

_ORPHAN = "label file with no matching image (ignored)"


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
        elif not is_nifti_name(name):
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


# ----------------------------------------------------------------------------- loading


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
    (`resize_mode`, see `preprocess.harmonise`). With `cache` the arrays are stored under
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
        _report(sset, n_files, shape, resize_mode, norm)
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
        _report(sset, n_files, shape, resize_mode, norm)
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
    _report(sset, n_files, shape, resize_mode, norm)
    return sset


def _report(sset: SliceSet, n_files, shape, mode, norm):
    """The load's warning lines (`data_report.load_report`), one warning each."""
    for line in load_report(sset, n_files, shape, mode, norm):
        warnings.warn(line, stacklevel=3)


def _check_some_left(doc, root, split):
    if not doc["paths"]:
        raise DataError(
            f"{root / image_folder(split)}: all {len(doc['skipped'])} files were bad, "
            f"e.g. {doc['skipped'][0][0]}: {doc['skipped'][0][1]}"
        )


# ----------------------------------------------------------------------------- where from


def resolve_data_dir(
    data_dir=None, data_cfg=None, *, progress: bool = True, workers: int | None = None
) -> Path:
    """The data folder to use: `data_dir`, else ``data_cfg.data_dir``, else $HIPMRI_DATA,
    else the built-in phantom, generated on first use into
    ``cache_dir()/phantom_{train}_{validate}_{test}_{slices}_s{seed}`` with the sizes in
    `data_cfg` (a `config.DataConfig`, default ``DataConfig()``) by `workers` processes
    (default ``min(2, cpu_count)``). Returns the HipMRI root (see `find_root`); a given
    folder that is not one raises DataError."""
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
        workers=workers,
    )
    return find_root(out)


def describe(data_dir, skip_bad: bool = True, *, progress: bool = True) -> dict:
    """A JSON-ready census of a release (for ``hipgen info`` and the exploration notebook).

    ``{"root": str, "splits": {split: {...}}}`` where each present split has n_files,
    n_slices (loaded), n_case_weeks, shapes ``{"256x128": n, ...}`` (as stored, singleton
    dims included), dtypes ``{"float32": n}``, intensity_range ``[min, max]`` over raw voxels,
    labels (sorted label values in its label files, or None), skipped ``[[path, reason]]``,
    the slices `intensity_findings` speaks of (nonfinite ``[[path, voxels repaired]]``,
    spikes ``[[path, spike]]``, nearly_black ``[[path, 90th percentile]]``) and its lines
    (findings); a missing or unreadable split has ``{"error": message}``. Uses `load_split`
    (and its cache) with the default shape and normalisation."""
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
            **finding_files(s),
            "findings": intensity_findings(s),
        }
    return out
