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
# # 03 · SSIM analysis on the test split
#
# **Paper:** Z. Wang, A. C. Bovik, H. R. Sheikh, E. P. Simoncelli, "Image Quality Assessment:
# From Error Visibility to Structural Similarity", IEEE Transactions on Image Processing, 2004.
#
# SSIM compares two images window by window through their local means, contrasts and
# correlation, so it rewards a reconstruction that keeps edges and texture where a
# pixel-wise error would reward a blur. Here it is computed with
# `skimage.metrics.structural_similarity` (data range 1.0) between each test slice, which
# the VQ-VAE never saw, and its reconstruction: the distribution, how it varies from the
# bottom to the top of the pelvis, the best and worst slices with their error maps, and
# how the codebook is used. Reads the checkpoint that `02_train_vqvae` wrote.

# %% tags=["parameters"]
PROFILE = None  # None -> $HIPGEN_PROFILE, else "demo"; or "full" / "demo" / "ci"
RUN_DIR = None  # None -> $HIPGEN_RUN_DIR, else runs/<profile>
DATA_DIR = None  # None -> the data the VQ-VAE was trained on
SPLIT = "test"

# %%
import json

import numpy as np

from hipgen_utils import checkpoints, findings, pipeline, plotting
from hipgen_utils.run import Run

run = Run.open(PROFILE, RUN_DIR, DATA_DIR)
model = run.vqvae()  # says which notebook to run first when missing
test = run.splits(SPLIT)[SPLIT]  # the data the VQ-VAE was trained on (DATA_DIR: its folder)

# %%
summary, per_image = pipeline.reconstruction_report(model, test.images, progress=True)
print(json.dumps(summary, indent=1))
checkpoints.write_json(run.dir / f"ssim_{SPLIT}.json", summary)

# %% [markdown]
# ## Distribution
# The 0.6 line is the course's threshold for a reconstruction.

# %%
plotting.show_and_save(plotting.plot_ssim_histogram(per_image["ssim"], line=0.6), run.figure("03_ssim_histogram"))

# %% [markdown]
# ## Against slice position

# %%
plotting.show_and_save(plotting.plot_ssim_vs_slice(per_image["ssim"], test.slice), run.figure("03_ssim_vs_slice"))

# %% [markdown]
# ## Best and worst four

# %%
plotting.show_and_save(
    plotting.plot_best_worst(np.asarray(test.images), per_image["recons"], per_image["ssim"], k=4),
    run.figure("03_best_worst"),
)

# %% [markdown]
# ## Codebook usage on the test split
# Codes used (distinct indices over the whole split) and perplexity (2^entropy of the
# usage histogram; at most `n_embeddings`). A collapsed codebook shows a handful of codes.

# %%
print(f"codes used {summary['codes_used']}/{model.quantizer.n_embeddings}, perplexity {summary['perplexity']:.1f}")
plotting.show_and_save(plotting.plot_codebook_usage(per_image["usage"], title=f"codebook usage ({SPLIT})"),
                       run.figure("03_codebook_usage"))  # fmt: skip

# %% [markdown]
# ## What this run shows

# %%
findings.show("What this run shows:", findings.ssim(summary, per_image["ssim"], test.slice))

# %% [markdown]
# **Next:** `04_extract_codes` encodes every split into code grids for the prior.
