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
# # 07 · Anatomy check: a judge that sees what the eye sees
#
# **Papers:** O. Ronneberger, P. Fischer, T. Brox, "U-Net: Convolutional Networks for
# Biomedical Image Segmentation", MICCAI 2015 (the segmenter); L. R. Dice, "Measures of the
# Amount of Ecologic Association Between Species", Ecology 1945 (the overlap score); SSIM
# (Wang et al. 2004) and the Fréchet distance (Heusel et al. 2017), as in notebooks 03 and 06.
#
# A radiologist looking at the samples of notebook 06 sees at once what is missing — the
# femoral heads, the left–right symmetric pubic bones. Whole-image statistics do not: a
# Fréchet distance in hand-crafted features can score samples without femoral heads as well
# as real slices. Here the samples are judged through anatomy (docs/judge.md says what each
# number can and cannot tell):
#
# 1. a small **U-Net segmenter** is trained on the training slices and their labels (the
#    classes are read from the labels; a class is *trusted* where its test Dice ≥ 0.85);
# 2. **completion**: the first half of a test slice's codes (in the prior's sampling order)
#    is kept and the prior draws the rest; the completed region is compared with the
#    original by SSIM and, the primary number, by the Dice of the segmenter's labels —
#    beside the true codes (ceiling), unigram codes (floor) and the kept half mirrored
#    across the midline (what symmetry alone gives);
# 3. **anatomy statistics** on equal-sized sets (test slices, samples at the same slice
#    positions, train slices at the same positions, unigram images): area fraction,
#    left–right symmetry and connected components per trusted class, folded into
#    `anatomy_gap` (0 = like real slices, 1 = like unigram images);
# 4. **the femoral heads**: how often a slice's bones hold a left–right pair of round
#    components, samples against test slices at the same positions (`bone_pairs_ratio`,
#    1 = as often as real slices);
# 5. **the bone cortex**: real bone is a dark cortex around brighter marrow, and a blurred
#    blob that the segmenter labels bone is not; per image, how much darker the bone mask's
#    rim is than its core (`bone_cortex_gap`: 0 = like real slices, 1 = like unigram
#    images), beside the VQ-VAE's reconstructions of the test slices (the best a prior can
#    get through this decoder). No statistic of the masks alone can see this;
# 6. **failed samples**: the share of samples with no body drawn (`empty_samples`: a
#    foreground under half the smallest test slice's), which averages hardly see;
# 7. a Fréchet distance in the segmenter's own feature space, to the **training
#    distribution**: train slices at the test positions are the reference, a second,
#    disjoint set of train slices at the same positions the floor (real vs real, the score
#    of a prior that draws exactly what it learned), unigram images the ceiling; and the
#    samples' spread (feature variance) against real slices'. The same distance to the
#    test slices is printed too, but it is no judge: with a test split of a few patients,
#    train slices of many patients sit farther from it than samples that vary too little.

# %% tags=["parameters"]
PROFILE = None  # None -> $HIPGEN_PROFILE, else "demo"; or "full" / "demo" / "ci"
RUN_DIR = None  # None -> $HIPGEN_RUN_DIR, else runs/<profile>
DATA_DIR = None  # None -> the data the VQ-VAE was trained on
TEMPERATURES = (0.5, 0.6, 0.7, 0.8, 0.9, 1.0)  # the samples' anatomy is also measured at these

# %%
import numpy as np

from hipgen_utils import checkpoints, findings, judge, judge_plots, metrics, plotting, segmenter
from hipgen_utils.run import Run

run = Run.open(PROFILE, RUN_DIR, DATA_DIR)
vq, prior, grids = run.vqvae(), run.prior(), run.codes()  # says which notebook to run first when missing
splits, data_cfg = run.splits("train", "test"), run.data_config()

# %% [markdown]
# ## The segmenter
# Trained once per data set and cached as `segmenter.pt` in the run directory (tied to the
# training files, their preparation and the label classes); later runs load it.

