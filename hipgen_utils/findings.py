"""What a run shows, in a few plain sentences made from its own numbers.

Each notebook ends by printing one of these, so a run on other hardware or on the real
release says what *it* found, never numbers typed into the text. `course` reads what the
notebooks left in a run directory and sums up the whole pipeline: what it learned, what it
still gets wrong, and what to try next. Every function returns a list of lines; `show`
prints them under a heading.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from hipgen_utils.config import cache_dir

SSIM_LINE = 0.6  # the course's threshold for a reconstruction


def show(title: str, lines: list[str]) -> None:
    """Print `lines` as a bulleted block under `title`."""
    print(title)
    for line in lines:
        print(f"  - {line}")


def _ok(x) -> bool:
    return isinstance(x, int | float) and math.isfinite(x)


def data(info: dict, splits: dict) -> list[str]:
    """01: where the data came from, how many slices per split, what was odd about them."""
    sizes = ", ".join(f"{name} {len(s)}" for name, s in splits.items())
    root = Path(info["root"])
    phantom = root.name.startswith("phantom_") and root.resolve().is_relative_to(cache_dir().resolve())
    source = "the built-in synthetic phantom (not real MRI)" if phantom else str(root)
    out = [f"data: {source}; slices per split: {sizes}"]
    odd = {s: {k: v for k, v in d.get("shapes", {}).items() if _squeezed(k) != "256x128"}
           for s, d in info["splits"].items()}  # fmt: skip
    odd = {s: c for s, c in odd.items() if c}
    out.append(f"slices not 256x128, resized by the loader: {odd}" if odd else "every slice is 256x128")
    labelled = [name for name, s in splits.items() if s.labels is not None]
    out.append(f"label maps for {', '.join(labelled)}: the judge of notebook 07 can run" if labelled
               else "no label maps: notebook 07's judge will score completions by SSIM only")  # fmt: skip
    return out


def _squeezed(shape: str) -> str:
    """'256x128x1' -> '256x128': the loader drops singleton dimensions, it resizes nothing."""
    return "x".join(d for d in shape.split("x") if d != "1") or shape


def vqvae(history: dict, n_embeddings: int) -> list[str]:
    """02: how far the VQ-VAE got, and whether its codebook is alive."""
    ssim, used = history["val_ssim"][-1], int(history["codes_used"][-1])
    first = history["val_ssim"][0]
    out = [f"{int(history['step'][-1])} updates in {history['seconds'][-1]:.0f} s: validation SSIM rose from "
           f"{first:.3f} to {ssim:.3f} ({'above' if ssim >= SSIM_LINE else 'below'} the {SSIM_LINE} line)"]  # fmt: skip
    share = used / n_embeddings
    verdict = "a healthy codebook" if share >= 0.5 else "many codes unused: the codebook is partly collapsed"
    out.append(f"{used} of {n_embeddings} codes in use at the end, perplexity {history['perplexity'][-1]:.0f}: {verdict}")
    if len(history["val_ssim"]) >= 3:
        late = history["val_ssim"][-1] - history["val_ssim"][(len(history["val_ssim"]) - 1) * 2 // 3]
        out.append("validation SSIM still rising over the last third: more updates would help" if late > 0.005
                   else "validation SSIM flat over the last third: more updates would buy little")  # fmt: skip
    return out


def ssim(summary: dict, per_image, slices) -> list[str]:
    """03: the test SSIM, how many slices clear the line, and where the worst ones sit."""
    per_image, slices = np.asarray(per_image, float), np.asarray(slices)
    out = [f"test SSIM mean {summary['ssim_mean']:.3f} over {len(per_image)} slices; "
           f"{np.mean(per_image >= SSIM_LINE):.0%} at or above {SSIM_LINE}"]  # fmt: skip
    worst = np.argsort(per_image)[: max(1, len(per_image) // 10)]
    out.append(f"the worst tenth (SSIM {per_image[worst].min():.3f}-{per_image[worst].max():.3f}) sit at a median "
               f"slice position of {np.median(slices[worst]):.0f}, all test slices at {np.median(slices):.0f}")  # fmt: skip
    return out


def codes(grids: dict, usage: dict, max_diff: float) -> list[str]:
    """04: what the prior will model."""
    n = sum(len(grids[f"codes_{s}"]) for s in ("train", "validate", "test"))
    h, w = grids["codes_train"].shape[1:]
    return [f"{n} slices became {h}x{w} grids of codes: {h * w} numbers in 0..{grids['n_embeddings'] - 1} "
            f"stand for {h * w * 16} pixels",
            f"the training grids use {usage['codes_used']} codes (perplexity {usage['perplexity']:.0f})",
            "decoding the saved codes reproduces the reconstructions exactly" if max_diff == 0
            else f"decoding the saved codes differs from the reconstructions by up to {max_diff:.3g}"]  # fmt: skip


def prior(history: dict, unigram: float, test_bits: float, test_unigram: float) -> list[str]:
    """05: what the prior learned, in bits per code against the unigram model."""
    ratio = test_bits / test_unigram
    out = [f"{int(history['step'][-1])} updates ({history['epoch'][-1]:.3g} epochs) in "
           f"{history['seconds'][-1]:.0f} s",
           f"test: {test_bits:.3f} bits per code against the unigram model's {test_unigram:.3f} "
           f"({ratio:.2f}x): the prior {'has learned structure' if ratio < 0.8 else 'knows little beyond code frequencies'}"]  # fmt: skip
    train, val = history["train_bits"][-1], history["val_bits"][-1]
    gap = val - train
    out.append(f"last validation {val:.3f} bits against {train:.3f} in training: "
               + ("it is overfitting the training grids" if gap > 0.15 * val
                  else "no sign of overfitting"))  # fmt: skip
    best = int(np.argmin(history["val_bits"]))
    if best < len(history["val_bits"]) - 1:
        out.append(f"validation bits were lowest at update {int(history['step'][best])} "
                   f"({history['val_bits'][best]:.3f}); the run keeps its last checkpoint (notebook 07 judges it)")  # fmt: skip
    return out


def samples(report: dict, sweep: list[dict] | None = None) -> list[str]:
    """06: the samples' numbers: copies, spread, distance to the training distribution."""
    out = [f"median nearest-neighbour SSIM to the training slices {report['nn_ssim_median']:.3f}; "
           f"{report['frac_near_copies']:.1%} near-copies (SSIM above 0.95)"]  # fmt: skip
    if "fid_train_samples" in report:
        x = report["fid_train_samples"] / max(report["fid_train_floor"], 1e-12)
        out.append(f"Fréchet distance to the training distribution {report['fid_train_samples']:.3f}, "
                   f"{x:.1f}x its real-vs-real floor; the samples vary {report['spread_ratio']:.2f}x as much as "
                   f"real slices ({'too alike' if report['spread_ratio'] < 0.9 else 'as varied as real slices'})")  # fmt: skip
    if sweep:
        copies = max(sweep, key=lambda r: r["frac_near_copies"])
        temps = f"temperatures {sweep[0]['temperature']:g}-{sweep[-1]['temperature']:g}"
        out.append(f"no near-copies at any of the {temps}" if copies["frac_near_copies"] == 0
                   else f"over {temps} the near-copy fraction peaks at {copies['frac_near_copies']:.1%} "
                   f"(T = {copies['temperature']:g})")  # fmt: skip
    return out


