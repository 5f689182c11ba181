"""Writing the phantom in the HipMRI 2D-slice release layout, and reusing a written one.

Layout (as the real release)::

    root/keras_slices_{train,validate,test}/case_NNN_week_W_slice_S.nii.gz
    root/keras_slices_seg_{train,validate,test}/seg_NNN_week_W_slice_S.nii.gz
    root/PHANTOM.json   # parameters; written last, so its presence marks a complete phantom

Quirks of the release reproduced: one train case-week is 256x144, about 5 % of case-weeks
are stored as (H, W, 1), the intensity scale differs per case and some case-weeks are int16.
`_plan` decides which case-weeks go where and carry the quirks; every case-week then gets
its own random generator, so the files do not depend on generation order.
"""

from __future__ import annotations

import concurrent.futures as cf
import json
import os
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
from tqdm.auto import tqdm

from hipgen_utils.layout import (
    IMAGE_RE,
    LABEL_NAMES,
    LABEL_RE,
    SPLITS,
    image_folder,
    image_name,
    label_folder,
    label_name,
)
from hipgen_utils.phantom.anatomy import (
    DEFAULT_SHAPE,
    PIXEL_MM,
    SLICE_AXES,
    SLICE_MM,
    WIDE_SHAPE,
    sample_case,
    sample_week,
)
from hipgen_utils.phantom.canvas import _to_disk
from hipgen_utils.phantom.render import _Renderer

AFFINE = np.diag([PIXEL_MM, PIXEL_MM, SLICE_MM, 1.0])
PHANTOM_VERSION = 1  # bump when the drawing changes, so ensure_phantom regenerates
META_NAME = "PHANTOM.json"


def image_dir(root, split: str) -> Path:
    """``root/keras_slices_{split}`` (images)."""
    return Path(root) / image_folder(split)


def label_dir(root, split: str) -> Path:
    """``root/keras_slices_seg_{split}`` (label maps)."""
    return Path(root) / label_folder(split)


def _disk_shape(canonical):
    """On-disk (axis 0, axis 1) shape of a canonical (LR, AP) canvas."""
    return tuple(reversed(canonical)) if SLICE_AXES[0] in ("AP", "PA") else tuple(canonical)


def _params(n_train, n_validate, n_test, n_slices, seed) -> dict:
    names = ("n_train", "n_validate", "n_test", "n_slices", "seed")
    values = (n_train, n_validate, n_test, n_slices, seed)
    for name, v in zip(names, values):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0:
            raise ValueError(f"phantom {name}={v!r} must be a non-negative integer")
    if n_slices < 1 or n_train + n_validate + n_test < 1:
        raise ValueError(
            f"phantom needs n_slices >= 1 and at least one case-week (got {dict(zip(names, values))})"
        )
    return {k: int(v) for k, v in zip(names, values)}


