"""Figures for the notebooks: one function per figure, each returns a matplotlib Figure.

Split by reader; every public name is re-exported here, so ``from hipgen_utils import
plotting; plotting.plot_samples(...)`` works whichever module a figure lives in:

* `common`: label colours, `show_slice`, `plot_montage`, `save_figure` / `show_and_save`,
  and the private helpers (array checks, panel grids) the other modules share;
* `explore`: data-exploration figures (notebook 01);
* `reconstruction`: VQ-VAE training, reconstruction, SSIM and codebook figures (notebooks 02-04);
* `prior`: PixelCNN prior, sample and completion figures (notebooks 05-06).

Conventions used everywhere:

* A slice is an (H, W) = (256, 128) array, axis 0 = left-right, axis 1 = anterior-posterior,
  float in [0, 1]. `show_slice` is the ONE place that turns it into a picture: it shows
  ``img.T`` with ``origin="upper"`` so anterior is at the top and the slice is landscape.
* Label maps are (H, W) ints 0..5 = background, body, bones, bladder, rectum, prostate,
  always drawn with `LABEL_COLOURS` (Okabe-Ito, colour-blind safe) and `label_legend_handles`.
* Functions accept numpy arrays or torch tensors, never call ``plt.show()``, and leave
  closing the figure to the caller (`save_figure` does not close it either).
"""

from hipgen_utils.layout import LABEL_NAMES
from hipgen_utils.metrics import evenly_spaced, perplexity
from hipgen_utils.plotting.common import (
    LABEL_ALPHA,
    LABEL_CMAP,
    LABEL_COLOURS,
    label_legend_handles,
    label_rgba,
    plot_montage,
    save_figure,
    show_and_save,
    show_slice,
)
from hipgen_utils.plotting.explore import (
    EXPECTED_SHAPE,
    plot_class_area_vs_slice,
    plot_intensity_histograms,
    plot_label_overlays,
    plot_shape_census,
    plot_strip,
)
from hipgen_utils.plotting.prior import (
    plot_completion,
    plot_prior_history,
    plot_samples,
    plot_temperature_sweep,
)
from hipgen_utils.plotting.reconstruction import (
    ERROR_CMAP,
    code_colormap,
    plot_best_worst,
    plot_code_maps,
    plot_codebook_usage,
    plot_history,
    plot_reconstructions,
    plot_ssim_histogram,
    plot_ssim_vs_slice,
)

__all__ = [
    # shared
    "LABEL_ALPHA",
    "LABEL_CMAP",
    "LABEL_COLOURS",
    "LABEL_NAMES",
    "evenly_spaced",
    "perplexity",
    "label_legend_handles",
    "label_rgba",
    "plot_montage",
    "save_figure",
    "show_and_save",
    "show_slice",
    # notebook 01
    "EXPECTED_SHAPE",
    "plot_class_area_vs_slice",
    "plot_intensity_histograms",
    "plot_label_overlays",
    "plot_shape_census",
    "plot_strip",
    # notebooks 02-04
    "ERROR_CMAP",
    "code_colormap",
    "plot_best_worst",
    "plot_code_maps",
    "plot_codebook_usage",
    "plot_history",
    "plot_reconstructions",
    "plot_ssim_histogram",
    "plot_ssim_vs_slice",
    # notebooks 05-06
    "plot_completion",
    "plot_prior_history",
    "plot_samples",
    "plot_temperature_sweep",
]
