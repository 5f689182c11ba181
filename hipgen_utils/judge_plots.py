"""Figures for the anatomy judge (notebook 07): completions side by side, and the terms of
`anatomy_gap`. Same conventions as `hipgen_utils.plotting` (slices drawn by `show_slice`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from hipgen_utils.plotting.common import (
    _PANEL_H,
    _PANEL_W,
    LABEL_NAMES,
    _orientation_labels,
    label_rgba,
    show_slice,
)


def plot_completion_grid(originals, completed, completions: Sequence, mirror=None, scores: Mapping | None = None,
                         labels: Sequence | None = None) -> Figure:  # fmt: skip
    """One row per test slice: kept half | completions | original | mirror reference.

    originals: (N, H, W); completed: (H, W) bool, the sampled region (greyed in the first
    column); completions: a list of (N, H, W) arrays (one per seed); mirror: (N, H, W) or
    None; scores: optional {column title: text} shown in the column titles; labels:
    optional list of (N, H, W) predicted labels per column after the first, drawn on top."""
    originals = np.asarray(originals)
    cols = ["kept half"] + [f"completion {i + 1}" for i in range(len(completions))] + ["original"]
    stacks = [None, *completions, originals]
    if mirror is not None:
        cols.append("mirror of kept half")
        stacks.append(mirror)
    n = len(originals)
    fig, axes = plt.subplots(n, len(cols), figsize=(_PANEL_W * len(cols), _PANEL_H * n + 0.8),
                             squeeze=False, layout="constrained")  # fmt: skip
    kept = np.where(completed, 0.5, originals)
    for i in range(n):
        for j, (title, stack) in enumerate(zip(cols, stacks)):
            ax = axes[i, j]
            img = kept[i] if stack is None else stack[i]
            head = title if i == 0 else None
            if head and scores and title in scores:
                head = f"{title}\n{scores[title]}"
            show_slice(ax, img, title=head)
            if labels is not None and j > 0 and labels[j - 1] is not None:
                ax.imshow(label_rgba(labels[j - 1][i]).transpose(1, 0, 2), origin="upper", interpolation="nearest")
    fig.suptitle("Completion of test slices: the grey half is sampled by the prior")
    _orientation_labels(fig)
    return fig


def plot_anatomy_gap(terms: Mapping, gap: float) -> Figure:
    """Bar per (class, statistic) term of `anatomy_gap` (0 = real-vs-real floor, 1 = unigram
    ceiling); terms that cannot separate floor from ceiling are shown as 'n/a'."""
    names = list(terms)
    vals = [terms[k]["term"] for k in names]
    fig, ax = plt.subplots(figsize=(max(6, 0.55 * len(names) + 2), 3.6), layout="constrained")
    x = np.arange(len(names))
    shown = np.array([np.nan if v is None else v for v in vals], dtype=float)
    ax.bar(x, np.nan_to_num(shown), color=["C0" if np.isfinite(v) else "0.85" for v in shown])
    for xi, v in zip(x, shown):
        ax.text(xi, (0 if not np.isfinite(v) else v) + 0.03, "n/a" if not np.isfinite(v) else f"{v:.2f}",
                ha="center", fontsize=7)  # fmt: skip
    ax.axhline(0, color="C2", ls="--", lw=1, label="floor: train vs test (real)")
    ax.axhline(1, color="C3", ls=":", lw=1, label="ceiling: unigram codes")
    ax.axhline(gap, color="k", lw=1.2, label=f"anatomy_gap = {gap:.2f}")

    def pretty(k):
        c, s = k.split("/")
        c = int(c)
        return f"{LABEL_NAMES[c] if c < len(LABEL_NAMES) else c}\n{s}"

    ax.set_xticks(x, [pretty(k) for k in names], fontsize=7)
    ax.set_ylabel("distance to test, scaled")
    ax.set_ylim(0, max(1.15, np.nanmax(np.append(shown, gap)) + 0.15))
    ax.set_title("anatomy_gap terms (per trusted class and statistic)")
    ax.legend(fontsize=7, loc="upper left")
    return fig
