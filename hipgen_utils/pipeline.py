"""The pipeline's steps as plain functions, shared by the notebooks and the CLI.

Each function does one step end to end (load, train, evaluate, generate) on top of the
modules that hold the logic, so a notebook cell and a CLI command run the same code.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import nibabel as nib
import numpy as np
import torch

from hipgen_utils.checkpoints import WriteError, write_error
from hipgen_utils.codes import codebook_usage, decode_codes, encode_images
from hipgen_utils.config import CODE_GRID, DataConfig
from hipgen_utils.data import load_split, resolve_data_dir
from hipgen_utils.layout import SPLITS
from hipgen_utils.metrics import (
    evenly_spaced,
    psnr_per_image,
    reconstruction_summary,
    sample_unigram_codes,
    ssim_per_image,
    unigram_bits_per_code,
)
from hipgen_utils.notices import loader_notices
from hipgen_utils.sample_quality import sample_quality
from hipgen_utils.sampling import keep_first, sample
from hipgen_utils.training import bits_per_code


def load_splits(data_cfg: DataConfig | None = None, splits=SPLITS, progress=True) -> dict:
    """{split: SliceSet} for the configured data (real via data_dir/$HIPMRI_DATA, else the phantom).
    What the loader reports (resized slices, skipped files) is passed on as a
    `notices.DataNotice`, attributed to the caller (a notebook prints it as one plain line)."""
    data_cfg = data_cfg or DataConfig()
    root = resolve_data_dir(data_cfg.data_dir, data_cfg)
    with loader_notices():
        loaded = {
            s: load_split(
                root, s, shape=(data_cfg.height, data_cfg.width), resize_mode=data_cfg.resize_mode,
                norm=data_cfg.norm, skip_bad=data_cfg.skip_bad, progress=progress,
            )  # fmt: skip
            for s in splits
        }
    return loaded


def reconstruction_report(model, images, device=None, progress=False) -> tuple[dict, dict]:
    """Reconstruct (N, H, W) images (device=None: the model's own); returns (summary, per_image)
    where per_image has ``recons`` (N, H, W) float32 [0, 1], ``ssim`` (N,), ``psnr`` (N,),
    ``codes`` (N, h, w)."""
    images = np.asarray(images, dtype=np.float32)
    codes = encode_images(model, images, device=device, progress=progress)
    recons = decode_codes(model, codes, device=device, progress=progress)
    ssim, psnr = ssim_per_image(images, recons), psnr_per_image(images, recons)
    summary = reconstruction_summary(ssim, psnr)
    usage = codebook_usage(codes, model.quantizer.n_embeddings)
    summary["perplexity"] = float(usage["perplexity"])
    summary["codes_used"] = int(usage["codes_used"])
    return summary, {"recons": recons, "ssim": ssim, "psnr": psnr, "codes": codes, "usage": usage["counts"]}


def slice_conditions(prior, n: int, slices: np.ndarray | None, seed: int = 0):
    """Conditions for `n` samples: drawn from `slices` (the data's slice positions) when the
    prior is conditional, else None. Only positions the prior was trained on
    (0..n_conditions-1) are drawn: others in `slices` are left out; with none left, or no
    `slices`, the draw is uniform over 0..n_conditions-1."""
    if not getattr(prior, "n_conditions", 0):
        return None
    rng = np.random.default_rng(seed)
    pool = np.asarray([] if slices is None else slices).astype(np.int64).reshape(-1)
    pool = pool[(pool >= 0) & (pool < prior.n_conditions)]
    if len(pool) == 0:
        pool = np.arange(prior.n_conditions)
    return torch.as_tensor(rng.choice(pool, size=n), dtype=torch.long)


def spread_slices(prior, n: int):
    """Conditions for a display of `n` samples: slice positions evenly spaced from the lowest
    to the highest the prior was trained on (0..n_conditions-1; repeated when n is larger),
    as an (n,) int64 tensor; None for an unconditional prior. Notebook 06 and `hipgen predict`
    show samples spread over the pelvis this one way (measurements draw from the data's own
    positions instead: `slice_conditions`)."""
    if not getattr(prior, "n_conditions", 0):
        return None
    return torch.as_tensor(np.linspace(0, prior.n_conditions - 1, n).round().astype(np.int64))


def generate(prior, vqvae, n, *, temperature=1.0, top_k=None, seed=0, condition=None,
             prefix=None, shape=CODE_GRID, device=None, progress=False, lead_lines=0):  # fmt: skip
    """Sample `n` (h, w) code grids from the prior and decode them:
    (codes (n, h, w) int64, images (n, 4h, 4w) float32 in [0, 1]). device=None: each model's
    own device. `prefix`, `lead_lines`: see `sampling.sample` / `sampling.keep_first`."""
    codes = sample(
        prior, n, temperature=temperature, top_k=top_k or None, seed=seed, condition=condition,
        prefix=prefix, shape=shape, device=device, progress=progress, lead_lines=lead_lines,
    )  # fmt: skip
    return codes.numpy(), decode_codes(vqvae, codes.numpy(), device=device)


def lowest_slices(slices, n: int, max_slice: int) -> np.ndarray:
    """Indices of `n` slices at positions <= `max_slice` (the femoral heads' levels for the
    default 12), spread evenly over those positions, lowest first. A ValueError names the
    count when fewer than `n` are that low."""
    slices = np.asarray(slices).reshape(-1)
    low = np.flatnonzero(slices <= max_slice)
    if len(low) < n:
        raise ValueError(f"only {len(low)} slices at positions <= {max_slice}; ask for at most {len(low)}")

    low = low[np.argsort(slices[low], kind="stable")]
    return low[evenly_spaced(len(low), n)]


def complete_slices(prior, vqvae, codes, slices=None, *, fraction=0.5, temperature=1.0, seed=0,
                    device=None, lead_lines=0, top_k=None) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Completions of (N, H, W) code grids: the first `fraction` of each grid's code rows kept
    (the left half of the slice), the rest sampled; (codes (N, H, W),
    images (N, 4H, 4W)) as `generate` returns them. `slices`: the grids' slice positions,
    the condition of a conditional prior (ignored by an unconditional one)."""
    codes = np.asarray(codes).astype(np.int64)
    cond = None
    if getattr(prior, "n_conditions", 0):
        if slices is None:
            raise ValueError("this prior is conditional on slice position: pass the grids' slices")
        cond = [int(s) for s in np.asarray(slices).reshape(-1)]
    return generate(prior, vqvae, len(codes), temperature=temperature, top_k=top_k, seed=seed, condition=cond,
                    prefix=keep_first(codes, fraction), shape=codes.shape[1:], device=device,
                    lead_lines=lead_lines)  # fmt: skip


def prior_report(prior, vqvae, codes: dict, splits: dict, *, n_samples=64, temperature=1.0,
                 seed=0, device=None, progress=False, lead_lines=0, top_k=None) -> tuple[dict, dict]:  # fmt: skip
    """Bits per code of the prior vs the unigram baseline, and measured sample quality.

    Returns (summary, arrays) with arrays = samples, unigram images, nn SSIM per sample."""
    k = codes["n_embeddings"]
    cond_test = codes["slice_test"] if prior.n_conditions else None
    summary = {
        "pixelcnn_bits_per_code_test": bits_per_code(prior, codes["codes_test"], cond_test, device),
        "unigram_bits_per_code": unigram_bits_per_code(codes["codes_train"], codes["codes_test"], k),
    }
    summary["bits_ratio_vs_unigram"] = summary["pixelcnn_bits_per_code_test"] / summary["unigram_bits_per_code"]
    h, w = codes["codes_train"].shape[1:]
    cond = slice_conditions(prior, n_samples, codes["slice_test"], seed)
    sample_codes, samples = generate(
        prior, vqvae, n_samples, temperature=temperature, top_k=top_k, seed=seed, condition=cond,
        shape=(h, w), device=device, progress=progress, lead_lines=lead_lines,
    )  # fmt: skip
    uni = decode_codes(vqvae, sample_unigram_codes(codes["codes_train"], n_samples, (h, w), k, seed=seed), device=device)
    q = sample_quality(
        samples, np.asarray(splits["train"].images), np.asarray(splits["test"].images), uni, seed=seed
    )
    summary.update(q)
    summary["n_samples"] = int(n_samples)
    return summary, {"samples": samples, "sample_codes": sample_codes, "unigram": uni}


def samples_at_temperatures(prior, vqvae, temperatures, n, *, seed=0, condition=None, shape=CODE_GRID,
                            device=None, progress=False, lead_lines=0, top_k=None) -> list[np.ndarray]:  # fmt: skip
    """`n` decoded samples at each temperature (a list of (n, H, W) float32 arrays), with the
    same seed, slice positions and top-k, so they differ only in the temperature."""
    return [
        generate(prior, vqvae, n, temperature=float(t), top_k=top_k, seed=seed, condition=condition, shape=shape,
                 device=device, progress=progress, lead_lines=lead_lines)[1]  # fmt: skip
        for t in temperatures
    ]


def temperature_sweep(prior, vqvae, codes: dict, splits: dict, temperatures=(0.7, 0.8, 0.9, 1.0), *,
                      n_samples=64, seed=0, device=None, progress=False, lead_lines=0, top_k=None) -> list[dict]:  # fmt: skip
    """Measured sample quality at each temperature: one dict per temperature with
    "temperature" and the `sample_quality.sample_quality` keys (Fréchet distance with its
    floor and ceiling, nearest-neighbour SSIM, near-copies). Same seed and slice positions at
    every temperature, so the rows differ only in the temperature."""
    temps = [float(t) for t in temperatures]
    if not temps or min(temps) <= 0:
        raise ValueError(f"temperature_sweep: temperatures {temps} must be a non-empty list of values > 0")
    k = codes["n_embeddings"]
    h, w = codes["codes_train"].shape[1:]
    cond = slice_conditions(prior, n_samples, codes["slice_test"], seed)
    uni = decode_codes(vqvae, sample_unigram_codes(codes["codes_train"], n_samples, (h, w), k, seed=seed), device=device)
    train, test = np.asarray(splits["train"].images), np.asarray(splits["test"].images)
    images = samples_at_temperatures(prior, vqvae, temps, n_samples, seed=seed, condition=cond, shape=(h, w),
                                     device=device, progress=progress, lead_lines=lead_lines, top_k=top_k)  # fmt: skip
    rows = [{"temperature": t, **sample_quality(im, train, test, uni, seed=seed)} for t, im in zip(temps, images)]
    return rows


def write_nifti_samples(images, out_dir, prefix="sample", replaced=()) -> list[Path]:
    """One NIfTI per (H, W) image (float32, 1.7 mm in-plane like the phantom), openable in any
    MR viewer, as ``out_dir/<prefix>_000.nii.gz`` ...

    All or nothing: the files are written into a hidden folder inside `out_dir` and moved in
    once every one is complete, after the files `replaced` (the earlier samples that
    ``--overwrite`` replaces) are deleted. A failed write (a full disk) removes the partial
    set, leaves `replaced` where they were and raises `checkpoints.WriteError`."""
    out_dir = Path(out_dir)
    staging = None
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{prefix}-partial-", dir=out_dir))
        for i, img in enumerate(np.asarray(images, dtype=np.float32)):
            nib.save(nib.Nifti1Image(img, np.diag([1.7, 1.7, 3.0, 1.0])), staging / f"{prefix}_{i:03d}.nii.gz")
        for f in replaced:
            Path(f).unlink(missing_ok=True)
        paths = []
        for f in sorted(staging.iterdir()):
            os.replace(f, out_dir / f.name)
            paths.append(out_dir / f.name)
    except WriteError:
        raise
    except OSError as e:
        raise write_error(out_dir, e, what=f"the samples into {out_dir}", folder=out_dir,
                          then="run the command again (none of them was written)") from e  # fmt: skip
    finally:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
    return paths
