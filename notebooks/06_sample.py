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
# # 06 · Sample new slices
#
# **Papers:** VQ-VAE (van den Oord et al. 2017) and VQ-VAE-2 (A. Razavi, A. van den Oord,
# O. Vinyals, "Generating Diverse High-Fidelity Images with VQ-VAE-2", NeurIPS 2019): sample a
# code grid from the prior, decode it. Top-k sampling: A. Fan, M. Lewis, Y. Dauphin,
# "Hierarchical Neural Story Generation", ACL 2018. The Fréchet distance: M. Heusel et al.,
# "GANs Trained by a Two Time-Scale Update Rule Converge to a Local Nash Equilibrium",
# NeurIPS 2017.
#
# A new slice is drawn one code at a time, in the order the prior was trained on: for each
# position, the prior gives a distribution over the codebook given every code drawn so far,
# one code is drawn from it, and the next position sees it. When the grid is full, the
# VQ-VAE's decoder turns it into an image. First the loop written out by hand, then the
# package's fast sampler (`hipgen_utils.sampling.sample`, the plain function behind
# `hipgen predict` and the sliders below), checked to draw the same codes; then the samples
# themselves, and numbers that say how good they are.

# %% tags=["parameters"]
PROFILE = None  # None -> $HIPGEN_PROFILE, else "demo"; or "full" / "demo" / "ci"
RUN_DIR = None  # None -> $HIPGEN_RUN_DIR, else runs/<profile>
# None keeps the profile's sampling settings (SampleConfig: 16 samples; demo T = 1 among the
# 8 likeliest codes, full T = 0.7 among all; 8 lead rows at T = 1; seed 0)
N_SAMPLES = None
TEMPERATURE = None
LEAD_LINES = None  # code rows drawn at T = 1 first (0 = none)
TOP_K = None  # 0 = off
SEED = None

# %%
import json

import numpy as np

from hipgen_utils import checkpoints, codes, config, findings, pipeline, plotting, sampling, widgets
from hipgen_utils.run import Run

run = Run.open(PROFILE, RUN_DIR)
vq, prior, grids = run.vqvae(), run.prior(), run.codes()  # says which notebook to run first when missing
cfg = run.cfg

# %%
S = cfg.sample = config.apply_given(cfg.sample, n_samples=N_SAMPLES, temperature=TEMPERATURE, top_k=TOP_K, seed=SEED,
                                    lead_lines=LEAD_LINES)  # fmt: skip
shape = grids["codes_train"].shape[1:]
print(f"prior: {prior.n_codes} codes, {'conditional on slice position' if prior.n_conditions else 'unconditional'}; grid {shape}")

# %% [markdown]
# ## Sampling, written out by hand
# For the position (r, c), with everything before it already drawn:
#
# 1. **logits**: the prior's scores ℓ for the K codes at (r, c) (one forward pass over the
#    grid; causality makes the not-yet-drawn positions irrelevant);
# 2. **temperature** T: p = softmax(ℓ / T). Below 1 it sharpens the distribution towards the
#    likeliest codes, above 1 it flattens it;
# 3. **top-k**: keep the k likeliest codes and give the others probability 0 (k = 0 keeps
#    all). It removes the rare codes that scatter speckle through a structure, and leaves
#    the rest at the prior's own odds;
# 4. **one draw**: a uniform number u in [0, 1) picks the first code whose cumulative
#    probability exceeds u (inverse-CDF sampling);
# 5. **the raster loop**: row by row, left to right in each row;
# 6. **lead rows**: the first `lead_lines` rows are drawn at T = 1, whatever T is. Below 1,
#    every choice leans towards the likeliest code, and at the slice's edge that is air, row
#    after row: the body would begin late, or never. The lead rows hold the air and the
#    body's edge.
#
# The cell draws the first rows of two samples this way, then asks the fast sampler for the
# whole grids with the same seed (the same uniforms) and checks that its first rows are the
# same codes. The fast sampler gets its speed from caching each row's vertical stack; the
# draw itself is this one.

# %%
import torch

