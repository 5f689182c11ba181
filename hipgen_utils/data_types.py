"""The data layer's types: its two errors, `SliceInfo` (one listed image file and its label
file) and `SliceSet` (one decoded split).

They sit below `hipgen_utils.data` so that `nifti`, `preprocess` and `decode_cache`, which
data.py imports, can raise and build them without importing data.py back. Code outside the
data layer imports them from `hipgen_utils.data`, which re-exports them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


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


@dataclass
class SliceSet:
    """One decoded split.

    images: ``(N, H, W) float32`` in [0, 1] (may be a read-only np.memmap);
    labels: ``(N, H, W) uint8`` 0..5, or None when the release has no labels for the split;
    case/week/slice: ``(N,) int64``; paths: image file per row; raw_*: per file, as stored
    (shape incl. singleton dims, dtype, min, max); skipped: ``(path, reason)`` of files left
    out; label_values: sorted label values found in the split's label files (or None);
    nonfinite: per row, the NaN/Inf voxels set to the slice's finite extremes before
    normalising; spike, bulk: per row, how far the raw slice's brightest voxel lies above its
    99.5th percentile (in robust ranges) and the 90th percentile of the normalised slice
    (`preprocess.normalise_with_notes`; None where not measured)."""

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
    nonfinite: np.ndarray | None = None
    spike: np.ndarray | None = None
    bulk: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.images)

    def __repr__(self) -> str:
        lab = "no labels" if self.labels is None else "labels"
        return (
            f"SliceSet({self.split!r}, {len(self)} slices of {tuple(self.images.shape[1:])}, "
            f"{lab}, {len(self.skipped)} skipped, root={str(self.root)!r})"
        )