def _plan(p: dict) -> dict:
    """Which cases and weeks go where, and which case-weeks carry the release's quirks.

    Depends only on the parameters; every case-week then gets its own RNG, so the arrays do
    not depend on generation order."""
    rng = np.random.default_rng(np.random.SeedSequence([p["seed"], 0]))
    weeks_per_case = {}
    for split in SPLITS:
        n, ks = p[f"n_{split}"], []
        while sum(ks) < n:
            ks.append(min(int(rng.integers(1, 6)), n - sum(ks)))  # a case has 1-5 weeks
        weeks_per_case[split] = ks
    n_cases = sum(len(k) for k in weeks_per_case.values())
    if n_cases > 999:
        raise ValueError(
            f"{n_cases} cases do not fit the release's 3-digit case numbers; ask for fewer case-weeks"
        )
    # case numbers interleave across splits, as in the release, but never repeat
    ids = [
        int(i)
        for i in rng.choice(
            np.arange(1, min(999, n_cases * 3 // 2 + 1) + 1), n_cases, replace=False
        )
    ]
    entries = []
    for split in SPLITS:
        take, ids = ids[: len(weeks_per_case[split])], ids[len(weeks_per_case[split]) :]
        rows = []
        for case, k in zip(sorted(take), weeks_per_case[split]):
            for week in sorted(int(x) for x in rng.choice(7, k, replace=False)):
                rows.append({"split": split, "case": case, "week": week})
        n = len(rows)
        wide = int(rng.integers(n)) if split == "train" and n >= 2 else -1
        n_single = max(1, round(0.05 * n)) if n >= 4 else 0
        single = set(int(i) for i in rng.choice(n, n_single, replace=False)) if n_single else set()
        n_int16 = max(1, round(0.15 * n)) if n >= 2 else 0
        int16 = set(int(i) for i in rng.choice(n, n_int16, replace=False)) if n_int16 else set()
        for i, row in enumerate(rows):
            row["shape"] = list(_disk_shape(WIDE_SHAPE if i == wide else DEFAULT_SHAPE))
            row["singleton"] = i in single
            row["dtype"] = "int16" if i in int16 else "float32"
        entries += rows
    return {"case_weeks": entries}


def _case_rng(seed, case):
    return np.random.default_rng(np.random.SeedSequence([seed, 1, case]))


def _week_rng(seed, split, case, week):
    return np.random.default_rng(np.random.SeedSequence([seed, 2, SPLITS.index(split), case, week]))


def _header(dtype):
    """A NIfTI-1 header with AFFINE and `dtype`, reused for every file (building the
    qform/sform from an affine costs more than compressing a slice)."""
    return nib.Nifti1Image(np.zeros((1, 1), dtype), AFFINE).header


def _write_case_week(root, row, case, seed, n_slices):
    """Sample the week, then render and save its slices; returns the week parameters."""
    split, cid, wk = row["split"], row["case"], row["week"]
    rng = _week_rng(seed, split, cid, wk)
    week = sample_week(rng, case)
    r = _Renderer(case, week, n_slices, row["shape"], rng)
    scale, dtype = case["scale"], np.dtype(row["dtype"])
    img_hdr, lab_hdr = _header(dtype), _header(np.uint8)
    idir, ldir = image_dir(root, split), label_dir(root, split)
    for s in range(n_slices):
        img, lab = r.render(s, rng)
        # scanner-like integer intensities at this case's scale (also gzips far faster)
        arr = np.rint(_to_disk(img) * scale)
        arr = np.clip(arr, 0, 32767).astype(dtype) if dtype == np.int16 else arr.astype(np.float32)
        lab = _to_disk(lab)
        if row["singleton"]:
            arr, lab = arr[..., None], lab[..., None]
        nib.save(nib.Nifti1Image(arr, None, header=img_hdr), str(idir / image_name(cid, wk, s)))
        nib.save(nib.Nifti1Image(lab, None, header=lab_hdr), str(ldir / label_name(cid, wk, s)))
    return week


def _write_job(job):
    """One case-week in a worker process (a top-level function, so it pickles)."""
    root, row, case, seed, n_slices = job
    return _write_case_week(root, row, case, seed, n_slices)


def _default_workers() -> int:
    return min(2, os.cpu_count() or 1)


def write_phantom(
    out_dir, n_train=191, n_validate=11, n_test=9, n_slices=60, seed=0, progress=True, workers=None
) -> Path:
    """Generate the phantom release into `out_dir` (replacing an older phantom there).

    Writes ``keras_slices_{split}/case_NNN_week_W_slice_S.nii.gz`` (image: float32 or int16,
    (H, W) or (H, W, 1), per-case scale 200-4000) and ``keras_slices_seg_{split}/seg_...``
    (uint8 labels 0..5) for n_train/n_validate/n_test case-weeks of `n_slices` slices, then
    ``PHANTOM.json`` with every parameter. Built in a hidden sibling folder and renamed into
    place at the end, so an interrupted run never looks complete. Deterministic in `seed`,
    whatever the number of `workers` (processes writing case-weeks at once; default
    ``min(2, cpu_count)``, as the loader): every case-week has its own RNG.
    Returns `out_dir` as a Path."""
    p = _params(n_train, n_validate, n_test, n_slices, seed)
    out = Path(out_dir).expanduser().resolve()
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"phantom output {out} is a file; pass a folder path")
    if out.is_dir() and any(out.iterdir()) and not (out / META_NAME).exists():
        raise FileExistsError(
            f"refusing to overwrite {out}: it is not empty and holds no {META_NAME}; pass a new or empty folder"
        )
    plan = _plan(p)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.partial-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        for split in SPLITS:
            image_dir(tmp, split).mkdir(parents=True)
            label_dir(tmp, split).mkdir(parents=True)
        rows, cases = plan["case_weeks"], {}
        for row in rows:  # the case parameters first (cheap), then the slices
            key = f"{row['case']:03d}"
            if key not in cases:
                cases[key] = sample_case(_case_rng(p["seed"], row["case"]))
        jobs = [(tmp, row, cases[f"{row['case']:03d}"], p["seed"], p["n_slices"]) for row in rows]
        workers = _default_workers() if workers is None else max(1, int(workers))
        pool = cf.ProcessPoolExecutor(min(workers, len(rows))) if workers > 1 and len(rows) > 1 else None
        try:
            weeks = map(_write_job, jobs) if pool is None else pool.map(_write_job, jobs)
            with tqdm(total=len(rows) * p["n_slices"], desc="phantom", unit="slice", disable=not progress) as bar:
                for row, week in zip(rows, weeks):  # in plan order, whichever process wrote it
                    row["params"] = week
                    bar.update(p["n_slices"])
        finally:  # on a failure, do not wait for the rest of the case-weeks to be written
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)
        meta = {
            "format": "hipgen-phantom",
            "version": PHANTOM_VERSION,
            "params": p,
            "slice_axes": list(SLICE_AXES),
            "pixel_mm": PIXEL_MM,
            "slice_mm": SLICE_MM,
            "label_names": list(LABEL_NAMES),
            "cases": cases,
            "case_weeks": plan["case_weeks"],
        }
        (tmp / META_NAME).write_text(json.dumps(meta, indent=1))
        try:
            if out.exists():
                old = out.parent / f".{out.name}.old-{os.getpid()}"
                os.replace(out, old)
                os.replace(tmp, out)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(tmp, out)
        except OSError:
            if not _is_complete(out, p):  # another process may have just finished the same
                raise
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def phantom_meta(root) -> dict | None:
    """The PHANTOM.json of a phantom folder, or None when absent or unreadable."""
    try:
        return json.loads((Path(root) / META_NAME).read_text())
    except (OSError, ValueError):
        return None


def _is_complete(root: Path, p: dict) -> bool:
    meta = phantom_meta(root)
    if not meta or meta.get("version") != PHANTOM_VERSION or meta.get("params") != p:
        return False
    if meta.get("slice_axes") != list(SLICE_AXES):
        return False
    for split in SPLITS:
        want = p[f"n_{split}"] * p["n_slices"]
        for folder, pattern in (
            (image_dir(root, split), IMAGE_RE),
            (label_dir(root, split), LABEL_RE),
        ):
            try:
                have = sum(1 for e in os.scandir(folder) if pattern.match(e.name))
            except OSError:
                return False
            if have != want:
                return False
    return True


def ensure_phantom(
    out_dir, n_train=191, n_validate=11, n_test=9, n_slices=60, seed=0, progress=True, workers=None
) -> Path:
    """`out_dir` as a Path, holding a complete phantom with these parameters.

    Reuses what is there when its PHANTOM.json matches (same parameters and phantom
    version, all files present); otherwise (re)generates it with `write_phantom`."""
    p = _params(n_train, n_validate, n_test, n_slices, seed)
    out = Path(out_dir).expanduser().resolve()
    if _is_complete(out, p):
        return out
    return write_phantom(out, **p, progress=progress, workers=workers)
