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
# # 05 · Train the PixelCNN prior
#
# **Papers:** A. van den Oord, N. Kalchbrenner, K. Kavukcuoglu, "Pixel Recurrent Neural
# Networks" (PixelCNN), ICML 2016; A. van den Oord et al., "Conditional Image Generation with
# PixelCNN Decoders" (gated PixelCNN), NeurIPS 2016; and VQ-VAE (van den Oord et al. 2017),
# which trains such a prior over its codes.
#
# A PixelCNN models the code grid one position at a time in raster order,
# p(c) = ∏ᵢ p(cᵢ | c₍<ᵢ₎, slice position): for every position, a distribution over the
# codebook given everything drawn before it. The gated version has two stacks of
# convolutions, a *vertical* one that sees the rows above and a *horizontal* one that sees
# the row so far, which together have no blind spot; tanh·sigmoid gates; residual and skip
# connections; and a bias per slice position, so you can ask for a slice from a given level
# of the pelvis.
#
# Three additions give a small prior the whole slice (`hipgen_utils/pixelcnn.py`;
# docs/model.md, and docs/experiments.md for what each bought):
#
# * **Dilation** (`v_dilation`). Code rows run along the left–right axis, so the two femoral
#   heads lie 30–40 rows apart. Dilating the vertical convolutions (rows 1, 2, 4, 8 apart,
#   cycled) lets 8 layers of kernel 5 see 61 rows back instead of 17, at no extra cost.
# * **Mirror context** (`mirror`). A pelvis is close to left–right symmetric: once the first
#   half of the rows is drawn, each row r of the second half has its mirror row 63 − r (the
#   partner femoral head) behind it, and a small convolution hands it to every layer. The
#   first half gets nothing from it, so the model stays causal.
# * **Code tables** (`tables`). The output head maps the prior's channels to one logit per
#   code, a matrix of low rank: 32 channels cannot single out one code of 512. Each
#   position's logits also get a learned row per neighbouring code already drawn (left, up,
#   up-left, up-right, and around the mirror position): a bigram model inside the prior.
#
# The score is bits per code (cross-entropy in bits). The baseline beside it is the
# **unigram** model: every code drawn independently from the training histogram. A prior
# that learned anatomy must beat it by a wide margin.
#
# **The budget** is `n_updates` updates of `batch_size` grids, whatever the size of the data
# set: the same cost on the phantom and on the real release (the epochs follow and are
# printed). Run again on a run directory that holds a finished prior, this notebook says so
# and reuses it (an interrupted one continues); `RETRAIN = True` moves the old prior and its
# sample scores into `RUN_DIR/replaced-<time>/` and trains again.

# %% tags=["parameters"]
PROFILE = None  # None -> $HIPGEN_PROFILE, else "demo"; or "full" / "demo" / "ci"
RUN_DIR = None  # None -> $HIPGEN_RUN_DIR, else runs/<profile>
RETRAIN = False  # True: move the run's prior (and its sample scores) aside and train again
# None keeps the profile's value; same names as `hipgen train --mode pixelcnn --<name>`
n_channels = None
n_layers = None
kernel_size = None
conditional = None
n_updates = None  # the budget: updates of batch_size grids, whatever the data set's size
batch_size = None
learning_rate = None
v_dilation = None  # vertical dilation cycle 1, 2, .., v_dilation (1 = off)
mirror = None  # True: the second half of the rows also sees its mirror rows
tables = None  # True: logit tables looked up from the neighbours' (and mirror) codes
device = None

# %%
from dataclasses import asdict

from hipgen_utils import config, findings, metrics, plotting, training
from hipgen_utils.run import Run

run = Run.open(PROFILE, RUN_DIR)
grids = run.codes()  # the VQ-VAE's code grids; says which notebook to run first when missing
cfg = run.cfg

# %% [markdown]
# The parameters cell's values replace the profile's (None keeps it):

# %%
cfg.pixelcnn = config.apply_given(
    cfg.pixelcnn, n_channels=n_channels, n_layers=n_layers, kernel_size=kernel_size,
    conditional=conditional, n_updates=n_updates, batch_size=batch_size, learning_rate=learning_rate,
    v_dilation=v_dilation, mirror=mirror, tables=tables, device=device,
)  # fmt: skip
print(asdict(cfg.pixelcnn))
print({k: v.shape for k, v in grids.items() if k.startswith("codes_")})

