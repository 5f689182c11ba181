"""Figures for the anatomy judge (notebook 07): completions side by side, and the terms of
`anatomy_gap`. Same conventions as `hipgen_utils.plotting` (slices drawn by `show_slice`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from hipgen_utils.judge_stats import slice_bins
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


def plot_bone_pairs(pairs: Mapping, slices, n_bins: int = 10, sizes: Mapping | None = None,
                    pixels: int | None = None) -> Figure:  # fmt: skip
    """Fraction of slices with a left-right pair of round bones (`judge_stats.round_pairs`: the
    femoral heads, at their levels) against slice position, one line per set; with `sizes`,
    a second panel: how big the paired heads are, per set.

    pairs: {set name: (N,) pair counts}, all sets at the same N slice positions `slices`.
    sizes: {set name: (N,) mean area of the slice's paired components as a fraction of the
    slice, NaN without a pair} (`judge_stats.anatomy_stats`' "pair_area"; sets that `pairs` lacks,
    such as the reconstructions, are only in this panel); pixels: the slice's
    pixel count, to show the sizes in pixels (default: fractions)."""
    which, mids = slice_bins(slices, n_bins)
    style = {"test": ("k", "-"), "train": ("C2", "--"), "samples": ("C0", "-"), "unigram": ("C3", ":"),
             "reconstruction": ("C4", "-")}  # fmt: skip
    if sizes is None:
        fig, ax = plt.subplots(figsize=(6.4, 3.4), layout="constrained")
    else:
        fig, (ax, ax2) = plt.subplots(1, 2, figsize=(12, 3.4), layout="constrained", width_ratios=(5, 4))
    for name, counts in pairs.items():
        has = np.asarray(counts) > 0
        rate = np.array([has[which == b].mean() if (which == b).any() else np.nan for b in range(len(mids))])
        color, ls = style.get(name, (None, "-"))
        ax.plot(mids, rate, marker="o", ms=3, color=color, ls=ls, label=f"{name} ({has.mean():.0%} of slices)")
    ax.set_xlabel("slice position")
    ax.set_ylabel("slices with a pair of round bones")
    ax.set_ylim(-0.03, 1.03)
    ax.set_title("Femoral heads: a round bone on each side, mirrored across the midline")
    ax.legend(fontsize=7)
    if sizes is not None:
        scale = pixels or 1
        found = {k: np.asarray(v, float)[np.isfinite(v)] * scale for k, v in sizes.items()}
        found = {k: v for k, v in found.items() if v.size}
        if found:
            names = list(found)
            ax2.boxplot([found[k] for k in names], showfliers=False)
            for j, k in enumerate(names, 1):
                color = style.get(k, ("C7", "-"))[0]
                x = j + np.linspace(-0.15, 0.15, found[k].size) if found[k].size > 1 else np.array([float(j)])
                ax2.plot(x, found[k], ".", ms=3, color=color, alpha=0.6)
            ax2.set_xticks(range(1, len(names) + 1), [f"{k}\n(median {np.median(found[k]):.0f})" if pixels
                                                      else f"{k}\n(median {np.median(found[k]):.4f})" for k in names],
                           fontsize=8)  # fmt: skip
        else:
            ax2.text(0.5, 0.5, "no pair of round bones in any set", ha="center", va="center", transform=ax2.transAxes)
        ax2.set_ylabel("area of a paired head" + (" (pixels)" if pixels else " (fraction of the slice)"))
        ax2.set_title("How big the paired heads are drawn")
    return fig


def plot_bone_cortex(values: Mapping[str, np.ndarray], gap: float | None = None) -> Figure:
    """Histograms of `judge_stats.cortex_contrast` per set ({set: (N,) values, NaN = no bone}):
    how much darker each image's bone rim is than its marrow. Real bone has a dark cortex;
    blurred blobs labelled bone sit to the left, towards the unigram images."""
    fig, ax = plt.subplots(figsize=(7, 3.4), layout="constrained")
    finite = {k: np.asarray(v, float)[np.isfinite(v)] for k, v in values.items()}
    every = np.concatenate([v for v in finite.values() if v.size] or [np.zeros(1)])
    bins = np.linspace(min(0.0, every.min()), max(0.6, every.max()), 31)
    styles = {"test": ("k", "-"), "train": ("C2", "--"), "reconstruction": ("C0", ":"), "samples": ("C1", "-"),
              "unigram": ("C3", "-.")}  # fmt: skip
    for name, v in finite.items():
        if not v.size:
            continue
        color, ls = styles.get(name, (None, "-"))
        ax.hist(v, bins, histtype="step", density=True, color=color, ls=ls, lw=1.6,
                label=f"{name} (median {np.median(v):.2f}, n={v.size})")  # fmt: skip
    ax.set_xlabel("(marrow - rim) / (marrow + rim), image intensity in the bone mask")
    ax.set_ylabel("density")
    title = "Bone cortex: is the bone's rim dark against its marrow?"
    ax.set_title(title if gap is None else f"{title}\nbone_cortex_gap = {gap:.2f} (0 = real, 1 = unigram)")
    if ax.patches:
        ax.legend(fontsize=7)
    else:
        ax.text(0.5, 0.5, "no bone large enough to judge", ha="center", transform=ax.transAxes)
    return fig


def plot_temperature_anatomy(rows: Sequence[Mapping], top_k: int = 0) -> Figure:
    """The anatomy of samples against temperature (`judge_prior(..., temperatures=...)`'s
    "temperature_sweep" rows): `anatomy_gap` and `bone_cortex_gap`, and the femoral heads
    (`bone_pairs_ratio`), their size (`bone_pair_area_ratio` and, level by level,
    `bone_pair_area_ratio_by_level`, when measured) and bone symmetry as fractions of the
    test slices' (1 = like real slices), beside the share of samples with no body drawn
    (`empty_samples`; real slices 0). `top_k`: the samples' top-k at every temperature
    (0 = all codes), said in the title."""
    if not rows:
        raise ValueError("plot_temperature_anatomy: no rows; pass temperatures to judge.judge_prior")
    t = np.array([r["temperature"] for r in rows], dtype=float)
    col = lambda k: np.array([r.get(k, np.nan) for r in rows], dtype=float)  # noqa: E731
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.6), layout="constrained")
    a1.plot(t, col("anatomy_gap"), "o-", color="k", label="anatomy_gap (masks)")
    if np.isfinite(col("bone_cortex_gap")).any():
        a1.plot(t, col("bone_cortex_gap"), "d-", color="C1", label="bone_cortex_gap (dark cortex round the marrow)")
    a1.axhline(0, color="C2", ls="--", lw=1, label="floor: train vs test (real)")
    a1.set_ylim(bottom=-0.02)
    a1.set_xlabel("temperature")
    a1.set_ylabel("0 = real, 1 = unigram (lower is better)")
    a1.set_title("distance to real slices" + (f" (top-{top_k} at every T)" if top_k else ""))
    a1.legend(fontsize=8)
    a2.plot(t, col("bone_pairs_ratio"), "o-", label="slices with both femoral heads")
    if np.isfinite(col("bone_pair_area_ratio")).any():
        a2.plot(t, col("bone_pair_area_ratio"), "^-", color="C4", label="their size (area of a paired head)")
    if np.isfinite(col("bone_pair_area_ratio_by_level")).any():
        a2.plot(t, col("bone_pair_area_ratio_by_level"), "v--", color="C4", alpha=0.6,
                label="their size, level by level")  # fmt: skip
    a2.plot(t, col("bone_symmetry") / col("bone_symmetry_test"), "s--", label="bone left-right symmetry")
    a2.plot(t, col("empty_samples"), "x:", color="C3", label="samples with no body (fraction; test 0)")
    a2.axhline(1, color="k", lw=0.8, ls=":", label="test slices")
    a2.set_ylim(0, max(1.2, np.nanmax(np.append(col("bone_pairs_ratio"), 1.0)) + 0.1))
    a2.set_xlabel("temperature")
    a2.set_ylabel("samples / test slices")
    a2.set_title("bones: what the eye checks first")
    a2.legend(fontsize=8)
    return fig
