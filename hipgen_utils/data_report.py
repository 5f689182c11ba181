"""What a load says about the data: one line per kind of finding, never a line per file.

`load_report` gives the lines `data.load_split` warns with: files skipped (with the three
commonest reasons), slices of another shape (resized or cropped), slices whose NaN/Inf voxels
were repaired, slices with voxels far above the rest, slices left nearly black by the
normalisation. Each line counts its slices and names one file. `census_lines` turns
`data.describe`'s census into the text ``hipgen info`` and notebook 01 print, listing the
files behind each finding. Both only read a `SliceSet` or the census dict: no file is opened.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from .data_types import SliceSet
from .layout import image_folder
from .preprocess import DARK_BULK, SPIKE_RANGES

CENSUS_LIST = 10  # files listed per kind of finding in `census_lines` (--json lists all)


def skipped_line(skipped, n_files: int, split: str) -> str | None:
    """``skipped N of M files in keras_slices_<split>: <the three commonest reasons>``, or None."""
    if not skipped:
        return None
    why = Counter(r.split(" (")[0].split(";")[0] for _, r in skipped)
    top = ", ".join(f"{c} {r}" for r, c in why.most_common(3))
    return f"skipped {len(skipped)} of {n_files} files in {image_folder(split)}: {top} (see .skipped)"


def resized_line(sset: SliceSet, shape, mode: str) -> str | None:
    """The line for slices that were not `shape` on disk (e.g. 256x144, 512x256): they were
    resized or centre-cropped to it, which changes what the model sees. None when all were."""
    odd = Counter(
        "x".join(map(str, core))
        for core in (tuple(d for d in s if d != 1) for s in sset.raw_shapes)
        if core != tuple(shape)
    )
    if not odd:
        return None
    how = "resized" if mode == "resize" else "centre-cropped/padded"
    shapes = ", ".join(f"{n} of {s}" for s, n in odd.most_common())
    return (
        f"{image_folder(sset.split)}: {sum(odd.values())} of {len(sset)} slices are not "
        f"{shape[0]}x{shape[1]} on disk ({shapes}) and were {how} to it"
    )


def flagged(sset: SliceSet) -> dict[str, np.ndarray]:
    """The rows behind each intensity finding: ``nonfinite`` (NaN/Inf voxels repaired),
    ``spikes`` (voxels above `preprocess.SPIKE_RANGES`), ``nearly_black`` (bulk below
    `preprocess.DARK_BULK`); no rows where the SliceSet lacks the measure (one built by hand)."""
    def rows(values, test):
        return np.flatnonzero(test(values)) if values is not None else np.zeros(0, dtype=int)

    return {
        "nonfinite": rows(sset.nonfinite, lambda v: v > 0),
        "spikes": rows(sset.spike, lambda v: v > SPIKE_RANGES),
        "nearly_black": rows(sset.bulk, lambda v: v < DARK_BULK),
    }


def intensity_findings(sset: SliceSet, norm: str = "robust") -> list[str]:
    """One line per finding about the split's intensities (none when there is nothing to say):
    slices whose NaN/Inf voxels were repaired (`preprocess.repair_nonfinite`), slices with
    voxels far above the rest (`preprocess.SPIKE_RANGES`) and slices left nearly black by
    the normalisation (`preprocess.DARK_BULK`), each with its count and a file (`flagged`)."""
    lines, n, folder, hits = [], len(sset), image_folder(sset.split), flagged(sset)
    hit = hits["nonfinite"]
    if len(hit):
        lines.append(
            f"{folder}: {len(hit)} of {n} slices had NaN/Inf voxels ({int(sset.nonfinite.sum())} in all, at most "
            f"{int(sset.nonfinite.max())} in one), set to the slice's lowest (NaN, -Inf) or highest (+Inf) finite "
            f"value before normalising, e.g. {sset.paths[hit[0]]}"
        )  # fmt: skip
    hit = hits["spikes"]
    if len(hit):
        worst = hit[np.argmax(sset.spike[hit])]
        what = ("the robust normalisation clipped them to 1 and kept the rest of each slice's contrast"
                if norm == "robust" else
                f"norm={norm!r} lets them set the scale, so the rest of these slices is dark: use norm='robust'")  # fmt: skip
        lines.append(
            f"{folder}: {len(hit)} of {n} slices have voxels far above the rest (up to "
            f"{sset.spike[worst]:.3g} times the slice's 0.5-99.5 percentile range above its 99.5th percentile, "
            f"in {sset.paths[worst]}); {what}"
        )  # fmt: skip
    hit = hits["nearly_black"]
    if len(hit):
        worst = hit[np.argmin(sset.bulk[hit])]
        lines.append(
            f"{folder}: {len(hit)} of {n} slices are nearly black after normalisation (90 % of their voxels "
            f"below {DARK_BULK:g}: a bright region larger than 0.5 % of the slice set the scale; darkest "
            f"{sset.paths[worst]}); look at them (hipgen info lists them) and fix or remove them"
        )  # fmt: skip
    return lines


def load_report(sset: SliceSet, n_files: int, shape, mode: str, norm: str) -> list[str]:
    """Every line a load of `sset` says, in this order: skipped files, resized slices,
    intensity findings. `n_files`: the entries in the split's image folder."""
    lines = [skipped_line(sset.skipped, n_files, sset.split), resized_line(sset, shape, mode)]
    return [line for line in lines if line] + intensity_findings(sset, norm)


