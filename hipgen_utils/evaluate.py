"""`hipgen evaluate`: a run's scores in one dict (reconstruction, the prior, the anatomy judge)."""

from __future__ import annotations

import sys
from dataclasses import asdict

from hipgen_utils.checkpoints import PRIOR_FILE
from hipgen_utils.codes import rows_of
from hipgen_utils.judge import judge_prior
from hipgen_utils.pipeline import prior_report, reconstruction_report


def evaluate_run(run, split="test", *, n_samples=64, seed=0, temperature=1.0, progress=False, judge_cfg=None,
                 anatomy=True, temperatures=(), lead_lines=0, top_k=None) -> dict:  # fmt: skip
    """The `hipgen evaluate --json` dict for a `run.Run`: reconstruction metrics on `split`
    (of the data its VQ-VAE was trained on), plus the prior's bits per code and sample
    quality when the run holds a prior, plus (``anatomy=True``) the anatomy judge's keys
    (`judge.judge_prior` with `judge_cfg`, a JudgeConfig: completion scores, anatomy_gap,
    segmenter-feature Fréchet distance; the segmenter is trained and cached in the run
    directory when missing). Samples and completions are drawn at `temperature` (the first
    `lead_lines` lines at 1, `sampling.sample`), among the `top_k` likeliest codes (None or
    0: all); the judge also scores samples at
    `temperatures` ("temperature_sweep": `judge_stats.sweep_row`s, as in notebook 07). Everything
    runs on ``run.device``."""
    vqvae, device = run.vqvae(), run.device
    wanted = ("train", split) if run.has_prior() else (split,)
    splits = run.splits(*dict.fromkeys(wanted), progress=progress)
    result, _ = reconstruction_report(vqvae, splits[split].images, device, progress=progress)
    result = {"split": split, **result}
    if run.has_prior():
        prior = run.prior()
        codes = rows_of(run.codes(), split, splits[split], run.dir / "codes.npz")  # slices skipped now left out
        if split != "test":
            splits["test"] = splits[split]
            codes = {**codes, "codes_test": codes[f"codes_{split}"], "slice_test": codes[f"slice_{split}"]}
        summary, _ = prior_report(prior, vqvae, codes, splits, n_samples=n_samples, temperature=temperature,
                                  seed=seed, device=device, lead_lines=lead_lines, top_k=top_k)  # fmt: skip
        result.update(summary)
        if anatomy:
            if "train" not in splits:
                splits["train"] = run.splits("train", progress=progress)["train"]

            def log(msg):  # stdout may be --json's single line
                print(msg, file=sys.stderr)

            verdict, _ = judge_prior(prior, vqvae, codes, splits, run.dir, judge_cfg, asdict(run.data_config()),
                                     temperature=temperature, temperatures=temperatures, device=device,
                                     progress=progress, log=log, lead_lines=lead_lines, top_k=top_k)  # fmt: skip
            result.update(verdict)
    else:  # say what is left out (stderr: stdout may be --json's single line)
        print(f"{run.dir / PRIOR_FILE} not found: reconstruction scores only, the prior's and the anatomy judge's "
              "skipped; train it first (notebooks/05_train_pixelcnn, or hipgen train --mode pixelcnn)", file=sys.stderr)
    return result
