"""VQ-VAE figures (notebooks 02-04): training curves, reconstructions with their error maps,
per-image SSIM, best and worst reconstructions, codebook use and code maps."""

from __future__ import annotations

from collections.abc import Mapping

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure

from hipgen_utils.metrics import perplexity
from hipgen_utils.plotting.common import (
    _PANEL_H,
    _PANEL_W,
    _images,
    _log_y,
    _np,
    _orientation_labels,
    _require,
    _vector,
    show_slice,
)

ERROR_CMAP = "magma"


def code_colormap(n_codes: int, seed: int = 0) -> ListedColormap:
    """Qualitative map with one colour per code: nipy_spectral sampled K times and shuffled
    (fixed seed) so that neighbouring code indices get unrelated colours."""
    colours = plt.get_cmap("nipy_spectral")(np.linspace(0.03, 0.97, max(n_codes, 1)))
    colours = colours[np.random.default_rng(seed).permutation(len(colours))]
    return ListedColormap(colours, name=f"codes{n_codes}")


def _series(history: Mapping, key: str, n: int) -> np.ndarray:
    v = np.array([np.nan if x is None else float(x) for x in history[key]], dtype=np.float64)
    if len(v) != n:
        raise ValueError(f"history[{key!r}] has {len(v)} entries but history['step'] has {n}")
    return v


def plot_history(history: Mapping, ssim_line: float = 0.6) -> Figure:
    """VQ-VAE training curves against update step.

    history: lists keyed step, train_/val_ recon, embedding, total, val_ssim, codes_used,
    perplexity (None/NaN where a value was not logged). Five panels: recon, embedding and
    total loss (train vs val, log-y), validation SSIM with the `ssim_line` target, and
    codes used / perplexity.
    """
    parts = ("recon", "embedding", "total")
    need = ["step", *(f"{s}_{p}" for p in parts for s in ("train", "val"))]
    need += ["val_ssim", "codes_used", "perplexity"]
    _require(history, need, "VQ-VAE")
    step = np.asarray(history["step"], dtype=np.float64)
    n = len(step)
    fig, axes = plt.subplots(2, 3, figsize=(13, 6.5), layout="constrained")
    for ax, p in zip(axes.flat, parts):
        ys = []
        for split, style in (("train", "-"), ("val", "o--")):
            y = _series(history, f"{split}_{p}", n)
            ok = np.isfinite(y)
            ax.plot(step[ok], y[ok], style, ms=3, label=split)
            ys.append(y)
        scale = _log_y(ax, *ys)
        ax.set_xlabel("update step")
        ax.set_ylabel(f"{p} loss" + (" (log)" if scale == "log" else ""))
        ax.set_title(f"{p.capitalize()} loss")
        ax.legend(fontsize=8)
    ax = axes[1, 0]
    y = _series(history, "val_ssim", n)
    ok = np.isfinite(y)
    ax.plot(step[ok], y[ok], "o-", ms=3, color="C2", label="validation SSIM")
    ax.axhline(ssim_line, color="r", ls="--", lw=1, label=f"target {ssim_line:g}")
    ax.set_ylim(0, 1)
    ax.set_xlabel("update step")
    ax.set_ylabel("mean SSIM")
    ax.set_title("Validation SSIM")
    ax.legend(fontsize=8, loc="lower right")
    ax = axes[1, 1]
    for key, colour in (("codes_used", "C4"), ("perplexity", "C5")):
        y = _series(history, key, n)
        ok = np.isfinite(y)
        ax.plot(step[ok], y[ok], "o-", ms=3, color=colour, label=key.replace("_", " "))
    ax.set_ylim(bottom=0)
    ax.set_xlabel("update step")
    ax.set_ylabel("number of codes")
    ax.set_title("Codebook use")
    ax.legend(fontsize=8)
    fig.delaxes(axes[1, 2])
    fig.suptitle("VQ-VAE training")
    return fig


def _error_row_colourbar(fig, ims, axes, vmax: float):
    cb = fig.colorbar(ims[-1], ax=list(axes), shrink=0.9, pad=0.01)
    # label on the left of the bar: on the right it ran off the figure's edge
    cb.ax.yaxis.set_label_position("left")
    cb.set_label(f"|error| (0..{vmax:.2f})", fontsize=8)
    return cb