def finding_files(sset: SliceSet) -> dict:
    """The files behind `intensity_findings`, JSON-ready: nonfinite ``[[path, voxels
    repaired]]``, spikes ``[[path, spike]]``, nearly_black ``[[path, 90th percentile]]``."""
    values = {"nonfinite": sset.nonfinite, "spikes": sset.spike, "nearly_black": sset.bulk}
    return {key: [[sset.paths[i], values[key][i].item()] for i in rows] for key, rows in flagged(sset).items()}


def census_lines(info: dict) -> list[str]:
    """`data.describe`'s census as text lines, as ``hipgen info`` and notebook 01 print it: the
    root, then per split its files, case-weeks, shapes, dtypes, raw intensity range, label
    values and skipped count, then each skipped file with its reason, then the intensity
    findings with up to CENSUS_LIST of their files. A split without labels says what needs them."""
    lines = [f"HipMRI data at {info['root']}"]
    for split, d in info["splits"].items():
        if "error" in d:
            lines.append(f"  {split:9s} {d['error']}")
            continue
        lo, hi = d["intensity_range"]
        lines.append(f"  {split:9s} {d['n_files']:6d} files, {d['n_case_weeks']:3d} case-weeks  "
                     f"shapes {d['shapes']}  dtypes {d['dtypes']}")  # fmt: skip
        labels = d["labels"] if d["labels"] is not None else (
            f"none (no keras_slices_seg_{split}/; the anatomy judge, notebook 07, needs them)")  # fmt: skip
        lines.append(f"            raw intensity [{lo:.3g}, {hi:.3g}]  labels {labels}  "
                     f"skipped {len(d['skipped'])}")  # fmt: skip
        lines.extend(f"            skipped {path}: {why}" for path, why in d["skipped"])
        lines.extend(f"            {line}" for line in d.get("findings", []))
        for finding, key, fmt in (("NaN/Inf voxels repaired", "nonfinite", "{:d}"),
                                  ("far above the rest", "spikes", "{:.3g} ranges"),
                                  ("nearly black", "nearly_black", "90th percentile {:.3f}")):  # fmt: skip
            found = d.get(key, [])
            lines.extend(f"            {finding}: {path} ({fmt.format(v)})" for path, v in found[:CENSUS_LIST])
            if len(found) > CENSUS_LIST:
                lines.append(f"            {finding}: ... {len(found) - CENSUS_LIST} more (hipgen info --json lists all)")
    return lines
