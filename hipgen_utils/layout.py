"""The HipMRI release's layout, in one place: split names, folder and file names, label classes.

    <root>/keras_slices_{train,validate,test}/case_NNN_week_W_slice_S.nii.gz      images
    <root>/keras_slices_seg_{train,validate,test}/seg_NNN_week_W_slice_S.nii.gz   labels (optional)

The loader (`hipgen_utils.data`) reads it, the phantom (`hipgen_utils.phantom`) writes it,
and plotting, codes and the pipeline name splits and classes from here.
"""

from __future__ import annotations

import re

SPLITS = ("train", "validate", "test")
# label values 0..5 in the seg_ files
LABEL_NAMES = ("background", "body", "bones", "bladder", "rectum", "prostate")
N_CLASSES = len(LABEL_NAMES)

# what the loader accepts: case_/seg_ names, any number of case digits, .nii or .nii.gz in
# any letter case (some exporters write .NII.GZ; the prefix and the rest stay lower case)
FILE_RE = re.compile(r"^(case|seg)_(\d+)_week_(\d+)_slice_(\d+)\.(?i:nii(?:\.gz)?)$")
# what the release (and the phantom) writes: three case digits, gzipped
IMAGE_RE = re.compile(r"^case_(\d{3})_week_(\d+)_slice_(\d+)\.nii\.gz$")
LABEL_RE = re.compile(r"^seg_(\d{3})_week_(\d+)_slice_(\d+)\.nii\.gz$")


def image_folder(split: str) -> str:
    """``keras_slices_{split}`` (images)."""
    return f"keras_slices_{split}"


def label_folder(split: str) -> str:
    """``keras_slices_seg_{split}`` (label maps)."""
    return f"keras_slices_seg_{split}"


def image_name(case: int, week: int, slice_idx: int) -> str:
    """``case_NNN_week_W_slice_S.nii.gz``."""
    return f"case_{case:03d}_week_{week}_slice_{slice_idx}.nii.gz"


def label_name(case: int, week: int, slice_idx: int) -> str:
    """``seg_NNN_week_W_slice_S.nii.gz``."""
    return f"seg_{case:03d}_week_{week}_slice_{slice_idx}.nii.gz"