n, rows, H, W = 2, 3, *shape
dev = next(prior.parameters()).device
cond = pipeline.spread_slices(prior, n)  # slice positions spread over the pelvis (None: unconditional)
u = torch.rand(n, H, W, generator=torch.Generator().manual_seed(S.seed), dtype=torch.float64)  # as `sample` draws them
drawn = torch.zeros(n, H, W, dtype=torch.long)
with torch.no_grad():
    for r in range(rows):  # the raster loop
        T = 1.0 if r < S.lead_lines else S.temperature  # lead rows at T = 1
        for c in range(W):
            logits = prior(drawn.to(dev), cond)[:, :, r, c].double().cpu()  # (n, K): given everything before (r, c)
            if S.top_k:  # top-k: every code outside the k likeliest gets probability 0
                kth = logits.topk(S.top_k, dim=1).values[:, -1:]
                logits = logits.masked_fill(logits < kth, float("-inf"))
            p = torch.softmax(logits / T, dim=1)  # temperature
            cdf = p.cumsum(1)
            drawn[:, r, c] = torch.searchsorted(cdf, (u[:, r, c] * cdf[:, -1])[:, None], right=True)[:, 0]  # one draw
fast = sampling.sample(prior, n, temperature=S.temperature, top_k=S.top_k, seed=S.seed, condition=cond,
                       shape=shape, lead_lines=S.lead_lines)  # fmt: skip
same = torch.equal(fast[:, :rows], drawn[:, :rows])
print(f"the first {rows} rows of {n} samples, drawn by hand and by the fast sampler: "
      f"{'the same codes' if same else 'DIFFERENT codes'} ({rows * W * n} draws)")
assert same, "the hand-written loop and sampling.sample drew different codes"

# %% [markdown]
# ## A grid of samples
# Spread over the pelvis when the prior is conditional (slice positions evenly spaced).

# %%
cond = pipeline.spread_slices(prior, S.n_samples)  # None for an unconditional prior
sample_codes, samples = pipeline.generate(
    prior, vq, S.n_samples, temperature=S.temperature, top_k=S.top_k, seed=S.seed, condition=cond, shape=shape,
    progress=True, lead_lines=S.lead_lines,
)  # fmt: skip
titles = None if cond is None else [f"slice {int(s)}" for s in cond]
plotting.show_and_save(
    plotting.plot_samples(samples, titles, ncols=4,
                          suptitle=f"samples (T={S.temperature}{f', top-{S.top_k}' if S.top_k else ''}, seed={S.seed})"),
    run.figure("06_samples"),
)

# %% [markdown]
# ## Temperature
# Lower temperatures sharpen every conditional distribution: smoother, more typical
# slices, less variety. Same seed and slice positions in each row. Which temperature is
# best is measured at the end of this notebook, not judged by eye.

