"""Shared pieces of the figures: label colours, the array checks, panel grids, `show_slice`
(the one place a slice becomes a picture), `plot_montage`, and saving / showing a figure.

The figure modules (`explore`, `reconstruction`, `prior`) build on these; the package's
`__init__` re-exports the public names, so readers use ``hipgen_utils.plotting.<name>``.
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

from hipgen_utils.config import profile_name
from hipgen_utils.layout import LABEL_NAMES

LABEL_COLOURS = ("#000000", "#56b4e9", "#f0e442", "#009e73", "#d55e00", "#cc79a7")
LABEL_CMAP = ListedColormap(LABEL_COLOURS, name="hipmri_labels")
# Overlay opacity per class: the body covers most of the slice, so it is only tinted.
LABEL_ALPHA = (0.0, 0.18, 0.6, 0.6, 0.6, 0.6)

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


def _require(history: Mapping, keys: Sequence[str], what: str) -> None:
    missing = [k for k in keys if k not in history]
    if missing:
        raise ValueError(f"{what} history is missing {missing}; it has {sorted(history)}")


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
