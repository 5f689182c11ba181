"""The prior's variants, compared at one training budget (`hipgen bench prior --compare`).

Each variant is the profile's PixelCNN with its three switches (vertical dilation, mirror
context, code tables) on or off; `compare_priors` trains each for the same wall time on the
same code grids, then scores it on one table: test bits per code (and the ratio to the
unigram model), seconds to draw 16 samples, and the anatomy judge's completion and set-level
scores. The shipped prior has all three on ("mirror_tables"); the variants that lost their
ablations earlier (attention, two levels, anterior-posterior order) left the package with
their results in docs/experiments.md.
"""

from __future__ import annotations

import tempfile
from dataclasses import replace
from pathlib import Path

import torch

from hipgen_utils import config as C
from hipgen_utils.checkpoints import PRIOR_FILE, load_checkpoint, write_json
from hipgen_utils.judge import judge_prior
from hipgen_utils.metrics import unigram_bits_per_code
from hipgen_utils.pipeline import slice_conditions
from hipgen_utils.run import Run
from hipgen_utils.sampling import sample
from hipgen_utils.tables import print_table, timed
from hipgen_utils.training import bits_per_code, train_pixelcnn

# each variant names every switch the table varies, so it is the same model whatever the
# profile's defaults ("baseline": a plain conditional gated PixelCNN)
_OFF = {"v_dilation": 1, "mirror": False, "tables": False}
COMPARE_VARIANTS = {
    name: {**_OFF, **switches}
    for name, switches in {
        "baseline": {},
        "dilated": {"v_dilation": 8},
        "mirror": {"v_dilation": 8, "mirror": True},  # dilated, and the second half sees its mirror rows
        # mirror, and full-rank logit tables from the left, upper and mirror neighbours' codes: shipped
        "mirror_tables": {"v_dilation": 8, "mirror": True, "tables": True},
    }.items()
}
JUDGE_COLUMNS = (
    "completion_dice", "completion_dice_mirror", "completion_dice_reconstruction",
    "completion_ssim", "completion_ssim_mirror", "anatomy_gap", "bone_pairs_ratio", "bone_pair_area_ratio",
    "bone_pair_area_ratio_by_level",
    "bone_cortex_gap", "empty_samples",
)  # fmt: skip


def _default_budget(run) -> float:
    """The wall time the run's own prior trained for (its checkpoint's history)."""
    try:
        return float(load_checkpoint(run / PRIOR_FILE, "pixelcnn")["history"]["seconds"][-1])
    except (FileNotFoundError, KeyError, IndexError, RuntimeError):
        raise C.ConfigError(
            f"no trained prior in {run} to take the time budget from; pass --budget_s SECONDS"
        ) from None