# %%
unigram = metrics.unigram_bits_per_code(grids["codes_train"], grids["codes_validate"], grids["n_embeddings"])
print(f"unigram baseline on validation: {unigram:.3f} bits/code "
      f"(uniform over the codebook would be {metrics.np.log2(grids['n_embeddings']):.2f})")  # fmt: skip

# %% [markdown]
# ## What "autoregressive" means here: the causal receptive field
# Before training, change one code of a real grid and see which outputs move. Every
# position's prediction may depend only on the codes *before* it in sampling order (rows
# top to bottom in the grid, i.e. left to right across the body; within a row, in order):
# the change at the marked code must move nothing before it, including itself, and with
# the dilated vertical stack it reaches far down the grid (and, with mirror context, the
# rows around its mirror row in the second half). An untrained model shows this
# as well as a trained one: it is a property of the architecture (shifted convolutions),
# not of the weights.

# %%
import matplotlib.pyplot as plt
import torch

from hipgen_utils.pixelcnn import GatedPixelCNN

probe = GatedPixelCNN.from_config(cfg.pixelcnn, grids["n_embeddings"]).eval()
c0 = torch.as_tensor(grids["codes_train"][:1].astype("int64"))
r, c = c0.shape[1] // 4, c0.shape[2] // 2  # the code we change
c1 = c0.clone()
c1[0, r, c] = (c1[0, r, c] + 1) % grids["n_embeddings"]
y = probe.check_cond(0, 1) if probe.n_conditions else None

def logits(codes):  # the codes go in twice: embedded, and as the code tables' indices
    return probe.forward_embedded(probe.embed(codes), y, codes if probe.tables is not None else None)


with torch.no_grad():
    moved = (logits(c1) - logits(c0)).abs().sum(1)[0] > 0
order = torch.arange(c0[0].numel()).view(c0.shape[1:])  # raster order: row by row
assert not moved[order <= order[r, c]].any(), "a prediction moved that comes before the change"
fig, ax = plt.subplots(figsize=(6, 3.2))
ax.imshow(moved.T.numpy(), cmap="Blues", origin="upper")
ax.plot(r, c, "r+", ms=12, mew=2)
ax.set_title(f"predictions moved by changing code ({r}, {c}) (red): {int(moved.sum())} of {moved.numel()}")
ax.set_xlabel("code row (left → right across the body)")
ax.set_ylabel("code column (anterior ↓)")
plt.show()

# %% [markdown]
# ## Train
# Before the first update the budget and the epochs it makes on this data are printed, and
# after the first few updates the expected time; the progress bar's estimate takes over from
# there. Validation bits and a checkpoint every `log_interval` updates.

# %%
prior, history = training.train_pixelcnn(
    cfg.pixelcnn, grids, grids["n_embeddings"], run.dir, vqvae_id=run.vqvae_id,
    resume=not RETRAIN, overwrite=RETRAIN,  # a finished prior is reused, an interrupted one continued
)
print(
    f"{int(history['step'][-1])} updates ({history['epoch'][-1]:.3g} epochs) in {history['seconds'][-1]:.0f} s; validation "
    f"{history['val_bits'][-1]:.3f} bits/code = {history['val_bits'][-1] / unigram:.2f} x unigram"
)

# %% [markdown]
# ## Bits per code against the unigram line

# %%
plotting.show_and_save(plotting.plot_prior_history(history, unigram), run.figure("05_prior_bits_per_code"))

# %%
test_bits = training.bits_per_code(prior, grids["codes_test"], grids["slice_test"] if prior.n_conditions else None)
test_unigram = metrics.unigram_bits_per_code(grids["codes_train"], grids["codes_test"], grids["n_embeddings"])
print(f"test: prior {test_bits:.3f} bits/code, unigram {test_unigram:.3f} -> ratio {test_bits / test_unigram:.2f}")
print(f"checkpoint: {run.dir / 'pixelcnn.pt'}")

# %% [markdown]
# ## What this run shows

# %%
findings.show("What this run shows:", findings.prior(history, unigram, test_bits, test_unigram))

# %% [markdown]
# **Next:** `06_sample` draws new slices from the prior.
