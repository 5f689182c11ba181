"""PixelCNN prior figures (notebooks 05-06): bits per code while training, sample quality
against temperature, decoded samples and completions."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from hipgen_utils.plotting.common import (
    _PANEL_H,
    _PANEL_W,
    _images,
    _orientation_labels,
    _require,
    _slice2d,
    plot_montage,
    show_slice,
)


def plot_prior_history(history: Mapping, unigram_bits: float) -> Figure:
    """PixelCNN curves: train/val bits per code against epoch, with the unigram baseline
    (entropy of the code frequencies, what a prior ignoring context would score)."""
    _require(history, ("epoch", "train_bits", "val_bits"), "PixelCNN")
    ep = np.asarray(history["epoch"], dtype=np.float64)
    fig, ax = plt.subplots(figsize=(7, 4), layout="constrained")
    for key, style in (("train_bits", "o-"), ("val_bits", "s--")):
        y = np.array([np.nan if v is None else float(v) for v in history[key]])
        if len(y) != len(ep):
            raise ValueError(f"history[{key!r}] has {len(y)} entries but 'epoch' has {len(ep)}")
        ax.plot(ep, y, style, ms=4, label=key.split("_")[0])
    ax.axhline(
        unigram_bits, color="0.3", ls=":", lw=1.5, label=f"unigram baseline {unigram_bits:.2f}"
    )
    ax.set_xlabel("epoch")
    ax.set_ylabel("bits per code")
    ax.set_title("PixelCNN prior: negative log-likelihood")
    ax.legend(fontsize=8)
    return fig


def plot_temperature_sweep(rows: Sequence[Mapping]) -> Figure:
    """Copying against temperature (rows from `pipeline.temperature_sweep`): the median
    nearest-neighbour SSIM of the samples to training slices and the near-copy fraction. The
    anatomy per temperature is `judge_plots.plot_temperature_anatomy` (notebook 07): the HOG
    Fréchet distance in these rows scored samples below its real-vs-real floor and is not
    drawn as a judgement."""
    if not rows:
        raise ValueError("plot_temperature_sweep: no rows; run pipeline.temperature_sweep first")
    need = ("temperature", "nn_ssim_median", "frac_near_copies")
    missing = [k for k in need if k not in rows[0]]
    if missing:
        raise ValueError(f"plot_temperature_sweep: rows lack {missing}; expected pipeline.temperature_sweep output")
    t = np.array([r["temperature"] for r in rows], dtype=np.float64)
    col = {k: np.array([r[k] for r in rows], dtype=np.float64) for k in need[1:]}
    fig, ax = plt.subplots(figsize=(5.6, 3.6), layout="constrained")
    ax.plot(t, col["nn_ssim_median"], "o-", label="median nearest-neighbour SSIM")
    ax.plot(t, col["frac_near_copies"], "s--", label="near-copies (SSIM > 0.95)")
    ax.set_xlabel("temperature")
    ax.set_ylim(0, 1)
    ax.set_title("likeness to / copying of training slices")
    ax.legend(fontsize=8)
    return fig


def plot_samples(images, titles=None, ncols: int = 4, suptitle=None) -> Figure:
    """Decoded samples, (N, H, W) in [0, 1], as a montage."""
    return plot_montage(
        images,
        titles=titles,
        ncols=ncols,
        suptitle=suptitle or f"{len(_images(images, 'images'))} samples",
    )


def plot_completion(original, kept_rows: int, completion, code_rows: int) -> Figure:
    """Original / kept part / completion, side by side.

    original, completion: (H, W) slices in [0, 1]; the first `kept_rows` of `code_rows` code
    rows were kept. Code row i covers image rows i*H/code_rows ... along axis 0 (left-right,
    horizontal on screen), so the kept part is image[:kept_rows * H // code_rows, :]. The
    discarded part is greyed out and the boundary drawn on every panel.
    """
    orig = _slice2d(original, "original")
    comp = _slice2d(completion, "completion")
    if orig.shape != comp.shape:
        raise ValueError(f"completion shape {comp.shape} does not match original {orig.shape}")
    h = orig.shape[0]
    if code_rows < 1 or h % code_rows:
        raise ValueError(f"code_rows={code_rows} must divide the image height {h}")
    if not 0 <= kept_rows <= code_rows:
        raise ValueError(f"kept_rows={kept_rows} must be in 0..{code_rows}")
    cut = kept_rows * (h // code_rows)
    fig, axes = plt.subplots(
        1, 3, figsize=(_PANEL_W * 3 + 0.4, _PANEL_H + 0.9), layout="constrained"
    )
    show_slice(axes[0], orig, title="original")
    lines = "code rows"
    show_slice(axes[1], orig, title=f"kept: first {kept_rows}/{code_rows} {lines}")
    show_slice(axes[2], comp, title="completion (sampled right of line)")
    # after the transpose, image axis 0 is horizontal (x): image rows >= cut are x >= cut
    if cut < h:
        axes[1].axvspan(
            cut - 0.5,
            h - 0.5,
            facecolor="0.55",
            alpha=0.9,
            hatch="//",
            edgecolor="0.35",
            label="discarded",
        )
        axes[1].legend(loc="upper right", fontsize=7)
    for ax in axes:
        ax.axvline(cut - 0.5, color="r", lw=1.2, ls="--")
    fig.suptitle(f"Completion: keep the first {lines}, sample the rest")
    _orientation_labels(fig)
    return fig
