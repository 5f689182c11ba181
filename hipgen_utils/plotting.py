"""Figures for the notebooks: one function per figure, each returns a matplotlib Figure.

Conventions used everywhere:

* A slice is an (H, W) = (256, 128) array, axis 0 = left-right, axis 1 = anterior-posterior,
  float in [0, 1]. `show_slice` is the ONE place that turns it into a picture: it shows
  ``img.T`` with ``origin="upper"`` so anterior is at the top and the slice is landscape.
* Label maps are (H, W) ints 0..5 = background, body, bones, bladder, rectum, prostate,
  always drawn with `LABEL_COLOURS` (Okabe-Ito, colour-blind safe) and `label_legend_handles`.
* Functions accept numpy arrays or torch tensors, never call ``plt.show()``, and leave
  closing the figure to the caller (`save_figure` does not close it either).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import ListedColormap, to_rgba
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from hipgen_utils.layout import LABEL_NAMES
from hipgen_utils.metrics import evenly_spaced, perplexity

LABEL_COLOURS = ("#000000", "#56b4e9", "#f0e442", "#009e73", "#d55e00", "#cc79a7")
LABEL_CMAP = ListedColormap(LABEL_COLOURS, name="hipmri_labels")
# Overlay opacity per class: the body covers most of the slice, so it is only tinted.
LABEL_ALPHA = (0.0, 0.18, 0.6, 0.6, 0.6, 0.6)
ERROR_CMAP = "magma"
EXPECTED_SHAPE = "256x128"

# Panel size (inches) for one landscape slice (256 wide x 128 tall after the transpose).
_PANEL_W, _PANEL_H = 3.0, 1.75


# --------------------------------------------------------------------------- helpers


def _np(x) -> np.ndarray:
    """numpy view of an array-like or (CPU/GPU) torch tensor."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def _images(x, name: str) -> np.ndarray:
    """(N, H, W) array from (N, H, W), (N, 1, H, W) or a single (H, W) slice."""
    a = _np(x)
    if a.ndim == 4 and a.shape[1] == 1:
        a = a[:, 0]
    elif a.ndim == 2:
        a = a[None]
    if a.ndim != 3:
        raise ValueError(f"{name} should be (N, H, W) slices, got shape {a.shape}")
    return a


def _slice2d(x, name: str) -> np.ndarray:
    a = _np(x)
    a = a.squeeze() if a.ndim > 2 else a
    if a.ndim != 2:
        raise ValueError(f"{name} should be one (H, W) slice, got shape {_np(x).shape}")
    return a


def _vector(x, name: str, n: int | None = None) -> np.ndarray:
    a = _np(x).reshape(-1)
    if n is not None and a.shape[0] != n:
        raise ValueError(f"{name} has {a.shape[0]} entries but there are {n} images")
    return a


def _grid(n_panels: int, ncols: int, panel=(_PANEL_W, _PANEL_H), extra_h: float = 0.6):
    """(fig, axes (nrows, ncols)) for n_panels landscape panels; spare axes are hidden."""
    if n_panels < 1:
        raise ValueError("nothing to plot: got 0 images")
    ncols = max(1, min(ncols, n_panels))
    nrows = math.ceil(n_panels / ncols)
    fig, axes = plt.subplots(
        nrows,
        ncols,
        figsize=(panel[0] * ncols, panel[1] * nrows + extra_h),
        squeeze=False,
        layout="constrained",
    )
    for ax in axes.flat[n_panels:]:
        ax.set_axis_off()
    return fig, axes


def _orientation_labels(fig: Figure) -> None:
    """Figure-level axis labels explaining how a slice is oriented on screen."""
    fig.supxlabel("left \u2194 right (array axis 0)", fontsize=9)
    fig.supylabel("anterior (top) \u2194 posterior\n(array axis 1)", fontsize=9)


def _log_y(ax, *series) -> str:
    """Log y-axis when some plotted value is positive (else linear, avoiding matplotlib's
    'no positive values' warning, e.g. for an all-zero loss); returns the scale used."""
    vals = np.concatenate([np.asarray(v, dtype=np.float64).ravel() for v in series] or [[]])
    scale = "log" if np.any(np.isfinite(vals) & (vals > 0)) else "linear"
    ax.set_yscale(scale)
    return scale


