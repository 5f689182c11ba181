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
# # 02 · Train the VQ-VAE
#
# **Paper:** A. van den Oord, O. Vinyals, K. Kavukcuoglu, "Neural Discrete Representation
# Learning" (VQ-VAE), NeurIPS 2017.
#
# The VQ-VAE compresses a 256×128 slice into a 64×32 grid of integers, each an index into a
# learned codebook of `n_embeddings` vectors: an encoder, a nearest-neighbour lookup in the
# codebook, and a decoder. This notebook first walks one batch through an untrained model,
# step by step, then trains it and looks at what it learned.
#
# Run again on a run directory that holds a finished checkpoint, this notebook says so and
# reuses it (an interrupted one continues where it stopped; other settings than the
# checkpoint's are refused in one line). `RETRAIN = True` moves the old checkpoint and
# everything computed from it (codes, prior, scores) into `RUN_DIR/replaced-<time>/` and
# trains again.

# %% tags=["parameters"]
PROFILE = None  # None -> $HIPGEN_PROFILE, else "demo"; or "full" / "demo" / "ci"
RUN_DIR = None  # None -> $HIPGEN_RUN_DIR, else runs/<profile>
DATA_DIR = None  # None -> $HIPMRI_DATA, else the built-in phantom
RETRAIN = False  # True: move the run's VQ-VAE (and what depends on it) aside and train again
# None keeps the profile's value; same names as `hipgen train --mode vq_vae --<name>`
batch_size = None
n_updates = None
n_hiddens = None
n_residual_hiddens = None
n_residual_layers = None
embedding_dim = None
n_embeddings = None
beta = None
learning_rate = None
log_interval = None
device = None

# %%
from dataclasses import asdict

import numpy as np

from hipgen_utils import config, devices, findings, metrics, pipeline, plotting, training
from hipgen_utils.run import Run

run = Run.open(PROFILE, RUN_DIR, DATA_DIR)  # the profile's config, the run directory, the figure folder
cfg = run.cfg

# %% [markdown]
# The parameters cell's values replace the profile's (None keeps it):

# %%
cfg.vqvae = config.apply_given(
    cfg.vqvae, batch_size=batch_size, n_updates=n_updates, n_hiddens=n_hiddens,
    n_residual_hiddens=n_residual_hiddens, n_residual_layers=n_residual_layers,
    embedding_dim=embedding_dim, n_embeddings=n_embeddings, beta=beta,
    learning_rate=learning_rate, log_interval=log_interval, device=device,
)  # fmt: skip
print(asdict(cfg.vqvae))
print("device:", devices.pick_device(cfg.vqvae.device))

# %%
splits = pipeline.load_splits(cfg.data, ("train", "validate"))
print({k: v.images.shape for k, v in splits.items()})

# %% [markdown]
# ## One batch through the model, step by step
# What `VQVAE.forward` does, written out on four validation slices with an untrained model
# (the mechanics do not depend on the weights; training only moves the numbers):
# 1. the **encoder** (two stride-2 convolutions, residual blocks, a 1×1 projection) turns
#    each 4×4 pixel patch into one `embedding_dim`-long vector z_e;
# 2. the **quantiser** measures the squared distance from every z_e to every codebook
#    entry and keeps the nearest one (argmin): that index is the *code*, the entry e is
#    what the decoder sees;
# 3. the **decoder** (mirror image of the encoder) paints the slice back from the entries.
#
# The argmin has no gradient, so training passes the decoder's gradient straight through
# to z_e (`z_e + (e − z_e).detach()`: forward value e, gradient as if it were z_e). The
# loss has three parts: the reconstruction error (MSE), the commitment β‖z_e − sg(e)‖² that
# keeps the encoder close to its codes, and the codebook's own update: here an exponential
# moving average of the vectors assigned to each code (`codebook="ema"`), so that part has
# no loss term; with `codebook="loss"` it is ‖sg(z_e) − e‖².

# %%
import torch
import torch.nn.functional as F

from hipgen_utils.vqvae import VQVAE

