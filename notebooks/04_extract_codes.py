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
# # 04 · Extract the code grids
#
# **Paper:** van den Oord et al., "Neural Discrete Representation Learning" (VQ-VAE), NeurIPS
# 2017, section 3.3: the prior is learned after the VQ-VAE, over its codes.
#
# The prior never sees pixels: it models the VQ-VAE's integer code grids (64×32 for a
# 256×128 slice). This notebook encodes every split with the trained VQ-VAE and saves the
# grids with their (case, week, slice) to `RUN_DIR/codes.npz`, tagged with the VQ-VAE's
# weight fingerprint so a prior can never be paired with another VQ-VAE by mistake.

# %% tags=["parameters"]
PROFILE = None  # None -> $HIPGEN_PROFILE, else "demo"; or "full" / "demo" / "ci"
RUN_DIR = None  # None -> $HIPGEN_RUN_DIR, else runs/<profile>
DATA_DIR = None  # None -> the data the VQ-VAE was trained on

# %%
import numpy as np

from hipgen_utils import codes, findings, metrics, pipeline, plotting
from hipgen_utils.run import Run

run = Run.open(PROFILE, RUN_DIR, DATA_DIR)
model = run.vqvae()  # says which notebook to run first when missing
splits = run.splits()  # every split of the data the VQ-VAE was trained on

# %%
path = codes.extract_codes(model, splits, run.dir)
grids = run.codes()  # checked to come from this VQ-VAE
for s in pipeline.SPLITS:
    print(f"{s:9s} codes {grids[f'codes_{s}'].shape} {grids[f'codes_{s}'].dtype}")
print(f"saved {path} (VQ-VAE {grids['vqvae_id']})")

# %% [markdown]
# ## Quantised samples: images beside their code maps
# Each colour is one codebook index; anatomy shows up as regions of consistent codes.

# %%
train = splits["train"]
pick = metrics.evenly_spaced(len(train), 4)
plotting.show_and_save(
    plotting.plot_code_maps(np.asarray(train.images[pick]), grids["codes_train"][pick], n=len(pick)),
    run.figure("04_code_maps"),
)

# %% [markdown]
# ## Codebook usage over the training set

# %%
usage = codes.codebook_usage(grids["codes_train"], grids["n_embeddings"])
print(f"codes used {usage['codes_used']}/{grids['n_embeddings']}, perplexity {usage['perplexity']:.1f}")
plotting.show_and_save(plotting.plot_codebook_usage(usage["counts"], title="codebook usage (train)"),
                       run.figure("04_codebook_usage_train"))  # fmt: skip

# %% [markdown]
# ## Check: decoding the extracted codes gives exactly the reconstructions

# %%
some = np.asarray(train.images[pick])
from_codes = codes.decode_codes(model, grids["codes_train"][pick])
direct = codes.reconstruct_images(model, some)
diff = float(np.abs(from_codes - direct).max())
print(f"max |decode(codes) - reconstruct(image)| = {diff}")
assert diff == 0.0, "extracted codes do not reproduce the reconstructions"

# %% [markdown]
# ## What this run shows

# %%
findings.show("What this run shows:", findings.codes(grids, usage, diff))

# %% [markdown]
# **Next:** `05_train_pixelcnn` learns the distribution of these grids.
