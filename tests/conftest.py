"""Shared fixtures: tiny HipMRI-layout folders and a private cache for every test."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from hipgen_utils.cli import main as cli_main

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


# a tiny end-to-end run (VQ-VAE + prior + codes) trained through the CLI, shared by
# test_cli.py and test_pipeline.py
TINY_VQ = [
    "--profile",
    "ci",
    "--n_updates",
    "4",
    "--log_interval",
    "2",
    "--batch_size",
    "4",
    "--device",
    "cpu",
]
TINY_PRIOR = [
    "--profile",
    "ci",
    "--n_updates",
    "1",
    "--log_interval",
    "1",
    "--batch_size",
    "4",
    "--n_slices",
    "4",
    "--device",
    "cpu",
]


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
    """A data folder and a run dir with a VQ-VAE and a prior, trained through the CLI."""
    mp = pytest.MonkeyPatch()
    cache = tmp_path_factory.mktemp("cache")
    mp.setenv("HIPGEN_CACHE", str(cache))
    root = tmp_path_factory.mktemp("hipmri")
    rng = np.random.default_rng(0)
    for split, base in (("train", 1), ("validate", 100), ("test", 200)):
        for s in range(4):
            img = smooth_image(rng)
            write_nifti(
                root / f"keras_slices_{split}" / f"case_{base:03d}_week_0_slice_{s}.nii.gz", img
            )
            write_nifti(
                root / f"keras_slices_seg_{split}" / f"seg_{base:03d}_week_0_slice_{s}.nii.gz",
                label_from(img),
            )
    run_dir = tmp_path_factory.mktemp("run")
    assert (
        cli_main(
            [
                "train",
                "--mode",
                "vq_vae",
                "--data_dir",
                str(root),
                "--run_dir",
                str(run_dir),
                *TINY_VQ,
            ]
        )
        == 0
    )
    assert cli_main(["train", "--mode", "pixelcnn", "--run_dir", str(run_dir), *TINY_PRIOR]) == 0
    yield root, run_dir
    mp.undo()


@pytest.fixture(scope="session")
def trained_parts(trained):
    """The tiny trained run loaded: (prior, vqvae, codes, {"train", "test"} splits, run_dir)."""
    from hipgen_utils.run import Run

    root, run_dir = trained
    run = Run.at(run_dir, data_dir=root)
    splits = run.splits("train", "test", progress=False)
    return run.prior(), run.vqvae(), run.codes(), splits, run_dir


# ---- small synthetic images for the metric tests (test_metrics, test_sample_quality)

BLOB_HW = (64, 32)  # small images keep the tests fast; features resize to 128x64 anyway


def blobs(n: int, seed: int, h: int = BLOB_HW[0], w: int = BLOB_HW[1]) -> np.ndarray:
    """(n, h, w) float32 in [0, 1]: a few smooth Gaussian blobs per image."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    out = np.zeros((n, h, w), dtype=np.float64)
    for i in range(n):
        for _ in range(3):
            cy, cx = rng.uniform(0.2, 0.8) * h, rng.uniform(0.2, 0.8) * w
            s = rng.uniform(0.08, 0.2) * w
            out[i] += rng.uniform(0.5, 1.0) * np.exp(
                -((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * s**2)
            )
        out[i] /= out[i].max()
    return out.astype(np.float32)


def noise(n: int, seed: int, h: int = BLOB_HW[0], w: int = BLOB_HW[1]) -> np.ndarray:
    return np.random.default_rng(seed).random((n, h, w), dtype=np.float32)