def plot_reconstructions(originals, recons, n: int = 6, ssim=None) -> Figure:
    """Rows: original / reconstruction / |error| (shared colour scale, colorbar) for the first n.

    originals, recons: (N, H, W) in [0, 1]; ssim: optional (N,) per-image SSIM for titles.
    """
    orig = _images(originals, "originals")
    rec = _images(recons, "recons")
    if orig.shape != rec.shape:
        raise ValueError(f"recons shape {rec.shape} does not match originals shape {orig.shape}")
    n = min(n, len(orig))
    s = None if ssim is None else _vector(ssim, "ssim", len(orig))
    err = np.abs(orig[:n].astype(np.float64) - rec[:n])
    vmax = max(float(err.max()), 1e-6)
    fig, axes = plt.subplots(
        3, n, figsize=(_PANEL_W * n + 1, _PANEL_H * 3 + 0.8), squeeze=False, layout="constrained"
    )
    ims = []
    for i in range(n):
        show_slice(axes[0, i], orig[i], title=f"original #{i}")
        t = f"recon #{i}" + (f"  SSIM {s[i]:.3f}" if s is not None else "")
        show_slice(axes[1, i], rec[i], title=t)
        ims.append(
            show_slice(
                axes[2, i],
                err[i],
                title=f"|error| mean {err[i].mean():.3f}",
                cmap=ERROR_CMAP,
                vmin=0.0,
                vmax=vmax,
            )
        )
    for r, name in enumerate(("original", "reconstruction", "|error|")):
        axes[r, 0].set_ylabel(name)
    _error_row_colourbar(fig, ims, axes[2], vmax)
    fig.suptitle("VQ-VAE reconstructions")
    _orientation_labels(fig)
    return fig


def plot_ssim_histogram(ssim, line: float = 0.6) -> Figure:
    """Histogram of per-image SSIM with mean, median and the `line` target marked."""
    s = _vector(ssim, "ssim")
    s = s[np.isfinite(s)]
    if s.size == 0:
        raise ValueError("ssim has no finite values to plot")
    fig, ax = plt.subplots(figsize=(7, 4), layout="constrained")
    lo = min(0.0, float(s.min()))
    ax.hist(s, bins=40, range=(lo, 1.0), color="0.6", edgecolor="k", lw=0.4)
    ax.axvline(s.mean(), color="C0", lw=2, label=f"mean {s.mean():.3f}")
    ax.axvline(np.median(s), color="C1", lw=2, ls="-.", label=f"median {np.median(s):.3f}")
    frac = float((s >= line).mean())
    ax.axvline(
        line, color="r", ls="--", lw=1.5, label=f"target {line:g} ({frac:.0%} of images above)"
    )
    ax.set_xlabel("SSIM")
    ax.set_ylabel("number of images")
    ax.set_title(f"Per-image SSIM ({s.size} images)")
    ax.legend(fontsize=8, loc="upper left")
    return fig


def plot_ssim_vs_slice(ssim, slice_idx, line: float | None = 0.6) -> Figure:
    """Per-image SSIM against slice position (scatter) with the median at each position."""
    s = _vector(ssim, "ssim")
    pos = _vector(slice_idx, "slice_idx", len(s)).astype(np.int64)
    fig, ax = plt.subplots(figsize=(8, 4), layout="constrained")
    rng = np.random.default_rng(0)  # jitter so stacked points at one position stay visible
    ax.scatter(
        pos + rng.uniform(-0.25, 0.25, len(pos)), s, s=6, alpha=0.35, color="C0", label="one image"
    )
    uniq = np.unique(pos)
    med = np.array([np.nanmedian(s[pos == p]) for p in uniq])
    ax.plot(uniq, med, "-", color="C3", lw=2, label="median per slice position")
    if line is not None:
        ax.axhline(line, color="r", ls="--", lw=1, label=f"target {line:g}")
    ax.set_xlabel("slice position")
    ax.set_ylabel("SSIM")
    ax.set_title("Reconstruction SSIM along the body")
    ax.legend(fontsize=8, loc="lower right")
    return fig


def plot_best_worst(originals, recons, ssim, k: int = 4) -> Figure:
    """Best k (left block) and worst k (right block) reconstructions by SSIM.

    Each block has columns original / reconstruction / |error| (shared scale, colorbar).
    """
    orig = _images(originals, "originals")
    rec = _images(recons, "recons")
    if orig.shape != rec.shape:
        raise ValueError(f"recons shape {rec.shape} does not match originals shape {orig.shape}")
    s = _vector(ssim, "ssim", len(orig))
    k = min(k, len(orig))
    order = np.argsort(np.where(np.isfinite(s), s, -np.inf), kind="stable")
    best, worst = order[::-1][:k], order[:k]
    err = np.abs(orig.astype(np.float64) - rec)
    vmax = max(float(err[np.concatenate([best, worst])].max()), 1e-6)
    fig, axes = plt.subplots(
        k, 6, figsize=(_PANEL_W * 6 + 1, _PANEL_H * k + 0.8), squeeze=False, layout="constrained"
    )
    ims = []
    for col0, which, idx in ((0, "best", best), (3, "worst", worst)):
        for r, i in enumerate(idx):
            show_slice(axes[r, col0], orig[i], title=f"{which} {r + 1}: image {i}")
            show_slice(axes[r, col0 + 1], rec[i], title=f"recon  SSIM {s[i]:.3f}")
            ims.append(
                show_slice(
                    axes[r, col0 + 2], err[i], title="|error|", cmap=ERROR_CMAP, vmin=0.0, vmax=vmax
                )
            )
    _error_row_colourbar(fig, ims, axes[:, 5], vmax)
    fig.suptitle(f"Best {k} (left) and worst {k} (right) reconstructions by SSIM")
    _orientation_labels(fig)
    return fig


