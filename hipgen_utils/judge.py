"""The anatomy judge: numbers that go wrong when the anatomy is wrong.

Whole-image statistics cannot tell a slice without femoral heads from a real one (the HOG
Fréchet distance once scored the samples *better* than real slices). The judge looks at what
a radiologist looks at, through a small segmenter trained on the data's labels
(`hipgen_utils.segmenter`); the statistics themselves are pure functions in
`hipgen_utils.judge_stats`, and docs/judge.md says what each number can and cannot tell.

`judge_prior` runs four parts, each a function here:

1. `_completions`: keep the first half of test slices' code rows, let the prior draw the rest
   (several seeds), decode, and compare with the original on the completed half only: SSIM
   and, the primary number, the Dice of the segmenter's labels against the true labels.
   References: the true codes decoded (ceiling), the second half drawn from the unigram
   histogram (floor), and the kept half mirrored (what symmetry alone gives).
2. `_anatomy`: the segmenter labels equal-sized sets of test slices, samples (at the test
   slices' positions), train slices (same positions: real against real, the floor) and
   unigram images (the ceiling); `judge_stats` turns them into `anatomy_gap`, the femoral-head
   pairs and their size, the bone cortex and the empty samples.
3. `_sweep`: the same statistics for samples at other temperatures.
4. `_frechet`: the Fréchet distance in the segmenter's feature space to the training
   distribution, with a floor that is one (a second train set) and a ceiling (unigram images).
"""

from __future__ import annotations

import numpy as np
import torch

from hipgen_utils import judge_stats as S
from hipgen_utils.codes import decode_codes
from hipgen_utils.config import JudgeConfig
from hipgen_utils.metrics import sample_unigram_codes
from hipgen_utils.pipeline import generate
from hipgen_utils.sample_quality import FrechetReference, frechet_distance, train_referenced
from hipgen_utils.sampling import keep_first
from hipgen_utils.segmenter import bottleneck_features, dice_per_class, ensure_segmenter, segment


def judge_prior(prior, vqvae, codes: dict, splits: dict, run_dir, cfg=None, data_cfg: dict | None = None,
                *, temperature: float = 1.0, temperatures=(), device=None, progress: bool = False,
                log=print, lead_lines: int = 0, top_k: int | None = None) -> tuple[dict, dict]:  # fmt: skip
    """Completion scores, anatomy statistics, `anatomy_gap`, the paired round bones and the
    segmenter-feature Fréchet distance of a prior (see the module docstring).

    codes: `codes.load_codes` output; splits: {"train", "test"} SliceSets; cfg: a JudgeConfig
    (default: the defaults); data_cfg: the data config dict (ties the cached segmenter to it);
    temperature: of the completions and the samples (summary["temperature"]; the first
    `lead_lines` rows at 1, `sampling.sample`, summary["lead_lines"]), among the `top_k`
    likeliest codes at every position (None or 0: all; summary["top_k"], 0 for all);
    temperatures: also score samples drawn at these temperatures (same seed and positions,
    the same floor and ceiling sets) into summary["temperature_sweep"] (`judge_stats.sweep_row`).
    Returns (summary, arrays): a JSON-ready dict, and images/labels for the figures. Without
    label folders only the SSIM part of the completion score is computed. `log` takes the
    segmenter's one-line messages."""
    cfg = cfg or JudgeConfig()
    device = device if device is not None else next(prior.parameters()).device
    draw = dict(temperature=temperature, lead_lines=lead_lines, top_k=top_k, device=device,
                shape=codes["codes_test"].shape[1:])  # fmt: skip
    summary: dict = {"temperature": float(temperature), "lead_lines": int(lead_lines), "top_k": int(top_k or 0)}
    arrays: dict = {}
    found = ensure_segmenter(splits, cfg, run_dir, data_cfg, device=device, progress=progress, log=log)
    seg = None if found is None else _Segmenter(*found, cfg.trust_dice)
    if seg is not None:
        summary.update(seg.summary())
    _completions(prior, vqvae, codes, splits["test"], cfg, seg, draw, summary, arrays)
    if seg is None:
        return summary, arrays
    sets, labels, stats, where = _anatomy(prior, vqvae, codes, splits, cfg, seg, draw, summary, arrays)
    sweep = _sweep(prior, vqvae, temperatures, seg, sets, labels, stats, where, draw, cfg.seed)
    if sweep:
        summary["temperature_sweep"] = sweep
    summary["n_anatomy"] = len(where["t_idx"])
    summary.update(_frechet(splits["train"], sets, seg, where, cfg))
    return summary, arrays