# what 'good' means for each judge number: (key, reads, good when)
_JUDGED = (
    ("completion_dice", "completes the missing half of a test slice", "at least the mirror's"),
    ("bone_pairs_ratio", "draws both femoral heads", "as often as real slices (1)"),
    ("bone_pair_area_ratio_by_level", "draws the femoral heads", "as big as real ones (1)"),
    ("bone_cortex_gap", "draws a dark cortex round the marrow", "like real bone (0)"),
    ("anatomy_gap", "draws each organ's area, symmetry and parts", "like real slices (0)"),
    ("spread_ratio_seg", "varies from sample to sample", "as much as real slices (1)"),
    ("empty_samples", "always draws a body", "never empty (0)"),
)


def judged(report: dict) -> tuple[list[str], list[str]]:
    """(what the prior gets right, what it gets wrong), one line per judge number it has."""
    right, wrong = [], []
    for key, what, good in _JUDGED:
        v = report.get(key)
        if not _ok(v):
            continue
        if key == "completion_dice":
            ref = report.get("completion_dice_mirror")
            ok = not _ok(ref) or v >= ref - 0.005
            text = f"{what}: Dice {v:.3f} against the mirror's {ref:.3f}" if _ok(ref) else f"{what}: Dice {v:.3f}"
        elif key in ("bone_cortex_gap", "anatomy_gap", "empty_samples"):
            ok = v <= (0.0 if key == "empty_samples" else 0.1)
            text = f"{what}: {key} {v:.3g} (good: {good})"
        else:
            ok = abs(v - 1) <= 0.1
            text = f"{what}: {key} {v:.2f} (good: {good})"
        (right if ok else wrong).append(text)
    return right, wrong


def anatomy(report: dict) -> list[str]:
    """07: the judge's verdict on this run's prior."""
    if "anatomy_gap" not in report:
        return [f"completion SSIM {report['completion_ssim']:.3f} against the mirror's "
                f"{report.get('completion_ssim_mirror', float('nan')):.3f}; no segmenter (no label maps, or "
                "no class it segments well enough): the anatomy numbers were skipped"]  # fmt: skip
    right, wrong = judged(report)
    return [f"right: {r}" for r in right] + [f"wrong: {w}" for w in wrong]


def _read_json(path: Path):
    return json.loads(path.read_text()) if path.is_file() else None


def course(run_dir, prior_history: dict | None = None) -> list[str]:
    """The whole run, from what notebooks 03, 05, 06 and 07 wrote into `run_dir` (and the
    prior's training history): what the pipeline learned, what it still gets wrong."""
    run_dir = Path(run_dir)
    out = []
    rec = _read_json(run_dir / "ssim_test.json")
    if rec:
        out.append(f"learned: to compress a slice 16-fold into codes and back, test SSIM {rec['ssim_mean']:.3f}")
    if prior_history:
        out.append(f"learned: a prior over the codes, {prior_history['val_bits'][-1]:.3f} validation bits per code")
    quality = _read_json(run_dir / "sample_quality.json")
    if quality:
        out.append(f"learned: to draw new slices, not copies ({quality['frac_near_copies']:.1%} near-copies)")
    verdict = _read_json(run_dir / "anatomy.json")
    if verdict and "anatomy_gap" in verdict:
        right, wrong = judged(verdict)
        out += [f"gets right: {r}" for r in right]
        out += [f"still gets wrong: {w}" for w in wrong] or ["still gets wrong: nothing the judge measures"]
    return out or ["nothing to sum up yet: run notebooks 01-07 first"]
