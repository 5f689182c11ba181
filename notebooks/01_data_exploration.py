# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 01 · Data exploration
#
# **What this notebook does.** Finds the data (the real HipMRI 2D-slice release if you
# point `DATA_DIR` or `$HIPMRI_DATA` at it, otherwise the built-in synthetic pelvic phantom,
# written to disk in the same layout and read back through the same NIfTI loader), counts
# the slices per split, checks their shapes and raw intensities, and looks at them: random
# slices, one case-week from the bottom of the pelvis to the top, the label maps, and how
# much of each organ a slice holds at each level.
#
# **Data:** the HipMRI Study on Prostate Cancer (CSIRO): weekly T2-weighted MR scans of the
# male pelvis during radiotherapy, released as 2D axial slices in NIfTI with label maps
# (J. Dowling, P. Greer, "Labelled weekly MR images of the male pelvis", CSIRO Data Access
# Portal). A slice shows the body outline with its bright fat rim, the femoral heads and
# pubic bones low in the pelvis, the prostate between bladder and rectum, and the bladder
# growing towards the top.
#
# **Pipeline.** `01` explore → `02` train the VQ-VAE → `03` SSIM analysis → `04` extract
# codes → `05` train the PixelCNN prior → `06` sample → `07` judge the anatomy.
#
# The profile (`full`, `demo`, `ci`) comes from the parameters cell below or `$HIPGEN_PROFILE`.

# %% tags=["parameters"]
PROFILE = None  # None -> $HIPGEN_PROFILE, else "demo"; or "full" / "demo" / "ci"
RUN_DIR = None  # None -> $HIPGEN_RUN_DIR, else runs/<profile>
DATA_DIR = None  # None -> $HIPMRI_DATA, else the built-in phantom
SEED = 0

# %%
import numpy as np

from hipgen_utils import data, findings, metrics, pipeline, plotting
from hipgen_utils.run import Run

run = Run.open(PROFILE, RUN_DIR, DATA_DIR)  # the profile's config, the run directory, the figure folder
cfg = run.cfg

# %% [markdown]
# ## Where the data comes from
# `resolve_data_dir` takes the argument, else `$HIPMRI_DATA`, else generates the phantom
# once into the cache folder (`$HIPGEN_CACHE`, default `~/.cache/hipgen`) and reuses it.

# %%
root = data.resolve_data_dir(cfg.data.data_dir, cfg.data)
info = data.describe(root)
print("\n".join(data.census_lines(info)))  # what `hipgen info --data_dir DIR` prints

# %% [markdown]
# ## Shape census
# The release is 256×128 except some case-weeks at 256×144 (flagged below); the loader
# harmonises everything to 256×128 (anti-aliased resize by default, centre-crop as an option).

# %%
census = {s: d["shapes"] for s, d in info["splits"].items() if "shapes" in d}
odd = {s: {k: v for k, v in c.items() if k != "256x128"} for s, c in census.items()}
print("not 256x128:", {s: c for s, c in odd.items() if c} or "none")
plotting.show_and_save(plotting.plot_shape_census(census), run.figure("01_shape_census"))

# %% [markdown]
# ## Load the splits (cached)
# Decoded, harmonised and normalised slices are cached as memory-mapped `.npy`, keyed by
# the file list and the options, so the second load is near-instant.

# %%
splits = pipeline.load_splits(cfg.data)
for name, s in splits.items():
    print(f"{name:9s} {s.images.shape} {s.images.dtype}, range [{s.images.min():.2f}, {s.images.max():.2f}]")
train = splits["train"]

# %% [markdown]
# ## Intensities before and after normalisation
# Raw scans differ in scale (the release is not normalised); each slice is mapped to
# [0, 1] by a robust per-image min–max (0.5 and 99.5 percentiles).

# %%
rng = np.random.default_rng(SEED)
picks = rng.choice(len(train), size=min(4, len(train)), replace=False)
raw = [data.read_nifti_slice(train.paths[i]).astype(np.float64).ravel() for i in picks]
raw_labels = [f"case {train.case[i]} wk {train.week[i]} sl {train.slice[i]}" for i in picks]
plotting.show_and_save(
    plotting.plot_intensity_histograms(raw, raw_labels, np.asarray(train.images[picks])),
    run.figure("01_intensity_histograms"),
)

# %% [markdown]
# ## Random slices

# %%
idx = rng.choice(len(train), size=min(12, len(train)), replace=False)
titles = [f"case {train.case[i]} wk {train.week[i]} sl {train.slice[i]}" for i in idx]
plotting.show_and_save(
    plotting.plot_montage(np.asarray(train.images[idx]), titles, ncols=4, suptitle="random training slices"),
    run.figure("01_montage"),
)

# %% [markdown]
# ## One case-week, inferior → superior
# Femoral heads and the pubic bones low, the prostate in the lower-middle third, the
# bladder growing towards the top.

# %%
first = (train.case == train.case[0]) & (train.week == train.week[0])
plotting.show_and_save(
    plotting.plot_strip(np.asarray(train.images[first]), train.slice[first],
                        title=f"case {train.case[0]} week {train.week[0]}"),
    run.figure("01_case_week_strip"),
)  # fmt: skip

# %% [markdown]
# ## Label maps
# 0 background, 1 body, 2 bones, 3 bladder, 4 rectum, 5 prostate.

# %%
if train.labels is None:
    print("no label folders in this release: skipping the label figures")
else:
    lab_idx = metrics.evenly_spaced(first.sum(), 8)
    rows = np.flatnonzero(first)[lab_idx]
    plotting.show_and_save(
        plotting.plot_label_overlays(np.asarray(train.images[rows]), np.asarray(train.labels[rows]),
                                     [f"slice {train.slice[i]}" for i in rows]),
        run.figure("01_label_overlays"),
    )  # fmt: skip
    plotting.show_and_save(
        plotting.plot_class_area_vs_slice(np.asarray(train.labels), train.slice, n_slices=int(train.slice.max()) + 1),
        run.figure("01_class_area_vs_slice"),
    )

# %% [markdown]
# ## What this run shows

# %%
findings.show("What this run shows:", findings.data(info, splits))

# %% [markdown]
# **Next:** `02_train_vqvae` learns to compress each slice into a 64×32 grid of codes.
