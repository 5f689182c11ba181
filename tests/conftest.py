"""Shared fixtures: tiny HipMRI-layout folders and a private cache for every test."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

SPLITS = ("train", "validate", "test")
# Case numbers per split start here so the splits never share a case (as in the release).
_CASE_BASE = {"train": 1, "validate": 100, "test": 200}


@pytest.fixture(autouse=True)
def _private_cache(monkeypatch, tmp_path_factory):
    """Point $HIPGEN_CACHE at a fresh tmp dir and hide any real $HIPMRI_DATA."""
    monkeypatch.setenv("HIPGEN_CACHE", str(tmp_path_factory.mktemp("hipgen_cache")))
    monkeypatch.delenv("HIPMRI_DATA", raising=False)


def write_nifti(path, array, dtype=None) -> Path:
    """Save `array` as a NIfTI-1 file (``.nii`` or ``.nii.gz`` by suffix), identity affine."""
    array = np.asarray(array if dtype is None else array.astype(dtype))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    img = nib.Nifti1Image(array, np.eye(4))
    img.header.set_data_dtype(array.dtype)
    nib.save(img, str(path))
    return path


def smooth_image(rng, shape=(256, 128), scale=1000.0, dtype=np.float32) -> np.ndarray:
    """Smooth random 2-D image in [0, scale] (a few blobs, not the phantom), cast to dtype."""
    x = gaussian_filter(rng.standard_normal(shape), sigma=6)
    x = (x - x.min()) / (x.max() - x.min()) * scale
    if np.issubdtype(np.dtype(dtype), np.integer):
        x = np.rint(x)
    return x.astype(dtype)


def label_from(image) -> np.ndarray:
    """A label map 0..5 (uint8) made by cutting the image at its quantiles."""
    edges = np.quantile(image, [0.3, 0.5, 0.7, 0.85, 0.95])
    return np.digitize(image, edges).astype(np.uint8)


@pytest.fixture
def make_hipmri(tmp_path):
    """Factory writing a small HipMRI 2D-slice release and returning its root.

    ``make(root, n_case_weeks={"train": 2, "validate": 1, "test": 1}, n_slices=4,
    shape=(256, 128), dtype=np.float32, scale=1000.0, with_labels=True, singleton=False,
    seed=0)``. A relative `root` goes under the test's tmp_path. Case-week k of a split is
    case ``base + k // 2``, week ``k % 2``. Labels (uint8 0..5) are written when
    `with_labels`; `singleton` stores every slice as ``(H, W, 1)``.
    """

    def make(
        root="hipmri",
        n_case_weeks=None,
        n_slices=4,
        shape=(256, 128),
        dtype=np.float32,
        scale=1000.0,
        with_labels=True,
        singleton=False,
        seed=0,
    ) -> Path:
        root = Path(root)
        if not root.is_absolute():
            root = tmp_path / root
        if n_case_weeks is None:
            n_case_weeks = {"train": 2, "validate": 1, "test": 1}
        rng = np.random.default_rng(seed)
        for split, n_cw in n_case_weeks.items():
            (root / f"keras_slices_{split}").mkdir(parents=True, exist_ok=True)
            for k in range(n_cw):
                case, week = _CASE_BASE[split] + k // 2, k % 2
                for s in range(n_slices):
                    img = smooth_image(rng, shape, scale, dtype)
                    stem = f"{case:03d}_week_{week}_slice_{s}.nii.gz"
                    lab = label_from(img)
                    if singleton:
                        img, lab = img[..., None], lab[..., None]
                    write_nifti(root / f"keras_slices_{split}" / f"case_{stem}", img)
                    if with_labels:
                        write_nifti(root / f"keras_slices_seg_{split}" / f"seg_{stem}", lab)
        return root

    return make


@pytest.fixture
def one_torch_thread():
    """Tiny tensors: extra threads cost more than they save on a small shared CPU."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def nifti_writer():
    """`write_nifti(path, array, dtype=None) -> Path` for tests that add odd files."""
    return write_nifti
