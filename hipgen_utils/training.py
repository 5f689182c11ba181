"""Training loops for the VQ-VAE and the PixelCNN prior.

Both loops are deterministic given the seed (the batch at update t depends only on
(seed, t), so a resumed run sees the same batches as an uninterrupted one), keep a
history dict of plain floats, write an atomic checkpoint (model + optimiser + config +
history + RNG state) at every log step, and stop on a non-finite loss keeping the last
good checkpoint. Where a run starts from (fresh, resumed, replaced) is `resume`'s decision,
the device `devices`'.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from hipgen_utils import rundir
from hipgen_utils.checkpoints import PRIOR_FILE, VQVAE_FILE, atomic_save
from hipgen_utils.config import PixelCNNConfig, VQVAEConfig
from hipgen_utils.devices import autocast, pick_device
from hipgen_utils.metrics import evenly_spaced, ssim_per_image
from hipgen_utils.metrics import perplexity as code_perplexity
from hipgen_utils.pixelcnn import GatedPixelCNN
from hipgen_utils.resume import (
    data_changed,
    data_diff,
    existing_checkpoint,
    grids_id,
    holding_run_lock,
    move_stale_prior,
    pin_data_dir,
    restore,
)
from hipgen_utils.vqvae import VQVAE


class TrainingStopped(RuntimeError):
    """Training hit a non-finite loss; the last good checkpoint is kept."""


def batch_indices(n: int, batch_size: int, seed: int, step: int) -> np.ndarray:
    """Indices of the batch at update `step`: epoch-wise permutations seeded by (seed, epoch)."""
    per_epoch = max(1, n // batch_size)
    epoch, k = divmod(step, per_epoch)
    perm = np.random.default_rng([seed, epoch]).permutation(n)
    if n < batch_size:  # tiny sets: repeat to a full batch
        perm = np.resize(perm, batch_size)
    return np.sort(perm[k * batch_size : (k + 1) * batch_size])


def random_crops(images, idx, crop: int, seed: int, step: int) -> np.ndarray:
    """(len(idx), crop, crop) patches of images[idx] at offsets drawn from (seed, step).

    Offsets are multiples of 4 so patches stay aligned with the 4x4-pixel code grid."""
    h, w = images.shape[1:]
    if crop % 4 or not 4 <= crop <= min(h, w):
        raise ValueError(f"crop={crop} must be a multiple of 4 between 4 and {min(h, w)} (0 = whole slices)")
    rng = np.random.default_rng([seed, step, 1])
    ys = rng.integers(0, (h - crop) // 4 + 1, len(idx)) * 4
    xs = rng.integers(0, (w - crop) // 4 + 1, len(idx)) * 4
    return np.stack([images[i, y : y + crop, x : x + crop] for i, y, x in zip(idx, ys, xs)])


def scheduled_lr(base: float, schedule: str, step: int, total: int) -> float:
    """Learning rate at update `step`: constant, or cosine-decayed from `base` to 0 at `total`.

    A pure function of the step, so a resumed run continues the same schedule."""
    if schedule == "constant":
        return base
    if schedule == "cosine":
        return base * 0.5 * (1 + math.cos(math.pi * min(step, total) / max(total, 1)))
    raise ValueError(f"lr_schedule={schedule!r} is not supported; use 'cosine' or 'constant'")


def _to_batch(images, device) -> torch.Tensor:
    """(B, H, W) array (numpy or memmap rows) -> (B, 1, H, W) float32 tensor on `device`."""
    return torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32)).unsqueeze(1).to(device)


# --------------------------------------------------------------------------- VQ-VAE


@torch.no_grad()
def validate_vqvae(model, images, idx, device, batch_size=32) -> dict:
    """Recon/embedding loss and SSIM of the VQ-VAE on images[idx] (eval mode)."""
    was_training = model.training
    model.eval()
    recon, emb, ssims = [], [], []
    for s in range(0, len(idx), batch_size):
        x = _to_batch(images[idx[s : s + batch_size]], device)
        with autocast(device):
            x_hat, vq = model(x)
        x_hat = x_hat.float()
        recon.append(F.mse_loss(x_hat, x, reduction="none").mean((1, 2, 3)).cpu())
        emb.append(vq.loss.float().cpu().expand(len(x)))
        ssims.append(
            ssim_per_image(x[:, 0].cpu().numpy(), x_hat.clamp(0, 1)[:, 0].cpu().numpy())
        )
    model.train(was_training)
    r, e = torch.cat(recon).mean().item(), torch.cat(emb).mean().item()
    return {"recon": r, "embedding": e, "total": r + e, "ssim": float(np.mean(np.concatenate(ssims)))}


@holding_run_lock
def train_vqvae(
    cfg: VQVAEConfig,
    train_images,
    val_images,
    run_dir,
    *,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    extra: dict | None = None,
):
    """Train a VQ-VAE on (N, H, W) float32 [0, 1] images; checkpoint to run_dir/vqvae.pt.

    Returns (model, history). `extra` (e.g. the data config) is stored in the checkpoint.
    An existing vqvae.pt is refused unless `resume` (continue it; a finished one is
    reused) or `overwrite` (move it and what depends on it aside). Holds the run
    directory's lock. Raises TrainingStopped on a non-finite loss (the last good
    checkpoint stays)."""
    path = Path(run_dir) / VQVAE_FILE
    device = pick_device(cfg.device)
    scheduled_lr(cfg.learning_rate, cfg.lr_schedule, 0, cfg.n_updates)  # a bad name fails now
    if cfg.crop:
        random_crops(train_images, np.zeros(1, int), cfg.crop, cfg.seed, 0)  # so does a bad crop
    torch.manual_seed(cfg.seed)
    model = VQVAE.from_config(cfg).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.learning_rate)
    history = {k: [] for k in (
        "step", "train_recon", "train_embedding", "train_total", "val_recon", "val_embedding",
        "val_total", "val_ssim", "codes_used", "perplexity", "restarts", "seconds",
    )}  # fmt: skip
    step = 0
    extra = pin_data_dir(extra)
    data = (extra or {}).get("data")
    ckpt = existing_checkpoint(
        path, "vqvae", resume=resume, overwrite=overwrite,
        moved_with=rundir.VQVAE_DEPENDENTS + (rundir.DATA_DEPENDENTS if data_changed(path, data) else ()),
    )  # fmt: skip
    if ckpt is not None:
        saved_data = ckpt.get("extra", {}).get("data")
        step, history = restore(model, opt, ckpt, cfg, "n_updates", path, data_diff(saved_data, data))
        if step >= cfg.n_updates:
            print(f"{path}: already trained for {step} updates; reusing it (--overwrite or RETRAIN = True trains again)")
            return model.eval(), history
        print(f"resuming {path} at update {step}/{cfg.n_updates}")

    n_train = len(train_images)
    val_idx = evenly_spaced(len(val_images), cfg.val_images)  # all slice positions, fixed across log steps
    sums = np.zeros(3)
    counted = 0
    usage = torch.zeros(cfg.n_embeddings)  # code counts since the last log step
    start = time.perf_counter() - (history["seconds"][-1] if history["seconds"] else 0.0)
    model.train()
    if progress:
        size = f"{cfg.crop}x{cfg.crop} patches" if cfg.crop else "slices"
        print(f"VQ-VAE on {device}: {cfg.n_updates} updates of {cfg.batch_size} {size} "
              f"({cfg.n_updates * cfg.batch_size / max(n_train, 1):.3g} epochs of {n_train})")  # fmt: skip
    bar = tqdm(range(step, cfg.n_updates), desc="VQ-VAE", disable=not progress, initial=step, total=cfg.n_updates)
    eta = EtaReport("VQ-VAE", step, cfg.n_updates, enabled=progress)
    for step in bar:
        idx = batch_indices(n_train, cfg.batch_size, cfg.seed, step)
        batch = random_crops(train_images, idx, cfg.crop, cfg.seed, step) if cfg.crop else train_images[idx]
        x = _to_batch(batch, device)
        for group in opt.param_groups:
            group["lr"] = scheduled_lr(cfg.learning_rate, cfg.lr_schedule, step, cfg.n_updates)
        with autocast(device):
            x_hat, vq = model(x)
        recon = F.mse_loss(x_hat.float(), x)
        loss = recon + vq.loss.float()
        if not torch.isfinite(loss):
            raise TrainingStopped(
                f"non-finite loss at update {step} (recon={recon.item():.3g}); "
                f"kept the last good checkpoint {path}; try a lower --learning_rate"
            )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sums += (recon.item(), vq.loss.item(), loss.item())
        counted += 1
        usage += torch.bincount(vq.codes.flatten().cpu(), minlength=cfg.n_embeddings)
        eta.update(step + 1)

        done = step + 1
        if done % cfg.log_interval == 0 or done == cfg.n_updates:
            val = validate_vqvae(model, val_images, val_idx, device)
            # over all batches since the last log step, not one batch (perplexity depends on size)
            perplexity = code_perplexity(usage.numpy())
            codes_used = int((usage > 0).sum())
            tr = sums / counted
            for key, value in (
                ("step", done), ("train_recon", tr[0]), ("train_embedding", tr[1]),
                ("train_total", tr[2]), ("val_recon", val["recon"]),
                ("val_embedding", val["embedding"]), ("val_total", val["total"]),
                ("val_ssim", val["ssim"]), ("codes_used", codes_used),
                ("perplexity", perplexity),
                ("restarts", int(getattr(model.quantizer, "n_restarts", torch.tensor(0)))),
                ("seconds", time.perf_counter() - start),
            ):  # fmt: skip
                history[key].append(float(value))
            sums[:] = 0
            counted = 0
            usage.zero_()
            bar.set_postfix(loss=f"{tr[2]:.4f}", val_ssim=f"{val['ssim']:.3f}", codes=codes_used)
            atomic_save(
                {
                    "kind": "vqvae",
                    "model": model.state_dict(),
                    "optimizer": opt.state_dict(),
                    "config": asdict(cfg),
                    "history": history,
                    "step": done,
                    "rng": torch.get_rng_state(),
                    "extra": extra or {},
                },
                path,
            )
    bar.close()
    return model.eval(), history


# --------------------------------------------------------------------------- PixelCNN


@torch.no_grad()
def bits_per_code(prior, codes, conds, device=None, batch_size=64) -> float:
    """Mean cross-entropy (bits) of the prior on (N, h, w) codes; conds (N,) or None.
    device=None: the prior's own device."""
    if device is None:
        device = next(prior.parameters()).device
    was_training = prior.training
    prior.eval()
    total, count = 0.0, 0
    for s in range(0, len(codes), batch_size):
        c = torch.as_tensor(np.asarray(codes[s : s + batch_size]), dtype=torch.long, device=device)
        y = None if conds is None else torch.as_tensor(np.asarray(conds[s : s + batch_size]), device=device)
        with autocast(device):
            total += prior.nll(c, y, reduction="sum").item()
        count += c.numel()
    prior.train(was_training)
    return total / count / math.log(2)


