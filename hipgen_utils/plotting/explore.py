"""Data-exploration figures (notebook 01): slices along the body, raw and normalised
intensities, slice shapes per split, label overlays and class areas along the body."""

from __future__ import annotations

from collections.abc import Mapping

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from hipgen_utils.layout import LABEL_NAMES
from hipgen_utils.metrics import evenly_spaced
from hipgen_utils.plotting.common import (
    LABEL_COLOURS,
    _grid,
    _images,
    _log_y,
    _np,
    _orientation_labels,
    _vector,
    label_legend_handles,
    label_rgba,
    show_slice,
)

EXPECTED_SHAPE = "256x128"


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