# %%
found = segmenter.ensure_segmenter(splits, run.cfg.judge, run.dir, vars(data_cfg), device=run.device)  # a GPU when there is one
if found is not None:
    seg, seg_ckpt = found
    classes = seg_ckpt["classes"]
    names = plotting.LABEL_NAMES
    print(f"segmenter: {seg_ckpt['updates']} updates in {seg_ckpt['seconds']:.0f} s; test Dice per class:")
    for c in classes:
        d = seg_ckpt["test_dice"][str(c)]
        name = names[c] if c < len(names) else str(c)
        print(f"  {c} {name:10s} {d:.3f}  {'trusted' if c != classes[0] and d >= run.cfg.judge.trust_dice else ''}")
    test = splits["test"]
    pick = metrics.evenly_spaced(len(test), 4)
    pred = segmenter.segment(seg, test.images[pick], classes)
    plotting.show_and_save(
        plotting.plot_label_overlays(
            np.concatenate([test.images[pick], test.images[pick]]), np.concatenate([test.labels[pick], pred]),
            [f"true, slice {test.slice[i]}" for i in pick] + [f"segmenter, slice {test.slice[i]}" for i in pick],
        ),
        run.figure("07_segmenter"),
    )  # fmt: skip

# %% [markdown]
# ## Judge the prior
# One call scores completions, anatomy statistics and the segmenter-feature Fréchet
# distance (seeded; the same call gives the same numbers).

# %%
# log: the segmenter's line (trained, or skipped for want of labels) was printed above
report, arrays = judge.judge_prior(prior, vq, grids, splits, run.dir, run.cfg.judge, vars(data_cfg),
                                   temperature=run.cfg.sample.temperature, temperatures=TEMPERATURES,
                                   lead_lines=run.cfg.sample.lead_lines, top_k=run.cfg.sample.top_k,
                                   progress=True, log=lambda line: None)  # fmt: skip
top_k = f"among the {report['top_k']} likeliest codes, " if report["top_k"] else ""
print(f"completions and samples at T = {report['temperature']} ({top_k}the profile's sampling settings; "
      f"the first {report['lead_lines']} code rows at T = 1)")
checkpoints.write_json(run.dir / "anatomy.json", report, indent=1)
keys = [k for k in report if k.startswith(("completion_ssim", "completion_dice")) and "per_class" not in k]
for k in keys:
    print(f"{k:34s} {report[k]:.3f}")

# %% [markdown]
# ## Completions
# Eight test slices: the kept half, two completions by the prior (different seeds), the
# original and the mirror reference. Predicted labels are drawn on top, so missing or
# one-sided bones show in colour.

# %%
m = report["completion_n_slices"]
rows = np.arange(min(8, m))
comps = [arrays["completion_prior"][s * m + rows] for s in range(report["completion_seeds"])]
mirror = arrays["completion_mirror"][rows] if "completion_mirror" in arrays else None
labs = None
if found is not None:
    labs = [segmenter.segment(seg, c, classes) for c in comps] + [None]
    labs += [segmenter.segment(seg, mirror, classes)] if mirror is not None else []
scores = {"completion 1": f"prior: SSIM {report['completion_ssim']:.2f}" + (
    f", Dice {report['completion_dice']:.2f}" if "completion_dice" in report else "")}  # fmt: skip
if mirror is not None:
    scores["mirror of kept half"] = f"SSIM {report['completion_ssim_mirror']:.2f}" + (
        f", Dice {report['completion_dice_mirror']:.2f}" if "completion_dice_mirror" in report else "")  # fmt: skip
plotting.show_and_save(
    judge_plots.plot_completion_grid(arrays["completion_originals"][rows], arrays["completion_region"], comps,
                                     mirror, scores, labs),
    run.figure("07_completion_grid"),
)  # fmt: skip

# %% [markdown]
# ## Samples beside real slices at the same slice positions
# Top row: test slices; bottom row: samples conditioned on the same positions; both with
# the segmenter's labels.

# %%
if "sets" in arrays:
    k = metrics.evenly_spaced(len(arrays["slices"]), 4)
    plotting.show_and_save(
        plotting.plot_label_overlays(
            np.concatenate([arrays["sets"]["test"][k], arrays["sets"]["samples"][k]]),
            np.concatenate([arrays["labels"]["test"][k], arrays["labels"]["samples"][k]]),
            [f"test, slice {arrays['slices'][i]}" for i in k] + [f"sample, slice {arrays['slices'][i]}" for i in k],
        ),
        run.figure("07_samples_labelled"),
    )  # fmt: skip

# %% [markdown]
# ## Anatomy per class, and `anatomy_gap`
# Medians per set and trusted class; the gap's terms compare whole distributions
# (Wasserstein-1 to the test slices, scaled so that real-vs-real is 0 and unigram is 1).