@holding_run_lock
def train_pixelcnn(
    cfg: PixelCNNConfig,
    codes: dict,
    n_codes: int,
    run_dir,
    *,
    vqvae_id: str,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
):
    """Train the gated PixelCNN on extracted codes; checkpoint to run_dir/pixelcnn.pt.

    `codes` is the dict from `hipgen_utils.codes.load_codes` (codes_train (N, h, w),
    slice_train (N,), codes_validate, slice_validate, ...). Returns (prior, history).
    The budget is cfg.n_updates updates of cfg.batch_size grids (and cfg.max_seconds, when
    set), whatever the number of grids: epochs follow from it. Validation bits (on at most
    cfg.val_grids grids, evenly spaced) and a checkpoint every cfg.log_interval updates and
    at the end.
    An existing pixelcnn.pt is refused unless `resume` (continue it; a finished one is
    reused) or `overwrite` (move it and the sample scores aside); one trained on another
    VQ-VAE's codes is useless and moved aside without asking. Holds the run directory's lock."""
    path = Path(run_dir) / PRIOR_FILE
    device = pick_device(cfg.device)
    train_codes, val_codes = codes["codes_train"], codes["codes_validate"]
    train_cond = codes["slice_train"] if cfg.conditional else None
    val_cond = codes["slice_validate"] if cfg.conditional else None
    if cfg.conditional:
        # slice positions come from the data: as many conditions as its highest slice index
        # (train, validate) + 1, whatever n_slices said; the checkpoint's config stores it,
        # so `load_prior` builds the same model and samplers draw only positions trained on
        top = int(max(train_cond.max(), val_cond.max() if len(val_cond) else 0))
        cfg = replace(cfg, n_slices=top + 1)
    torch.manual_seed(cfg.seed)
    prior = GatedPixelCNN.from_config(cfg, n_codes).to(device)
    opt = torch.optim.Adam(prior.parameters(), lr=cfg.learning_rate)
    per_epoch = max(1, len(train_codes) // cfg.batch_size)
    total_steps = cfg.n_updates
    if cfg.val_grids:  # a fixed subset, so validating does not grow with the data set either
        keep = evenly_spaced(len(val_codes), cfg.val_grids)
        val_codes, val_cond = val_codes[keep], None if val_cond is None else val_cond[keep]
    history = {"epoch": [], "step": [], "train_bits": [], "val_bits": [], "seconds": []}
    step = 0
    codes_id = grids_id(codes)
    move_stale_prior(path, vqvae_id)
    ckpt = existing_checkpoint(path, "pixelcnn", resume=resume, overwrite=overwrite, moved_with=rundir.PRIOR_DEPENDENTS)
    if ckpt is not None:
        same_codes = ckpt.get("codes_id") in (None, codes_id)  # None: a checkpoint from before codes_id
        other = [] if same_codes else ["codes.npz: other slices than the checkpoint was trained on"]
        step, history = restore(prior, opt, ckpt, cfg, "n_updates", path, other)
        out_of_time = cfg.max_seconds > 0 and history["seconds"] and history["seconds"][-1] >= cfg.max_seconds
        if step >= total_steps or out_of_time:
            print(f"{path}: already trained for {step} updates; reusing it (--overwrite or RETRAIN = True trains again)")
            return prior.eval(), history
        print(f"resuming {path} at update {step}/{total_steps}")

    if progress:
        amp = isinstance(autocast(device, cpu_bf16=cfg.cpu_bf16), torch.autocast)
        print(f"PixelCNN on {device} ({'bf16 autocast' if amp else 'float32'}): {budget_line(cfg, len(train_codes))}")
    start = time.perf_counter() - (history["seconds"][-1] if history["seconds"] else 0.0)
    prior.train()
    bar = tqdm(range(step, total_steps), desc="PixelCNN", disable=not progress, initial=step, total=total_steps)
    eta = EtaReport("PixelCNN", step, total_steps, cfg.max_seconds, enabled=progress)
    running, seen = 0.0, 0
    for step in bar:
        idx = batch_indices(len(train_codes), cfg.batch_size, cfg.seed, step)
        c = torch.as_tensor(train_codes[idx], dtype=torch.long, device=device)
        y = None if train_cond is None else torch.as_tensor(train_cond[idx], device=device)
        lr = scheduled_lr(cfg.learning_rate, "cosine", step, total_steps)
        if cfg.max_seconds > 0:  # a time budget: the cosine runs over whichever ends first
            done = max(step / total_steps, (time.perf_counter() - start) / cfg.max_seconds)
            lr = scheduled_lr(cfg.learning_rate, "cosine", done, 1.0)
        for group in opt.param_groups:
            group["lr"] = lr
        with autocast(device, cpu_bf16=cfg.cpu_bf16):
            loss = prior.nll(c, y)
        if not torch.isfinite(loss):
            raise TrainingStopped(
                f"non-finite loss at update {step}; kept the last good checkpoint {path}; "
                "try a lower --learning_rate"
            )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(prior.parameters(), 1.0)
        opt.step()
        running += loss.item() / math.log(2)
        seen += 1
        eta.update(step + 1)
        out_of_time = cfg.max_seconds > 0 and time.perf_counter() - start >= cfg.max_seconds
        if (step + 1) % cfg.log_interval == 0 or step + 1 == total_steps or out_of_time:
            val_bits = bits_per_code(prior, val_codes, val_cond, device)
            for key, value in (
                ("epoch", (step + 1) / per_epoch), ("step", step + 1),
                ("train_bits", running / seen), ("val_bits", val_bits),
                ("seconds", time.perf_counter() - start),
            ):  # fmt: skip
                history[key].append(float(value))
            running, seen = 0.0, 0
            bar.set_postfix(val_bits=f"{val_bits:.3f}")
            atomic_save(
                {
                    "kind": "pixelcnn",
                    "model": prior.state_dict(),
                    "optimizer": opt.state_dict(),
                    "config": asdict(cfg),
                    "n_codes": n_codes,
                    "vqvae_id": vqvae_id,
                    "codes_id": codes_id,
                    "history": history,
                    "step": step + 1,
                    "rng": torch.get_rng_state(),
                },
                path,
            )
        if out_of_time:
            if progress:
                print(f"PixelCNN: max_seconds={cfg.max_seconds:g} reached after {step + 1} updates")
            break
    bar.close()
    return prior.eval(), history


def budget_line(cfg: PixelCNNConfig, n_grids: int) -> str:
    """'2880 updates of 8 grids (16 epochs of 1440)': the prior's budget and the epochs it
    makes on this data set (the budget is fixed, the epochs follow)."""
    epochs = cfg.n_updates / max(1, n_grids // cfg.batch_size)
    cap = f", at most {cfg.max_seconds:g} s" if cfg.max_seconds > 0 else ""
    return f"{cfg.n_updates} updates of {cfg.batch_size} grids ({epochs:.3g} epochs of {n_grids}){cap}"


class EtaReport:
    """Prints, once, the expected training time from the speed of the first updates: after
    `after` updates, or `seconds` of training, whichever comes first (the progress bar's own
    estimate takes over from there)."""

    def __init__(self, name: str, start: int, total: int, max_seconds: float = 0.0, *, enabled: bool = True,
                 after: int = 20, seconds: float = 15.0):  # fmt: skip
        self.name, self.start, self.total, self.max_seconds = name, start, total, max_seconds
        self.after, self.seconds, self.enabled = after, seconds, enabled and total > start
        self.t0 = time.perf_counter()

    def update(self, done: int) -> None:
        if not self.enabled:
            return
        elapsed = time.perf_counter() - self.t0
        if done >= self.total:  # finished before the estimate was due: nothing to predict
            self.enabled = False
        elif done - self.start >= self.after or elapsed >= self.seconds:
            self.enabled = False
            print(eta_line(self.name, done - self.start, elapsed, self.total - done, self.max_seconds), flush=True)


def eta_line(name: str, done: int, elapsed: float, left: int, max_seconds: float = 0.0) -> str:
    """'PixelCNN: 20 updates took 9.8 s (0.49 s each): about 23 min for the 2860 left'."""
    each = elapsed / max(done, 1)
    rest = each * left
    if max_seconds > 0:
        rest = min(rest, max(0.0, max_seconds - elapsed))
    return (f"{name}: {done} updates took {elapsed:.1f} s ({each:.2f} s each): "
            f"about {_duration(rest)} for the {left} left")  # fmt: skip


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