def label_legend_handles(classes: Sequence[int] = range(1, 6)) -> list[Patch]:
    """Legend patches for label classes (default: the five foreground classes)."""
    return [Patch(facecolor=LABEL_COLOURS[c], edgecolor="k", label=LABEL_NAMES[c]) for c in classes]


def label_rgba(labels) -> np.ndarray:
    """(H, W) int labels 0..5 -> (H, W, 4) float RGBA overlay (background transparent)."""
    lab = _np(labels).astype(np.int64)
    if lab.min(initial=0) < 0 or lab.max(initial=0) >= len(LABEL_NAMES):
        raise ValueError(
            f"labels must be ints in 0..{len(LABEL_NAMES) - 1}, got range {lab.min()}..{lab.max()}"
        )
    table = np.array([to_rgba(c, a) for c, a in zip(LABEL_COLOURS, LABEL_ALPHA)])
    return table[lab]


def code_colormap(n_codes: int, seed: int = 0) -> ListedColormap:
    """Qualitative map with one colour per code: nipy_spectral sampled K times and shuffled
    (fixed seed) so that neighbouring code indices get unrelated colours."""
    colours = plt.get_cmap("nipy_spectral")(np.linspace(0.03, 0.97, max(n_codes, 1)))
    colours = colours[np.random.default_rng(seed).permutation(len(colours))]
    return ListedColormap(colours, name=f"codes{n_codes}")


# --------------------------------------------------------------------------- basics