torch.manual_seed(cfg.vqvae.seed)
model = VQVAE.from_config(cfg.vqvae).eval()
x = torch.as_tensor(np.array(splits["validate"].images[:4]))[:, None]
with torch.no_grad():
    z_e = model.pre_quantization(model.encoder(x))  # (B, D, H/4, W/4)
    flat = z_e.permute(0, 2, 3, 1).reshape(-1, z_e.shape[1])  # one row per code position
    book = model.quantizer.embedding  # (K, D)
    # (positions, K) squared distances ||z||^2 - 2 z.e + ||e||^2, computed as the quantiser does
    dist = torch.addmm((book * book).sum(1), flat, book.t(), beta=1.0, alpha=-2.0) + (flat * flat).sum(1, keepdim=True)
    codes = dist.argmin(1)  # the nearest entry = the code
    e = book[codes]
    z_q = (flat + (e - flat).detach()).view(z_e.shape[0], *z_e.shape[2:], -1).permute(0, 3, 1, 2)
    x_hat = model.decoder(z_q)
print(f"slices x {tuple(x.shape)} -> encoder z_e {tuple(z_e.shape)} -> distances {tuple(dist.shape)} "
      f"-> codes {tuple(codes.view(z_e.shape[0], *z_e.shape[2:]).shape)} -> entries z_q {tuple(z_q.shape)} "
      f"-> decoder {tuple(x_hat.shape)}")  # fmt: skip
assert torch.equal(codes.view(z_e.shape[0], *z_e.shape[2:]), model.encode(x)), "the written-out steps are the model's"
recon, commit = F.mse_loss(x_hat, x).item(), model.quantizer.beta * F.mse_loss(flat, e).item()
print(f"reconstruction MSE {recon:.5f} + commitment {commit:.5f} (beta {model.quantizer.beta}) "
      f"+ codebook: {'EMA update, no loss term' if model.quantizer.codebook == 'ema' else f'{F.mse_loss(e, flat).item():.5f}'}")

# %% [markdown]
# ## Train
# Loss = reconstruction MSE + commitment; the codebook follows its vectors by moving
# averages. Every `log_interval` updates the validation SSIM, the codes in use and the
# codebook's perplexity are logged and the checkpoint (model, optimiser, config, history) is
# written atomically to `RUN_DIR/vqvae.pt`. The budget and the expected time are printed
# first; then a progress bar shows the loss, validation SSIM and codes in use.

# %%
model, history = training.train_vqvae(
    cfg.vqvae, splits["train"].images, splits["validate"].images, run.dir,
    resume=not RETRAIN, overwrite=RETRAIN,  # a finished run is reused, an interrupted one continued
    extra={"data": asdict(cfg.data), "profile": cfg.profile},
)  # fmt: skip
print(
    f"{int(history['step'][-1])} updates in {history['seconds'][-1]:.0f} s; "
    f"validation SSIM {history['val_ssim'][-1]:.4f}; codes used {int(history['codes_used'][-1])}"
    f"/{cfg.vqvae.n_embeddings}; perplexity {history['perplexity'][-1]:.1f}"
)

# %% [markdown]
# ## Curves
# Reconstruction, embedding and total loss (train vs validation), validation SSIM with the
# 0.6 line, and codebook use.

# %%
plotting.show_and_save(plotting.plot_history(history, ssim_line=0.6), run.figure("02_training_curves"))

# %% [markdown]
# ## Originals vs reconstructions (validation)

# %%
val = splits["validate"]
pick = metrics.evenly_spaced(len(val), 6)
summary, per_image = pipeline.reconstruction_report(model, val.images[pick])
plotting.show_and_save(
    plotting.plot_reconstructions(np.asarray(val.images[pick]), per_image["recons"], n=len(pick), ssim=per_image["ssim"]),
    run.figure("02_reconstructions"),
)
print(f"checkpoint: {run.dir / 'vqvae.pt'}")

# %% [markdown]
# ## What this run shows

# %%
findings.show("What this run shows:", findings.vqvae(history, cfg.vqvae.n_embeddings))

# %% [markdown]
# **Next:** `03_ssim_analysis` scores the test split.