# %%
if "anatomy" in report:
    print(f"{'class':10s} {'set':8s} {'area':>7s} {'symmetry':>9s} {'components':>11s} {'pairs':>6s}")
    for c in report["trusted_classes"]:
        for name in ("test", "train", "samples", "unigram"):
            row = report["anatomy"][name][str(c)]
            print(f"{plotting.LABEL_NAMES[c] if c < 6 else c:10s} {name:8s} {row['area_median']:7.3f} "
                  f"{row['symmetry_median']:9.2f} {row['components_median']:11.1f} {row['pairs_rate']:6.0%}")  # fmt: skip
    print(f"anatomy_gap = {report['anatomy_gap']:.3f} (0 = like real slices, 1 = like unigram images)")
    print(f"Fréchet to the training distribution (segmenter features): samples "
          f"{report['fid_seg_train_samples']:.3f}, floor (other train slices) {report['fid_seg_train_floor']:.3f}, "
          f"ceiling (unigram) {report['fid_seg_train_unigram']:.3f}; the samples vary "
          f"{report['spread_ratio_seg']:.2f}x as much as real slices")
    print(f"  (to the test slices, no judge with few test patients: samples {report['fid_seg_samples']:.3f}, "
          f"train slices {report['fid_seg_test_vs_train']:.3f}, unigram {report['fid_seg_unigram']:.3f})")  # fmt: skip
    plotting.show_and_save(judge_plots.plot_anatomy_gap(report["anatomy_gap_terms"], report["anatomy_gap"]),
                           run.figure("07_anatomy_gap"))  # fmt: skip

# %% [markdown]
# ## The femoral heads
# `anatomy_gap` measures each statistic against the unigram ceiling, which is so far from
# real slices that any image-like bone scores near the floor: it cannot tell blobby bones
# from femoral heads. This count can: a slice counts when the segmenter's bone mask has a
# round component (circularity ≥ 0.7) on each side, mirrored across the body's midline.
# Real slices have such a pair at the femoral-head levels and almost nowhere else.
#
# A pair can be counted and still be drawn too small: the second panel compares the area of
# each paired head with the test slices' (`bone_pair_area_ratio`, samples / test, 1 = as big),
# and shows how big the decoder draws them from the test slices' own codes (reconstruction):
# the size a prior over these codes can reach. Pooled over every level, the ratio also falls
# when samples miss the levels whose pairs are large; `bone_pair_area_ratio_by_level`
# compares the sizes bin by bin. Beside it, the same ratio for real heads: the decoder's
# reconstructions of the test slices, and train slices of other case-weeks at the same
# positions (heads differ from case to case, and the test set holds only a few case-weeks:
# this says how far from 1 real slices land).
#
# A round pair can still be two smooth blobs. Real bone has a dark cortex (1.6–3 px on the
# phantom, near black on T2) around brighter marrow: the cortex contrast compares the mean
# intensity of the bone mask's outer 2 px with that of its core, image by image.

# %%
if "bone_pairs" in report:
    bones = plotting.LABEL_NAMES.index("bones")
    rates = ", ".join(f"{k} {v:.0%}" for k, v in report["bone_pairs"].items())
    print(f"slices with a pair of round bones: {rates}; samples / test = {report['bone_pairs_ratio']:.2f}")
    pixels = arrays["sets"]["test"][0].size
    sizes = ", ".join(f"{k} {v * pixels:.0f}" for k, v in report["bone_pair_area"].items() if np.isfinite(v))
    print(f"area of a paired head (median, pixels): {sizes}; samples / test = {report['bone_pair_area_ratio']:.2f}")
    refs = ", ".join(f"{k} {v:.2f}" for k, v in report["bone_pair_area_ratio_by_level_references"].items())
    print(f"the same level by level (slice bins of the figure, weighted by the test slices' pairs): "
          f"{report['bone_pair_area_ratio_by_level']:.2f} (real heads, the same way: {refs})")
    plotting.show_and_save(
        judge_plots.plot_bone_pairs({k: v[bones]["pairs"] for k, v in arrays["stats"].items()}, arrays["slices"],
                                    sizes={**{k: v[bones]["pair_area"] for k, v in arrays["stats"].items()},
                                           "reconstruction": arrays["bone_pair_area_reconstruction"]}, pixels=pixels),
        run.figure("07_bone_pairs"),
    )  # fmt: skip