def save_figure(fig: Figure, path, dpi: int = 120) -> Path:
    """Write `fig` to `path` (parent folders created, tight bounding box); returns the Path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    return path


def show_and_save(fig: Figure, path, dpi: int = 120) -> None:
    """The notebooks' figure cell: save `fig` to `path`, display it once inline, close it.

    Returns None, so a cell that ends with it shows the figure and nothing else."""
    from IPython import get_ipython  # ipywidgets depends on IPython
    from IPython.display import display

    from hipgen_utils.config import profile_name

    if profile_name() == "ci":  # say so on the figure: tiny models trained for seconds
        fig.text(0.5, 0.0, "ci profile: a smoke test of the pipeline (tiny models, seconds of training), not a result",
                 ha="center", va="top", fontsize=8, color="C3")  # fmt: skip
    path = save_figure(fig, path, dpi=dpi)
    if get_ipython() is not None:  # in a kernel; from plain Python saving is all that is wanted
        display(fig)
    plt.close(fig)


def show_slice(ax, img, title=None, cmap="gray", vmin=0.0, vmax=1.0, interpolation=None):
    """Draw one (H, W) slice (axis 0 = left-right, axis 1 = anterior-posterior) on `ax`.

    Shows ``img.T`` with origin "upper": anterior at the top, landscape (W rows x H columns).
    Ticks are hidden (pixel indices carry no anatomy). Returns the AxesImage (for colorbars).
    """
    a = _slice2d(img, "img")
    im = ax.imshow(
        a.T, cmap=cmap, vmin=vmin, vmax=vmax, origin="upper", interpolation=interpolation
    )
    ax.set_xticks([])
    ax.set_yticks([])
    if title is not None:
        ax.set_title(title, fontsize=9)
    return im


def plot_montage(images, titles=None, ncols: int = 4, suptitle=None) -> Figure:
    """Grid of slices. images: (N, H, W) in [0, 1] or a list of 2-D slices of any sizes."""
    if isinstance(images, (list, tuple)):
        imgs = [_slice2d(im, f"images[{i}]") for i, im in enumerate(images)]
    else:
        imgs = list(_images(images, "images"))
    if titles is not None and len(titles) != len(imgs):
        raise ValueError(f"got {len(titles)} titles for {len(imgs)} images")
    fig, axes = _grid(len(imgs), ncols)
    for i, (ax, im) in enumerate(zip(axes.flat, imgs)):
        show_slice(ax, im, title=titles[i] if titles is not None else f"#{i}")
    fig.suptitle(suptitle or f"{len(imgs)} slices")
    _orientation_labels(fig)
    return fig


def plot_strip(images, slice_idx, title=None, n: int = 10) -> Figure:
    """One case-week through the body: n evenly spaced slice positions, in slice order.

    images: (S, H, W) slices of one case-week; slice_idx: (S,) their positions.
    """
    imgs = _images(images, "images")
    pos = _vector(slice_idx, "slice_idx", len(imgs)).astype(np.int64)
    order = np.argsort(pos, kind="stable")
    picks = order[evenly_spaced(len(order), n)]
    fig, axes = _grid(len(picks), ncols=5)
    for ax, i in zip(axes.flat, picks):
        show_slice(ax, imgs[i], title=f"slice {pos[i]}")
    fig.suptitle(title or f"{len(picks)} of {len(imgs)} slices, evenly spaced along the body")
    _orientation_labels(fig)
    return fig


# --------------------------------------------------------------------------- data


def plot_intensity_histograms(raw_values, raw_labels, normalised) -> Figure:
    """Left: raw intensities of a few files (each on its own scale, log counts).
    Right: the same data pooled after normalisation, in [0, 1].

    raw_values: list of arrays (any shape) of raw voxel values; raw_labels: one name each;
    normalised: array of normalised values in [0, 1].
    """
    if len(raw_values) != len(raw_labels):
        raise ValueError(f"got {len(raw_values)} raw arrays but {len(raw_labels)} labels")
    fig, (ax_raw, ax_norm) = plt.subplots(1, 2, figsize=(11, 3.8), layout="constrained")
    for vals, lab in zip(raw_values, raw_labels):
        v = _np(vals).astype(np.float64).ravel()
        lo, hi = np.nanpercentile(v, [0, 100])
        ax_raw.hist(v, bins=100, histtype="step", lw=1.3, label=f"{lab} (max {hi:.4g})")
    ax_raw.set_yscale("log")
    ax_raw.set_xlabel("raw intensity (scanner units)")
    ax_raw.set_ylabel("voxel count (log)")
    ax_raw.set_title("Raw intensities: scales differ per file")
    ax_raw.legend(fontsize=8)
    norm = _np(normalised).astype(np.float64).ravel()
    ax_norm.hist(norm, bins=100, range=(0, 1), color="0.3")
    ax_norm.set_yscale("log")
    ax_norm.set_xlim(0, 1)
    ax_norm.set_xlabel("normalised intensity")
    ax_norm.set_ylabel("voxel count (log)")
    ax_norm.set_title(f"After normalisation ({norm.size:,} voxels)")
    return fig


def _shape_key(k) -> str:
    return "x".join(str(int(s)) for s in k) if isinstance(k, (tuple, list)) else str(k)


def plot_shape_census(census: Mapping, expected: str = EXPECTED_SHAPE) -> Figure:
    """Grouped bars of slice shapes per split, e.g. {"train": {"256x128": n, "256x144": m}}.

    The expected shape is grey; every other shape gets a bright colour, hatching and its
    count written on the bar, so the few odd files stand out on the log axis.
    """
    if not census:
        raise ValueError("census is empty: expected {split: {'HxW': count}}")
    splits = list(census)
    counts = {s: {_shape_key(k): int(v) for k, v in census[s].items()} for s in splits}
    shapes = sorted({k for c in counts.values() for k in c}, key=lambda k: (k != expected, k))
    odd_colours = iter(plt.get_cmap("tab10").colors[1:] * 3)
    x = np.arange(len(splits))
    width = 0.8 / len(shapes)
    fig, ax = plt.subplots(
        figsize=(max(5.0, 1.6 * len(splits) * max(1, len(shapes) / 2)), 3.8), layout="constrained"
    )
    for j, shape in enumerate(shapes):
        ys = np.array([counts[s].get(shape, 0) for s in splits])
        odd = shape != expected
        bars = ax.bar(
            x + (j - (len(shapes) - 1) / 2) * width,
            ys,
            width,
            label=f"{shape}" + (" (unexpected)" if odd else " (expected)"),
            color=next(odd_colours) if odd else "0.65",
            hatch="//" if odd else None,
            edgecolor="k",
        )
        labels = [str(y) if y else "" for y in ys]
        ax.bar_label(bars, labels=labels, fontsize=8, fontweight="bold" if odd else None)
    ax.set_xticks(x, splits)
    ax.set_yscale("log")
    ax.margins(y=0.15)  # room for the count labels above the tallest bar
    ax.set_xlabel("split")
    ax.set_ylabel("number of slices (log)")
    ax.set_title("Slice shapes per split (H x W)")
    ax.legend(fontsize=8)
    return fig


def plot_label_overlays(images, labels, titles=None, ncols: int = 4) -> Figure:
    """Slices with translucent label colours on top. images (N, H, W) [0, 1]; labels (N, H, W) 0..5."""
    imgs = _images(images, "images")
    labs = _images(labels, "labels")
    if labs.shape != imgs.shape:
        raise ValueError(f"labels shape {labs.shape} does not match images shape {imgs.shape}")
    if titles is not None and len(titles) != len(imgs):
        raise ValueError(f"got {len(titles)} titles for {len(imgs)} images")
    fig, axes = _grid(len(imgs), ncols, extra_h=1.0)
    for i, ax in enumerate(axes.flat[: len(imgs)]):
        show_slice(ax, imgs[i], title=titles[i] if titles is not None else f"#{i}")
        # RGBA overlay goes through the same transpose as the slice underneath.
        ax.imshow(label_rgba(labs[i]).transpose(1, 0, 2), origin="upper", interpolation="nearest")
    fig.legend(handles=label_legend_handles(), loc="outside right upper", fontsize=9)
    fig.suptitle("Segmentation labels over the slices")
    _orientation_labels(fig)
    return fig


def plot_class_area_vs_slice(labels, slice_idx, n_slices: int = 60) -> Figure:
    """Mean area (pixels) of each class 1..5 at each slice position (log-y; gaps = class
    absent or no slices there).

    labels: (N, H, W) ints 0..5; slice_idx: (N,) ints in 0..n_slices-1.
    """
    labs = _images(labels, "labels")
    pos = _vector(slice_idx, "slice_idx", len(labs)).astype(np.int64)
    if pos.min() < 0 or pos.max() >= n_slices:
        raise ValueError(f"slice_idx range {pos.min()}..{pos.max()} is outside 0..{n_slices - 1}")
    n_at = np.bincount(pos, minlength=n_slices).astype(np.float64)
    fig, ax = plt.subplots(figsize=(8, 4), layout="constrained")
    for c in range(1, len(LABEL_NAMES)):
        area = (labs == c).sum(axis=(1, 2)).astype(np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.bincount(pos, weights=area, minlength=n_slices) / n_at
        mean[mean == 0] = np.nan  # class absent: leave a gap rather than a drop to -inf
        # dark marker edges keep the pale (yellow, sky-blue) label colours readable on white
        ax.plot(
            np.arange(n_slices),
            mean,
            "-o",
            ms=3.5,
            lw=1.8,
            mec="0.2",
            mew=0.5,
            color=LABEL_COLOURS[c],
            label=LABEL_NAMES[c],
        )
    _log_y(ax, *(ln.get_ydata() for ln in ax.get_lines()))
    ax.set_xlim(-0.5, n_slices - 0.5)
    ax.set_xlabel("slice position")
    ax.set_ylabel("mean area (pixels, log)")
    ax.set_title(f"Class area along the body ({len(labs)} slices; gaps = absent)")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return fig


# --------------------------------------------------------------------------- VQ-VAE


def _series(history: Mapping, key: str, n: int) -> np.ndarray:
    v = np.array([np.nan if x is None else float(x) for x in history[key]], dtype=np.float64)
    if len(v) != n:
        raise ValueError(f"history[{key!r}] has {len(v)} entries but history['step'] has {n}")
    return v


def _require(history: Mapping, keys: Sequence[str], what: str) -> None:
    missing = [k for k in keys if k not in history]
    if missing:
        raise ValueError(f"{what} history is missing {missing}; it has {sorted(history)}")


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


# --------------------------------------------------------------------------- prior


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
    """Sample quality against temperature (rows from `pipeline.temperature_sweep`): the
    Fréchet distance of the samples between its floor (test vs train) and ceiling (unigram
    codes), and the median nearest-neighbour SSIM with the near-copy fraction."""
    if not rows:
        raise ValueError("plot_temperature_sweep: no rows; run pipeline.temperature_sweep first")
    need = ("temperature", "fid_samples", "fid_test_vs_train", "fid_unigram", "nn_ssim_median", "frac_near_copies")
    missing = [k for k in need if k not in rows[0]]
    if missing:
        raise ValueError(f"plot_temperature_sweep: rows lack {missing}; expected pipeline.temperature_sweep output")
    t = np.array([r["temperature"] for r in rows], dtype=np.float64)
    col = {k: np.array([r[k] for r in rows], dtype=np.float64) for k in need[1:]}
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.8), layout="constrained")
    a1.plot(t, col["fid_samples"], "o-", label="samples vs test")
    a1.axhline(col["fid_unigram"].mean(), color="C3", ls=":", label="ceiling: unigram codes")
    a1.axhline(col["fid_test_vs_train"].mean(), color="C2", ls="--", label="floor: train vs test")
    a1.set_xlabel("temperature")
    a1.set_ylabel("Fréchet distance (lower is better)")
    a1.set_title("distance to real slices")
    a1.legend(fontsize=8)
    if col["fid_test_vs_train"].mean() >= col["fid_unigram"].mean():
        # a handful of samples per temperature (ci) cannot rank these distances: say so
        a1.text(
            0.5, 0.5, "floor above ceiling: too few samples to\nmeasure these distances (smoke test)",
            transform=a1.transAxes, ha="center", va="center", fontsize=9, color="C3",
            bbox=dict(facecolor="white", alpha=0.85, edgecolor="C3"),
        )  # fmt: skip
    a2.plot(t, col["nn_ssim_median"], "o-", label="median nearest-neighbour SSIM")
    a2.plot(t, col["frac_near_copies"], "s--", label="near-copies (SSIM > 0.95)")
    a2.set_xlabel("temperature")
    a2.set_ylim(0, 1)
    a2.set_title("likeness to / copying of training slices")
    a2.legend(fontsize=8)
    return fig


def plot_samples(images, titles=None, ncols: int = 4, suptitle=None) -> Figure:
    """Decoded samples, (N, H, W) in [0, 1], as a montage."""
    return plot_montage(
        images,
        titles=titles,
        ncols=ncols,
        suptitle=suptitle or f"{len(_images(images, 'images'))} samples",
    )


def plot_completion(original, kept_rows: int, completion, code_rows: int, order: str = "lr") -> Figure:
    """Original / kept part / completion, side by side.

    original, completion: (H, W) slices in [0, 1]; the first `kept_rows` of `code_rows` code
    lines (in the prior's sampling order) were kept. Order "lr": code row i covers image rows
    i*H/code_rows ... along axis 0 (left-right, horizontal on screen), so the kept part is
    image[:kept_rows * H // code_rows, :]. Order "ap": the lines are code columns along axis 1
    (anterior-posterior, vertical on screen), the kept part image[:, :kept_rows * W // code_rows].
    The discarded part is greyed out and the boundary drawn on every panel.
    """
    orig = _slice2d(original, "original")
    comp = _slice2d(completion, "completion")
    if orig.shape != comp.shape:
        raise ValueError(f"completion shape {comp.shape} does not match original {orig.shape}")
    if order not in ("lr", "ap"):
        raise ValueError(f"order={order!r} must be 'lr' or 'ap' (the prior's sampling order)")
    ap = order == "ap"
    h = orig.shape[1 if ap else 0]
    if code_rows < 1 or h % code_rows:
        raise ValueError(f"code_rows={code_rows} must divide the image {'width' if ap else 'height'} {h}")
    if not 0 <= kept_rows <= code_rows:
        raise ValueError(f"kept_rows={kept_rows} must be in 0..{code_rows}")
    cut = kept_rows * (h // code_rows)
    fig, axes = plt.subplots(
        1, 3, figsize=(_PANEL_W * 3 + 0.4, _PANEL_H + 0.9), layout="constrained"
    )
    show_slice(axes[0], orig, title="original")
    lines = "code columns" if ap else "code rows"
    show_slice(axes[1], orig, title=f"kept: first {kept_rows}/{code_rows} {lines}")
    show_slice(axes[2], comp, title=f"completion (sampled {'below' if ap else 'right of'} line)")
    # After the transpose, image axis 0 is horizontal (x) and axis 1 vertical (y, anterior at
    # the top): for "lr" image rows >= cut are x >= cut, for "ap" image columns >= cut are y >= cut
    span, line = (axes[1].axhspan, "axhline") if ap else (axes[1].axvspan, "axvline")
    if cut < h:
        span(
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
        getattr(ax, line)(cut - 0.5, color="r", lw=1.2, ls="--")
    fig.suptitle(f"Completion: keep the first {lines}, sample the rest")
    _orientation_labels(fig)
    return fig