def plot_codebook_usage(counts, title=None) -> Figure:
    """Codebook use. counts: (K,) how often each code was chosen.

    Left: counts sorted descending (log-y). Right: histogram of use over codes.
    Codes used and perplexity (2**entropy in bits = effective number of codes) are annotated.
    """
    c = _np(counts).astype(np.float64).reshape(-1)
    k = len(c)
    used = int((c > 0).sum())
    ppl = perplexity(c)
    fig, (ax_sorted, ax_hist) = plt.subplots(1, 2, figsize=(11, 3.8), layout="constrained")
    ranked = np.sort(c)[::-1]
    ax_sorted.fill_between(np.arange(k), ranked, step="mid", alpha=0.4, color="C0")
    ax_sorted.step(np.arange(k), ranked, where="mid", color="C0", label="count")
    ax_sorted.axvline(used - 0.5, color="r", ls="--", lw=1.5, label=f"{used}/{k} codes used")
    ax_sorted.axvline(ppl, color="C1", ls="-.", lw=1, label=f"perplexity {ppl:.1f}")
    ax_sorted.set_yscale("log")
    # room right of the last rank: with every code used, the "codes used" line sits there
    ax_sorted.set_xlim(-0.5, k - 0.5 + max(1.0, 0.03 * k))
    ax_sorted.set_xlabel("code rank (most used first)")
    ax_sorted.set_ylabel("times chosen (log)")
    ax_sorted.set_title("Codes sorted by use")
    ax_sorted.legend(fontsize=8)
    # Use is heavy-tailed, so bin the share relative to uniform on a log axis.
    rel = (c / c.sum() * k)[c > 0]
    lo, hi = rel.min(), rel.max()
    bins = np.logspace(np.log10(lo) - 0.05, np.log10(hi) + 0.05, 31)
    ax_hist.hist(rel, bins=bins, color="0.55", edgecolor="k", lw=0.4)
    ax_hist.set_xscale("log")
    ax_hist.axvline(1.0, color="C2", ls="--", lw=1, label="uniform use")
    ax_hist.set_xlabel("use relative to uniform (share x K, log), used codes only")
    ax_hist.set_ylabel("number of codes")
    ax_hist.set_title(f"Spread of use ({k - used} codes never used)")
    ax_hist.legend(fontsize=8)
    fig.suptitle(title or f"Codebook usage: {used}/{k} used, perplexity {ppl:.1f}")
    return fig


def plot_code_maps(images, codes, n: int = 4, n_codes: int | None = None) -> Figure:
    """Each slice beside its code map. images (N, H, W) [0, 1]; codes (N, h, w) ints in 0..K-1.

    Code maps use `code_colormap(K)` (K = n_codes or max code + 1), so a colour means the
    same code in every panel; they are shown with the same transpose as the slice.
    """
    imgs = _images(images, "images")
    cds = _images(codes, "codes").astype(np.int64)
    if len(cds) != len(imgs):
        raise ValueError(f"got {len(cds)} code maps for {len(imgs)} images")
    n = min(n, len(imgs))
    k = int(n_codes) if n_codes is not None else int(cds.max()) + 1
    cmap = code_colormap(k)
    fig, axes = plt.subplots(
        n, 2, figsize=(_PANEL_W * 2, _PANEL_H * n + 0.8), squeeze=False, layout="constrained"
    )
    for i in range(n):
        show_slice(axes[i, 0], imgs[i], title=f"image #{i}")
        h, w = cds[i].shape
        show_slice(
            axes[i, 1],
            cds[i],
            title=f"codes ({h}x{w}), {len(np.unique(cds[i]))} distinct",
            cmap=cmap,
            vmin=-0.5,
            vmax=k - 0.5,
            interpolation="nearest",
        )
    fig.suptitle(f"Slices and their code maps (K={k}, colours shuffled)")
    _orientation_labels(fig)
    return fig