if "bone_cortex" in report:
    cortex = ", ".join(f"{k} {v:.3f}" for k, v in report["bone_cortex"].items())
    print(f"bone cortex contrast (median): {cortex}; bone_cortex_gap = {report['bone_cortex_gap']:.2f}")
    plotting.show_and_save(judge_plots.plot_bone_cortex(arrays["bone_cortex"], report["bone_cortex_gap"]),
                           run.figure("07_bone_cortex"))  # fmt: skip
if "empty_samples" in report:
    print(f"samples with no body drawn: {report['empty_samples']:.1%} of {report['n_anatomy']} "
          f"(train slices {report['empty_references']['train']:.0%})")  # fmt: skip

# %% [markdown]
# ## Anatomy against temperature
# The same seed, slice positions and reference sets at each temperature; only the samples
# change (the first `lead_lines` code rows are drawn at T = 1 at every temperature, and
# every code among the profile's `top_k` likeliest, when it sets one). A lower
# temperature smooths the samples; whether that brings their bones closer to real ones, or
# just erases them, is what these curves say. Without the lead rows, lower temperatures
# also left some samples with no body at all (the last column counts them).

# %%
if "temperature_sweep" in report:
    print(" T    anatomy_gap  femoral heads (x test)  their size (x test)  by level  bone symmetry (x test)"
          "  bone_cortex_gap  no body drawn")  # fmt: skip
    for r in report["temperature_sweep"]:
        sym = r.get("bone_symmetry", np.nan) / r.get("bone_symmetry_test", np.nan)
        print(f"{r['temperature']:.1f}  {r['anatomy_gap']:11.3f}  {r.get('bone_pairs_ratio', np.nan):22.2f}  "
              f"{r.get('bone_pair_area_ratio', np.nan):19.2f}  {r.get('bone_pair_area_ratio_by_level', np.nan):8.2f}  "
              f"{sym:22.2f}  {r.get('bone_cortex_gap', np.nan):15.2f}  "
              f"{r['empty_samples']:13.1%}")  # fmt: skip
    plotting.show_and_save(judge_plots.plot_temperature_anatomy(report["temperature_sweep"], report["top_k"]),
                           run.figure("07_temperature_anatomy"))  # fmt: skip

# %% [markdown]
# ## What the numbers say
# A prior that knows the anatomy completes a half slice at least as well as the mirror does
# (`completion_dice` ≥ `completion_dice_mirror`), draws both femoral heads as often as real
# slices show them (`bone_pairs_ratio` near 1) and as big (`bone_pair_area_ratio_by_level`
# near 1), with a dark cortex round their marrow (`bone_cortex_gap` near 0), organs like real
# ones (`anatomy_gap` near 0), samples as varied as real slices (`spread_ratio_seg` near 1)
# and never an empty one. This run's prior, sorted by those tests (`hipgen evaluate --json`
# reports the same keys):

# %%
findings.show("What this run shows:", findings.anatomy(report))

# %% [markdown]
# ## The course in one cell
# What the whole pipeline learned on this data, and what it still gets wrong, from what
# notebooks 03–07 wrote into the run directory:

# %%
findings.show(f"The pipeline on {run.dir}:", findings.course(run.dir, run.prior_checkpoint["history"]))

# %% [markdown]
# **What to try next.**
# * **More updates.** The prior is the part short of compute: the `demo` profile's small
#   prior on a CPU lacks updates more than ideas. The `full` profile (the seed's sizes) is
#   meant for a GPU: `make notebooks PROFILE=full`, or `scripts/slurm_full.sbatch` on a
#   course cluster; compare its judge numbers with these.
# * **Real data.** Point `HIPMRI_DATA` at the HipMRI release and run the notebooks again:
#   every number above is then about real anatomy, and the phantom's are only a rehearsal.
# * **The sampling settings.** `TEMPERATURE` and `TOP_K` in notebook 06 (and the sweep
#   above) trade crisp bones against variety; the judge says which way each setting moves.
# * **The prior's context.** `hipgen bench prior --compare` trains prior variants for the
#   same time and judges them side by side (docs/experiments.md has the ones tried so far,
#   including the attention and two-level priors that lost).
# * **Beyond this course:** a second level of codes as in VQ-VAE-2, or a transformer prior
#   over the codes, are the field's next steps; both need more compute than a laptop has.