# %%
temps = (1.0, 0.8, 0.6)
pos = None if cond is None else cond[:: max(1, len(cond) // 4)][:4]
rows = pipeline.samples_at_temperatures(prior, vq, temps, 4, seed=S.seed, condition=pos, shape=shape,
                                        lead_lines=S.lead_lines, top_k=S.top_k)  # fmt: skip
plotting.show_and_save(
    plotting.plot_samples(np.concatenate(rows), [f"T={t}" for t in temps for _ in range(4)], ncols=4,
                          suptitle="the same seed at three temperatures" + (f", top-{S.top_k}" if S.top_k else "")),
    run.figure("06_temperature"),
)  # fmt: skip

# %% [markdown]
# ## Interactive: temperature, top-k, seed, number, slice position, completion
# Move the sliders (in Jupyter). Completion keeps the first k rows of a test image's codes
# (the left part of the slice on screen) and samples the rest. Below the panel we drive it
# from code, so a callback that raises fails the notebook instead of hiding inside the widget.

# %%
splits = run.splits("train", "test")
test = splits["test"]
panel = widgets.SamplerPanel(
    prior, lambda c: codes.decode_codes(vq, np.asarray(c)), test_codes=grids["codes_test"],
    test_images=np.asarray(test.images), test_slices=grids["slice_test"], shape=shape, max_samples=16,
    temperature=S.temperature, lead_lines=S.lead_lines, top_k=S.top_k,
)  # fmt: skip
panel.widget

# %%
# drive the panel from code: each change must render without raising
renders = panel.n_renders
panel.n.value = 4
panel.temperature.value = 0.8
panel.seed.value = 7
assert panel.error is None and panel.n_renders > renders, "the sampler panel did not render"
assert panel.last_images.shape[0] == 4 and np.isfinite(panel.last_images).all()
panel.mode.value = "completion"
panel.keep_rows.value = panel.lines // 2
assert panel.error is None and panel.last_images.shape[0] >= 1
print(f"panel rendered {panel.n_renders - renders} times from code; last output {panel.last_images.shape}")

# %% [markdown]
# ## Completion: keep the first half of a test slice's codes, sample the rest
# The sampler takes the first 32 code rows of a real grid as given (the left half of the
# body, left to right on screen) and draws the rest: does the prior draw the other side of
# the same pelvis?

# %%
i = len(test) // 2
keep = sampling.kept_lines(shape, 0.5)
_, completed = pipeline.complete_slices(
    prior, vq, grids["codes_test"][i : i + 1], grids["slice_test"][i : i + 1], temperature=S.temperature, seed=S.seed,
    lead_lines=S.lead_lines, top_k=S.top_k,
)  # fmt: skip
lines = sampling.kept_lines(shape, 1.0)
plotting.show_and_save(
    plotting.plot_completion(np.asarray(test.images[i]), keep, completed[0], code_rows=lines),
    run.figure("06_completion"),
)

# %% [markdown]
# ## Sample quality, measured
# * bits per code on the test split vs the unigram baseline;
# * median nearest-neighbour SSIM of the samples to the training images (anatomy-like) and
#   the fraction above 0.95 (near-copies of training slices);
# * Fréchet distance to the training distribution (`fid_train_samples`): samples against
#   a set of training slices, with a disjoint set of training slices as the floor
#   (`fid_train_floor`, what a prior that draws exactly what it learned would score) and
#   unigram images as the ceiling; `spread_ratio` is how varied the samples are against
#   real slices (feature variance; below 1, too alike).
# * The same distance to the test images (`fid_samples`, `fid_test_vs_train`,
#   `fid_unigram`), kept for comparison with earlier reports but no judge: with a test
#   split of a few patients the training slices (many patients) sit farther from it than
#   samples that vary too little, so it once scored samples without femoral heads
#   *better* than real slices.
#
# The Fréchet distance compares the mean and covariance of hand-crafted features; a small
# structure that is missing everywhere (femoral heads, say) moves it little. Judge the
# grids above by eye, and by notebook 07, which measures anatomy through a segmenter.

# %%
report, arrays = pipeline.prior_report(prior, vq, grids, splits, n_samples=cfg.sample.n_eval_samples,
                                       temperature=S.temperature, seed=S.seed, lead_lines=S.lead_lines,
                                       top_k=S.top_k)  # fmt: skip
print(json.dumps(report, indent=1))
checkpoints.write_json(run.dir / "sample_quality.json", report)
plotting.show_and_save(
    plotting.plot_samples(arrays["unigram"][:8], ncols=4, suptitle="unigram reference (codes drawn independently)"),
    run.figure("06_unigram_reference"),
)

# %% [markdown]
# ## Copying against temperature
# The same seed and slice positions at a few temperatures: a rising near-copy fraction at
# low temperature would mean the prior is replaying training slices. (Fewer samples per
# temperature than above, `n_sweep_samples`: compare the rows with each other.) Whether the
# anatomy gets better or worse with the temperature is measured in notebook 07
# (`07_temperature_anatomy.png`). The rows also give the Fréchet distance to the training
# distribution against its floor, and the samples' spread against real slices': a
# temperature that made the samples alike would show here as a falling spread.

# %%
sweep = pipeline.temperature_sweep(
    prior, vq, grids, splits, (0.5, 0.6, 0.7, 0.8, 0.9, 1.0), n_samples=cfg.sample.n_sweep_samples, seed=S.seed,
    lead_lines=S.lead_lines, top_k=S.top_k,
)
print(" T   nn-SSIM  near-copies  Fréchet to train (floor)  spread")
for r in sweep:
    fid = (f"{r['fid_train_samples']:10.4f} ({r['fid_train_floor']:.4f})  {r['spread_ratio']:6.2f}"
           if "fid_train_samples" in r else "")  # fmt: skip
    print(f"{r['temperature']:.1f}  {r['nn_ssim_median']:7.3f}  {r['frac_near_copies']:11.3f}  {fid}")
checkpoints.write_json(run.dir / "temperature_sweep.json", sweep)
plotting.show_and_save(plotting.plot_temperature_sweep(sweep), run.figure("06_temperature_sweep"))

# %% [markdown]
# ## What this run shows
# From this run's numbers (the cells above); notebook 07 judges the anatomy.

# %%
findings.show("What this run shows:", findings.samples(report, sweep))

# %% [markdown]
# **Next:** `07_anatomy_check` measures the anatomy: a segmenter trained on the labels
# scores completions and sets of samples, class by class.
