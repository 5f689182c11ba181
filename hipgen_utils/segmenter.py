"""A small U-Net that labels slices: the eyes of the anatomy judge (`hipgen_utils.judge`).

Generated slices cannot be judged by pixel statistics alone: a sample with the right
textures and no femoral heads scores well on any histogram. A segmenter trained on the
data's own labels (HipMRI: 0 background, 1 body, 2 bones, 3 bladder, 4 rectum, 5 prostate;
the classes are read from the labels) turns an image into anatomy that can be counted,
measured and mirrored. It is trained here, on the training split, in plain torch: nothing
is downloaded.

The U-Net (Ronneberger et al. 2015) is the textbook one, kept small and run on slices
block-averaged 2x (the judged structures are large; 4x cheaper to train and apply): `levels` blocks of
two 3x3 convolutions (batch norm, ReLU) that halve the resolution, a bottleneck, and as
many upsampling blocks that take the encoder's features of the same resolution through a
skip connection. It trains on random square patches (labels cropped alike) with a
cross-entropy plus soft-Dice loss (under bf16 autocast where the CPU has native bf16, as
the prior; it is always applied in float32); light blur and left-right flips make it robust to the
VQ-VAE decoder's smoothing and blind to which side a structure is on.

``RUN/segmenter.pt`` caches it, tied to the data it was trained on (`data_fingerprint`):
different data, or labels with other classes, train it again.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from scipy.ndimage import gaussian_filter
from torch import nn
from tqdm.auto import tqdm

from hipgen_utils.checkpoints import CheckpointError, atomic_save, load_checkpoint
from hipgen_utils.config import JudgeConfig, from_dict
from hipgen_utils.devices import autocast
from hipgen_utils.rundir import run_lock

SEGMENTER_FILE = "segmenter.pt"


def _block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True),
        nn.Conv2d(c_out, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True),
    )  # fmt: skip


class UNet(nn.Module):
    """(B, 1, h, w) float images in [0, 1] -> (B, n_classes, h, w) logits (`forward`, on
    images already reduced by `scale`), or full-size slices -> full-size logits (`full`).

    `scale`: the network sees slices block-averaged by this factor (2: 256x128 -> 128x64; the
    judge's structures are large, and it is 4x cheaper), and `full` upsamples its logits
    (bilinear) back. Reduced sides must divide by 2**levels."""

    def __init__(self, n_classes: int, base: int = 16, levels: int = 3, scale: int = 1):
        super().__init__()
        if n_classes < 2 or base < 1 or levels < 1 or scale < 1:
            raise ValueError(
                f"UNet: n_classes={n_classes} (>= 2), base={base}, levels={levels}, scale={scale} (each >= 1)"
            )
        widths = [base * 2**i for i in range(levels + 1)]
        self.levels = levels
        self.scale = int(scale)
        self.down = nn.ModuleList(_block(c_in, c) for c_in, c in zip([1] + widths[:-2], widths[:-1]))
        self.bottom = _block(widths[-2], widths[-1])
        self.up = nn.ModuleList(nn.ConvTranspose2d(widths[i + 1], widths[i], 2, stride=2) for i in reversed(range(levels)))
        self.merge = nn.ModuleList(_block(2 * widths[i], widths[i]) for i in reversed(range(levels)))
        self.head = nn.Conv2d(widths[0], n_classes, 1)

    def _encode(self, x):
        skips = []
        for block in self.down:
            x = block(x)
            skips.append(x)
            x = F.max_pool2d(x, 2)
        return self.bottom(x), skips

    def reduce(self, x: torch.Tensor) -> torch.Tensor:
        """Full-size (B, 1, H, W) -> the network's input size (block average by `scale`)."""
        return F.avg_pool2d(x, self.scale) if self.scale > 1 else x

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Bottleneck (B, base * 2**levels, H / (scale * 2**levels), ...) of full-size slices."""
        return self._encode(self.reduce(x))[0]

    def full(self, x: torch.Tensor) -> torch.Tensor:
        """Full-size (B, 1, H, W) slices -> full-size (B, n_classes, H, W) logits."""
        y = self(self.reduce(x))
        return F.interpolate(y, size=x.shape[-2:], mode="bilinear", align_corners=False) if self.scale > 1 else y

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, skips = self._encode(x)
        for up, merge, skip in zip(self.up, self.merge, reversed(skips)):
            x = merge(torch.cat([up(x), skip], dim=1))
        return self.head(x)


def label_classes(labels) -> list[int]:
    """Sorted label values present in (N, H, W) integer labels (read in chunks: may be a memmap)."""
    found: set[int] = set()
    for s in range(0, len(labels), 512):
        found.update(int(v) for v in np.unique(np.asarray(labels[s : s + 512])))
    return sorted(found)


def data_fingerprint(train_set, data_cfg: dict | None = None) -> str:
    """What the segmenter depends on: the train files, the image preparation and the label classes."""
    doc = {
        "paths": [Path(p).name for p in train_set.paths],
        "shape": list(train_set.images.shape[1:]),
        "classes": label_classes(train_set.labels),
        "prep": {k: (data_cfg or {}).get(k) for k in ("height", "width", "resize_mode", "norm")},
    }
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:24]


def _patches(images, labels, idx, patch: int, rng: np.random.Generator):
    """Random square patches of images[idx] and labels[idx] (same offsets), flipped left-right
    (axis 0) at random and, for half the images, blurred by sigma in [0, 1.2] px."""
    h, w = images.shape[1:]
    x = np.empty((len(idx), patch or h, patch or w), np.float32)
    y = np.empty(x.shape, np.int64)
    for j, i in enumerate(idx):
        img, lab = np.asarray(images[i], np.float32), np.asarray(labels[i])
        if patch:
            r0, c0 = rng.integers(0, h - patch + 1), rng.integers(0, w - patch + 1)
            img, lab = img[r0 : r0 + patch, c0 : c0 + patch], lab[r0 : r0 + patch, c0 : c0 + patch]
        if rng.random() < 0.5:
            img, lab = img[::-1], lab[::-1]
        if rng.random() < 0.5:
            img = gaussian_filter(img, rng.uniform(0.0, 1.2))
        x[j], y[j] = img, lab
    return torch.from_numpy(x).unsqueeze(1), torch.from_numpy(y)


def _loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Cross-entropy plus mean soft Dice loss over the classes present in the batch."""
    ce = F.cross_entropy(logits, target)
    p = logits.softmax(1)
    onehot = F.one_hot(target, logits.shape[1]).permute(0, 3, 1, 2).to(p.dtype)
    inter = (p * onehot).sum((0, 2, 3))
    sizes = p.sum((0, 2, 3)) + onehot.sum((0, 2, 3))
    present = onehot.sum((0, 2, 3)) > 0
    dice = (2 * inter + 1) / (sizes + 1)
    return ce + (1 - dice[present]).mean()


def train_segmenter(train_set, cfg, *, device="cpu", progress: bool = True) -> tuple[UNet, dict]:
    """Train a UNet on train_set.images -> train_set.labels (values remapped to 0..C-1).

    cfg: a `JudgeConfig`. Returns (model in eval mode, info) where info has "classes",
    "seconds", "updates" and "loss" (the last 50 updates' mean)."""
    if train_set.labels is None:
        raise ValueError(f"{train_set.split}: no labels to train the segmenter on")
    classes = label_classes(train_set.labels)
    if len(classes) < 2:
        raise ValueError(f"{train_set.split}: labels hold a single value {classes}; nothing to segment")
    lut = np.zeros(max(classes) + 1, np.int64)
    lut[classes] = np.arange(len(classes))
    sc = int(cfg.seg_scale)
    images, labels = _reduced(train_set.images, sc), np.asarray(train_set.labels)[:, sc // 2 :: sc, sc // 2 :: sc]
    h, w = images.shape[1:]
    patch = min(int(cfg.seg_patch) // sc, h, w) if cfg.seg_patch else 0
    step_mult = 2**cfg.seg_levels
    if patch % step_mult or h % step_mult or w % step_mult:
        raise ValueError(
            f"segmenter: patch {patch} and slices {h}x{w} (after seg_scale {sc}) must divide by 2**seg_levels = {step_mult}"
        )
    dev = torch.device(device)
    torch.manual_seed(cfg.seed)
    model = UNet(len(classes), cfg.seg_base_channels, cfg.seg_levels, sc).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.seg_learning_rate)
    rng = np.random.default_rng(cfg.seed)
    n, losses, t0 = len(train_set.images), [], time.perf_counter()
    bar = tqdm(range(cfg.seg_n_updates), desc="segmenter", disable=not progress)
    model.train()
    for step in bar:
        for g in opt.param_groups:  # cosine decay to 0, as for the VQ-VAE and the prior
            g["lr"] = cfg.seg_learning_rate * 0.5 * (1 + math.cos(math.pi * step / cfg.seg_n_updates))
        idx = np.sort(rng.choice(n, size=cfg.seg_batch_size, replace=n < cfg.seg_batch_size))
        x, y = _patches(images, labels, idx, patch, rng)
        with autocast(dev, cfg.seg_bf16):
            logits = model(x.to(dev))
        loss = _loss(logits.float(), torch.from_numpy(lut[y.numpy()]).to(dev))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
        if step % 20 == 0:
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}")
    info = {
        "classes": classes,
        "seconds": time.perf_counter() - t0,
        "updates": int(cfg.seg_n_updates),
        "loss": float(np.mean(losses[-50:])),
    }
    return model.eval(), info


def _reduced(images, scale: int) -> np.ndarray:
    """(N, H, W) -> (N, H / scale, W / scale) float32 block means (read in chunks: may be a memmap)."""
    out = []
    for s in range(0, len(images), 256):
        x = torch.from_numpy(np.array(images[s : s + 256], np.float32)).unsqueeze(1)
        out.append((F.avg_pool2d(x, scale) if scale > 1 else x)[:, 0].numpy())
    return np.concatenate(out)


def _model_device(model) -> torch.device:
    return next(model.parameters()).device


def _batches(model, images, batch_size):
    """Yield (start, full-size (b, 1, H, W) tensor) over `images` on the model's device."""
    dev = _model_device(model)
    for s in range(0, len(images), batch_size):
        yield s, torch.from_numpy(np.array(images[s : s + batch_size], np.float32)).unsqueeze(1).to(dev)


@torch.no_grad()
def segment(model: UNet, images, classes, batch_size: int = 8) -> np.ndarray:
    """(N, H, W) float images in [0, 1] -> (N, H, W) uint8 labels in the data's own values.

    Runs under bf16 autocast where the CPU has it natively (~2x; on the demo test slices
    99.99 % of the pixels get the same label as in float32)."""
    lut = np.asarray(classes, dtype=np.uint8)
    out = np.empty(np.shape(images), np.uint8)
    model.eval()
    for s, x in _batches(model, images, batch_size):
        with autocast(x.device, True):
            logits = model.full(x)
        out[s : s + len(x)] = lut[logits.argmax(1).cpu().numpy()]
    return out


@torch.no_grad()
def bottleneck_features(model: UNet, images, batch_size: int = 8, grid=(4, 2)) -> np.ndarray:
    """(N, H, W) images -> (N, C * grid[0] * grid[1]) float64: the bottleneck averaged over a
    coarse grid (4 x 2 regions of the slice keep where things are, not only what)."""
    model.eval()
    feats = []
    for _, x in _batches(model, images, batch_size):
        with autocast(x.device, True):
            f = F.adaptive_avg_pool2d(model.features(x).float(), grid)
        feats.append(f.flatten(1).double().cpu().numpy())
    return np.concatenate(feats)


def dice_per_class(pred, true, classes, region=None) -> dict[int, float]:
    """Mean over images of the Dice of each class (pred, true: (N, H, W) labels).

    region: None or a (H, W) / (N, H, W) bool mask: only those pixels count. An image where
    a class is absent from both pred and true (in the region) is left out of that class's
    mean (NaN when it is absent everywhere)."""
    pred, true = np.asarray(pred), np.asarray(true)
    if pred.shape != true.shape:
        raise ValueError(f"dice_per_class: pred {pred.shape} and true {true.shape} differ")
    if region is not None:
        region = np.broadcast_to(np.asarray(region, bool), pred.shape)
    out = {}
    for k in classes:
        p, t = pred == k, true == k
        if region is not None:
            p, t = p & region, t & region
        inter = (p & t).sum((1, 2))
        size = p.sum((1, 2)) + t.sum((1, 2))
        keep = size > 0
        out[int(k)] = float(np.mean(2 * inter[keep] / size[keep])) if keep.any() else float("nan")
    return out


def save_segmenter(model: UNet, info: dict, cfg, fingerprint: str, test_dice: dict, run_dir) -> Path:
    """Atomically write RUN/segmenter.pt: weights, its config, classes, data fingerprint, test Dice."""
    return atomic_save(
        {
            "kind": "segmenter",
            "model": model.state_dict(),
            "config": asdict(cfg),
            "classes": list(info["classes"]),
            "data_fingerprint": fingerprint,
            "test_dice": {str(k): float(v) for k, v in test_dice.items()},
            "seconds": float(info["seconds"]),
            "updates": int(info["updates"]),
        },
        Path(run_dir) / SEGMENTER_FILE,
    )


def load_segmenter(run_dir, fingerprint: str | None = None, device="cpu"):
    """(model, checkpoint) from RUN/segmenter.pt, or None when absent or trained on other data
    (another fingerprint: other files, preparation or label classes)."""
    path = Path(run_dir) / SEGMENTER_FILE
    if not path.is_file():
        return None
    ckpt = load_checkpoint(path, "segmenter")
    if fingerprint is not None and ckpt.get("data_fingerprint") != fingerprint:
        return None
    cfg = from_dict(JudgeConfig, ckpt["config"])
    model = UNet(len(ckpt["classes"]), cfg.seg_base_channels, cfg.seg_levels, cfg.seg_scale)
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as e:
        raise CheckpointError(f"{path}: weights do not fit the stored config ({str(e).splitlines()[0]})") from None
    return model.to(device).eval(), ckpt


def ensure_segmenter(splits: dict, cfg, run_dir, data_cfg: dict | None = None, *, device="cpu",
                     progress: bool = True, log=print):  # fmt: skip
    """The run's segmenter, trained (and test-scored, and cached) when missing or stale (other
    data, other label classes, or other `seg_*` settings in `cfg`).

    splits: {"train": SliceSet, "test": SliceSet} with labels. Returns (model, ckpt) or None
    when the data has no labels (after logging one line that says so). `log` takes the
    one-line messages (`hipgen evaluate --json` sends them to stderr)."""
    train, test = splits["train"], splits["test"]
    if train.labels is None or test.labels is None:
        missing = [s.split for s in (train, test) if s.labels is None]
        folders = ", ".join(f"keras_slices_seg_{s}/" for s in missing)
        log(f"anatomy check skipped: no label folders for {', '.join(missing)} ({folders}); the judge's segmenter "
            "needs label maps, so only the completions' SSIM is scored")  # fmt: skip
        return None
    fp = data_fingerprint(train, data_cfg)
    found = load_segmenter(run_dir, fp, device)
    wanted = {k: v for k, v in asdict(cfg).items() if k.startswith("seg_")}
    if found is not None and all(found[1]["config"].get(k) == v for k, v in wanted.items()):
        return found
    with run_lock(run_dir):  # one writer per run directory
        why = "none cached yet"
        if found is not None:
            why = "cached one has other seg_* settings"
        elif (Path(run_dir) / SEGMENTER_FILE).is_file():
            why = "cached one was trained on other data"
        log(f"training the segmenter ({why}): {cfg.seg_n_updates} updates on {len(train)} train slices")
        model, info = train_segmenter(train, cfg, device=device, progress=progress)
        test_dice = dice_per_class(segment(model, test.images, info["classes"]), test.labels, info["classes"])
        save_segmenter(model, info, cfg, fp, test_dice, run_dir)
    return load_segmenter(run_dir, fp, device)