class _Segmenter:
    """The cached segmenter, its classes and the classes trusted to be judged (test Dice at
    least `trust_dice`)."""

    def __init__(self, model, ckpt: dict, trust_dice: float):
        self.model, self.classes = model, list(ckpt["classes"])
        self.test_dice = {int(k): v for k, v in ckpt["test_dice"].items()}
        self.background = self.classes[0]
        self.trusted = [c for c in self.classes[1:] if self.test_dice.get(c, 0.0) >= trust_dice]
        self.seconds = float(ckpt.get("seconds", 0.0))

    def summary(self) -> dict:
        return {"segmenter_test_dice": {str(c): self.test_dice[c] for c in self.classes},
                "trusted_classes": self.trusted, "segmenter_seconds": self.seconds}  # fmt: skip

    def labels(self, images) -> np.ndarray:
        return segment(self.model, images, self.classes)

    def stats(self, images, labels=None, classes=None) -> dict:
        labels = self.labels(images) if labels is None else labels
        return S.anatomy_stats(labels, self.trusted if classes is None else classes, self.background, images)


def _completions(prior, vqvae, codes, test, cfg, seg, draw, summary, arrays) -> None:
    """Complete `cfg.n_completion` test slices `cfg.completion_seeds` times each and score the
    completed half (SSIM; with a segmenter the Dice per trusted class) beside the references."""
    idx = S._subset(len(test), cfg.n_completion, cfg.seed)
    true_codes = np.asarray(codes["codes_test"])[idx].astype(np.int64)
    originals = np.asarray(test.images[idx], np.float32)
    cond = np.asarray(codes["slice_test"])[idx] if getattr(prior, "n_conditions", 0) else None
    grid = draw["shape"]
    kept, completed, side = S.kept_region(grid, originals.shape[1:])
    prefix = keep_first(torch.as_tensor(true_codes), 0.5)
    candidates = {"reconstruction": decode_codes(vqvae, true_codes, device=draw["device"])}
    candidates["prior"] = np.concatenate([
        generate(prior, vqvae, len(idx), seed=cfg.seed + s, condition=cond, prefix=prefix, **draw)[1]
        for s in range(cfg.completion_seeds)
    ])  # fmt: skip
    uni = sample_unigram_codes(codes["codes_train"], len(idx), grid, codes["n_embeddings"], seed=cfg.seed)
    candidates["unigram"] = decode_codes(vqvae, np.where(kept, true_codes, uni), device=draw["device"])
    if side == "left":
        candidates["mirror"] = np.stack([S.mirror_completion(o, completed) for o in originals])
    reps = {name: len(v) // len(idx) for name, v in candidates.items()}
    for name, imgs in candidates.items():
        ref = np.tile(originals, (reps[name], 1, 1))
        key = "completion_ssim" + ("" if name == "prior" else f"_{name}")
        summary[key] = float(np.mean([S.masked_ssim(a, b, completed) for a, b in zip(imgs, ref)]))
    summary.update(completion_kept_half=side, completion_n_slices=int(len(idx)),
                   completion_seeds=int(cfg.completion_seeds))  # fmt: skip
    arrays.update(completion_index=idx, completion_originals=originals, completion_region=completed,
                  **{f"completion_{k}": v for k, v in candidates.items()})  # fmt: skip
    if seg is None:
        return
    truth = np.asarray(test.labels[idx]) if test.labels is not None else seg.labels(originals)
    for name, imgs in candidates.items():
        per = dice_per_class(seg.labels(imgs), np.tile(truth, (reps[name], 1, 1)), seg.trusted, completed)
        sfx = "" if name == "prior" else f"_{name}"
        summary[f"completion_dice_per_class{sfx}"] = {str(c): per[c] for c in seg.trusted}
        vals = [per[c] for c in seg.trusted if np.isfinite(per[c])]
        summary[f"completion_dice{sfx}"] = float(np.mean(vals)) if vals else float("nan")


def _anatomy(prior, vqvae, codes, splits, cfg, seg, draw, summary, arrays):
    """The four equal-sized sets (test, samples at the test positions, train at the same
    positions, unigram images), their labels and statistics, and the numbers folded from them.
    Returns (sets, labels, stats, where): `where` holds the indices and conditions the sweep
    and the Fréchet part reuse."""
    train, test = splits["train"], splits["test"]
    t_idx, tr_idx = S.anatomy_index(test.slice, train.slice, cfg.n_anatomy, cfg.seed)
    m, grid, device = len(t_idx), draw["shape"], draw["device"]
    where = {"t_idx": t_idx, "tr_idx": tr_idx, "slices": np.asarray(test.slice)[t_idx],
             "cond": np.asarray(codes["slice_test"])[t_idx] if getattr(prior, "n_conditions", 0) else None}  # fmt: skip
    _, samples = generate(prior, vqvae, m, seed=cfg.seed, condition=where["cond"], **draw)
    uni = sample_unigram_codes(codes["codes_train"], m, grid, codes["n_embeddings"], seed=cfg.seed + 1)
    sets = {
        "test": np.asarray(test.images[t_idx], np.float32),
        "samples": samples,
        "train": np.asarray(train.images[tr_idx], np.float32),
        "unigram": decode_codes(vqvae, uni, device=device),
    }
    labels = {name: seg.labels(imgs) for name, imgs in sets.items()}
    stats = {name: seg.stats(sets[name], lab) for name, lab in labels.items()}
    gap, terms = S.anatomy_gap(stats, seg.trusted)
    summary.update(anatomy_gap=gap, anatomy_gap_terms=terms, anatomy=S.anatomy_table(stats, seg.trusted))
    summary.update(S.bone_pairs(summary["anatomy"], seg.classes))
    bones = S._bones(seg.trusted)  # the bone class's key; None when bones are not trusted
    by_level = {}  # the heads' size level by level: the samples are drawn at the test positions
    if "bone_pair_area_ratio" in summary:
        test_heads = stats["test"][int(bones)]["pair_area"]
        summary["bone_pair_area_ratio_by_level"] = S.level_matched_area_ratio(
            stats["samples"][int(bones)]["pair_area"], test_heads, where["slices"])
        # real against real: other case-weeks' slices at those positions (what 1 means here)
        by_level["train"] = S.level_matched_area_ratio(stats["train"][int(bones)]["pair_area"], test_heads,
                                                       where["slices"], sample_slices=np.asarray(train.slice)[tr_idx])  # fmt: skip
    summary.update(S.bone_cortex(stats, seg.trusted))
    if bones is not None:  # what the decoder draws from the test slices' own codes: the best a prior can get
        b = int(bones)
        recon = decode_codes(vqvae, np.asarray(codes["codes_test"])[t_idx].astype(np.int64), device=device)
        drawn = seg.stats(recon, classes=[b])[b]
        if "bone_cortex" in summary:
            summary["bone_cortex"]["reconstruction"] = S._median(drawn["cortex"])
            arrays["bone_cortex"] = {**{k: v[b]["cortex"] for k, v in stats.items()}, "reconstruction": drawn["cortex"]}
        if "bone_pair_area" in summary:  # the heads' size as the decoder draws them from the true codes
            summary["bone_pair_area"]["reconstruction"] = S._median(drawn["pair_area"])
            arrays["bone_pair_area_reconstruction"] = drawn["pair_area"]
            by_level["reconstruction"] = S.level_matched_area_ratio(drawn["pair_area"], test_heads, where["slices"])
    if by_level:
        summary["bone_pair_area_ratio_by_level_references"] = by_level
    empty = {name: S.empty_fraction(lab, labels["test"], seg.background) for name, lab in labels.items()
             if name != "test"}  # fmt: skip
    summary["empty_samples"] = empty.pop("samples")  # the share of samples with no body drawn
    summary["empty_references"] = empty  # train (real: 0), unigram
    arrays.update(sets=sets, labels=labels, slices=where["slices"], stats=stats, train_index=tr_idx)
    return sets, labels, stats, where


def _sweep(prior, vqvae, temperatures, seg, sets, labels, stats, where, draw, seed: int) -> list[dict]:
    """One `judge_stats.sweep_row` per temperature: new samples at the same seed and positions,
    the other three sets unchanged (the judged temperature's samples are reused)."""
    rows = []
    for t in map(float, temperatures):
        st, lab = stats, labels["samples"]
        if t != draw["temperature"]:
            _, imgs = generate(prior, vqvae, len(where["t_idx"]), seed=seed, condition=where["cond"],
                               **{**draw, "temperature": t})  # fmt: skip
            lab = seg.labels(imgs)
            st = dict(stats, samples=seg.stats(imgs, lab))
        row = S.sweep_row(t, st, seg.trusted, seg.classes, slices=where["slices"])
        row["empty_samples"] = S.empty_fraction(lab, labels["test"], seg.background)
        rows.append(row)
    return rows


def _frechet(train, sets, seg, where, cfg) -> dict:
    """Fréchet distances in the segmenter's bottleneck features: to the training distribution
    (the anatomy's train set as the reference, a second disjoint train set at the same
    positions as the floor, unigram images as the ceiling) and, as before, to the test slices."""
    m = len(where["t_idx"])
    tr2_idx = np.sort(S._matched_train(train.slice, where["slices"], cfg.seed + 7, exclude=where["tr_idx"]))
    train2 = np.asarray(train.images[tr2_idx], np.float32)
    fit = np.setdiff1d(np.arange(len(train)), np.concatenate([where["tr_idx"], tr2_idx]))
    if len(fit) < m:  # too few train slices left over: fit on all of them
        fit = np.arange(len(train))
    fit = np.sort(np.random.default_rng([cfg.seed, 2]).permutation(fit)[: max(m, 256)])
    ref = FrechetReference(np.asarray(train.images[fit], np.float32), n_components=min(64, m - 1),
                           features=lambda imgs: bottleneck_features(seg.model, imgs))  # fmt: skip
    feats = {name: ref.features(imgs) for name, imgs in sets.items()}
    vs_train = train_referenced(feats["samples"], feats["train"], ref.features(train2), feats["unigram"])
    out = {k.replace("fid_", "fid_seg_") if k.startswith("fid_") else f"{k}_seg": v for k, v in vs_train.items()}
    out["fid_seg_samples"] = frechet_distance(feats["samples"], feats["test"])
    out["fid_seg_test_vs_train"] = frechet_distance(feats["train"], feats["test"])
    out["fid_seg_unigram"] = frechet_distance(feats["unigram"], feats["test"])
    return out