def compare_priors(
    run_dir=None,
    budget_s: float | None = None,
    variants=None,
    profile: str = "demo",
    out_dir=None,
    judge: bool = True,
    n_sample: int = 16,
    reuse: bool = False,
) -> list[dict]:
    """Train each prior variant on the run's codes for the same wall-clock budget and score it.

    run_dir: holds vqvae.pt and codes.npz (default runs/<profile>); budget_s: training seconds
    per variant (default: what the run's own pixelcnn.pt took); variants: names of
    COMPARE_VARIANTS or "name=key:value,key:value" (default all); out_dir: keep each variant's
    checkpoint in out_dir/<name>/ (default a temporary folder); reuse: a variant whose
    checkpoint in out_dir was trained with the same settings and budget is scored as it is
    (an interrupted one is resumed) instead of trained again. Each variant is the profile's
    prior with its switches, trained by `train_pixelcnn` with max_seconds = budget (the cosine
    schedule fitted to it). Prints one table and returns its rows as dicts: test bits/code and
    the ratio to the unigram, seconds to sample `n_sample` (fast sampler, CPU), training
    seconds, updates, and the judge's scores (unless judge=False); samples are drawn, for the
    timing and the judge, at the profile's temperature, top-k and lead lines."""
    run = Path(run_dir) if run_dir is not None else C.REPO_ROOT / "runs" / C.profile_name(profile)
    r = Run.at(run, profile=profile)
    vqvae, vid, codes = r.vqvae(), r.vqvae_id, r.codes()
    budget = float(budget_s) if budget_s is not None else _default_budget(run)
    if budget <= 0:
        raise C.ConfigError(f"--budget_s {budget:g} must be > 0 seconds")
    chosen = _parse_variants(variants)
    cfg0 = C.get_profile(profile)
    # the profile's own sampling settings, for the timed samples and the judge alike
    how = dict(temperature=cfg0.sample.temperature, top_k=cfg0.sample.top_k, lead_lines=cfg0.sample.lead_lines)
    k = codes["n_embeddings"]
    unigram = unigram_bits_per_code(codes["codes_train"], codes["codes_test"], k)
    judge_fn = judge_prior if judge else None
    splits = data_cfg = None
    if judge_fn is not None:
        data_cfg = r.vqvae_checkpoint.get("extra", {}).get("data")
        splits = r.splits("train", "test", progress=False)
    shape = tuple(codes["codes_train"].shape[1:])
    print(f"comparing {len(chosen)} prior variants on {run} ({len(codes['codes_train'])} training grids "
          f"{shape[0]}x{shape[1]}, K={k}); {budget:.0f} s of training each, {torch.get_num_threads()} "
          f"CPU threads; profile {profile} prior: {cfg0.pixelcnn.n_channels} channels, "
          f"{cfg0.pixelcnn.n_layers} layers; judge: {'yes' if judge_fn else 'off'}", flush=True)  # fmt: skip
    rows = []
    with tempfile.TemporaryDirectory(prefix="hipgen-compare-") as tmp:
        base = Path(out_dir) if out_dir is not None else Path(tmp)
        for name, switches in chosen.items():
            cfg = replace(cfg0.pixelcnn, **switches, n_updates=10**7, max_seconds=budget)  # time is the budget
            where = base / name
            where.mkdir(parents=True, exist_ok=True)
            again = not (reuse and (where / "pixelcnn.pt").exists())
            prior, hist = train_pixelcnn(
                cfg, codes, k, where, vqvae_id=vid, overwrite=again, resume=not again, progress=False
            )
            prior = prior.cpu().eval()
            cond = codes["slice_test"] if prior.n_conditions else None
            bits = bits_per_code(prior, codes["codes_test"], cond)
            sc = slice_conditions(prior, n_sample, codes["slice_test"], seed=0)
            _, sample_s = timed(sample, prior, n_sample, seed=0, condition=sc, shape=shape, **how)
            row = {
                "variant": name, "switches": switches, "test_bits": bits, "x_unigram": bits / unigram,
                "sample_s": sample_s, "train_s": float(hist["seconds"][-1]), "updates": int(hist["step"][-1]),
            }  # fmt: skip
            if judge_fn is not None:
                try:
                    summary, _ = judge_fn(prior, vqvae, codes, splits, run, getattr(cfg0, "judge", None), data_cfg,
                                          **how)  # fmt: skip
                    row.update({c: summary.get(c, float("nan")) for c in JUDGE_COLUMNS})
                    row["judge"] = summary  # everything, per class too, for compare.json
                except Exception as e:  # the judge is optional here: say why, keep the table
                    print(f"judge failed on {name}: {type(e).__name__}: {e}", flush=True)
            rows.append(row)
            print(f"  {name}: {row['updates']} updates in {row['train_s']:.0f} s, test bits {bits:.3f} "
                  f"({bits / unigram:.3f}x unigram)", flush=True)  # fmt: skip
    cols = ["variant", "test_bits", "x_unigram", "sample_s", "train_s", "updates"]
    cols += [c for c in JUDGE_COLUMNS if any(c in r for r in rows)]
    print_table(
        f"hipgen bench prior --compare: {budget:.0f} s of training per variant; unigram {unigram:.3f} "
        f"bits/code; sample_s = {n_sample} samples, fast sampler, 1 CPU thread",
        cols,
        [[r.get(c, "") for c in cols] for r in rows],
    )
    for r in rows:
        print(f"  {r['variant']}: {r['switches'] or 'the profile prior as it is'}")
    if out_dir is not None:
        write_json(Path(out_dir) / "compare.json", {"budget_s": budget, "unigram_bits": unigram, "rows": rows}, indent=1)
    return rows


def _parse_variants(variants) -> dict:
    """Names of COMPARE_VARIANTS, or 'name=key:value,key:value' (values as on the CLI)."""
    if not variants:
        return dict(COMPARE_VARIANTS)
    out = {}
    for v in variants:
        name, _, spec = str(v).partition("=")
        if not spec:
            if name not in COMPARE_VARIANTS:
                raise C.ConfigError(
                    f"unknown prior variant {name!r}; choose from {', '.join(COMPARE_VARIANTS)} or give name=key:value,..."
                )
            out[name] = COMPARE_VARIANTS[name]
            continue
        pairs = dict(p.split(":", 1) for p in spec.split(",") if ":" in p)
        over = C.override(C.PixelCNNConfig(), **pairs)  # type-checked like CLI flags
        out[name] = {key: getattr(over, key) for key in pairs}
    return out
