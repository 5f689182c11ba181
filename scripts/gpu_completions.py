"""Completions of test slices at the femoral heads' levels, for a run trained elsewhere.

    python3 scripts/gpu_completions.py RUN_DIR OUT.png [--n 4] [--temperature T]

Keeps the first half of each chosen test slice's codes (the left half for rows running
left-right) and samples the rest with the run's prior, as notebook 06 does for one slice;
the slices are the test split's lowest positions (the femoral heads'), evenly spaced, so
the figure shows whether the partner femoral head is drawn. Top row: the test slices;
bottom row: their completions. `scripts/gpu_full.sh` runs it after `hipgen predict`.
"""

from __future__ import annotations

import argparse

import numpy as np

from hipgen_utils import pipeline, plotting
from hipgen_utils.run import Run


def completion_figure(run_dir, out, n: int = 4, temperature: float | None = None, seed: int = 0,
                      max_slice: int = 12):  # fmt: skip
    run = Run.at(run_dir)
    vq, prior, grids = run.vqvae(), run.prior(), run.codes()
    test = run.splits("test", progress=False)["test"]
    temp = run.cfg.sample.temperature if temperature is None else temperature
    try:
        pick = pipeline.lowest_slices(grids["slice_test"], n, max_slice)
    except ValueError as e:
        raise SystemExit(f"{run_dir}: test split: {e} (--n)") from None
    slices = np.asarray(grids["slice_test"])[pick]
    _, completed = pipeline.complete_slices(prior, vq, np.asarray(grids["codes_test"])[pick], slices,
                                            temperature=temp, seed=seed, top_k=run.cfg.sample.top_k,
                                            lead_lines=run.cfg.sample.lead_lines)  # fmt: skip
    top = f", top-{run.cfg.sample.top_k}" if run.cfg.sample.top_k else ""
    images = np.concatenate([np.asarray(test.images)[pick], completed])
    titles = [f"test, slice {int(s)}" for s in slices] + ["first half kept, rest sampled"] * n
    fig = plotting.plot_samples(images, titles, ncols=n, suptitle=f"completions (T={temp}{top}, seed={seed})")
    fig.savefig(out, dpi=110, bbox_inches="tight")
    print(f"wrote {out}: {n} completions of test slices {[int(s) for s in slices]} at T={temp}")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run_dir")
    p.add_argument("out")
    p.add_argument("--n", type=int, default=4)
    p.add_argument("--temperature", type=float)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    completion_figure(a.run_dir, a.out, a.n, a.temperature, a.seed)


if __name__ == "__main__":
    main()
