"""`hipgen bench data`: what grows with the data set, measured at the release's size.

The real release has 11,460 / 660 / 540 slices (train / validate / test); the phantom written
at those counts (`hipgen phantom --full_size`: 191 / 11 / 9 case-weeks of 60 slices) stands in
for it. Every step of the pipeline whose cost follows the number of slices runs here, each in
a fresh Python process so that its time and peak memory are its own (`STEPS`). Model training
is not here: its cost is set by its budget (updates), not by the data.

Peak memory is sampled every 20 ms from /proc/self/status: "peak RSS" is the resident set
(memory-mapped slice-cache pages included: the kernel can drop those), "peak anon" the
memory the step itself holds (what has to fit in RAM). Both include what an interpreter with
torch and the package imported holds before the step starts ("at start"). A cold load's
decoding workers are separate processes: their largest resident set is in the note. Each
step imports what it uses inside its branch, so its memory holds that step's modules only.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np

from hipgen_utils import config as C
from hipgen_utils.layout import SPLITS

RELEASE_SIZES = (191, 11, 9)  # case-weeks of 60 slices: 11,460 / 660 / 540 slices
N_SAMPLES = 256  # samples scored by `prior_report` (SampleConfig.n_eval_samples of demo/full)
SWEEP = (6, 128)  # notebook 06's sweep: temperatures x samples (SampleConfig.n_sweep_samples)

# step name -> what it stands for (the table's note column adds the numbers)
STEPS = {
    "load cold train": "decode keras_slices_train into an empty slice cache",
    "load cold validate": "decode keras_slices_validate",
    "load cold test": "decode keras_slices_test",
    "load cached": "all splits from the cache (memory maps: notebooks 02-07, every CLI command)",
    "census": "hipgen info / notebook 01: describe every split (cached)",
    "notebook 01 figures": "value range of every split, class areas along the body (all train labels)",
    "encode every split": "notebook 04 / train --mode pixelcnn: codes of every slice (demo VQ-VAE)",
    "reconstruct test": "notebook 03 / evaluate: encode, decode, SSIM of the test split (demo VQ-VAE)",
    "prior validation": "one pass of the demo prior over the validate codes (once per epoch in training)",
    "near-copy search": f"sample_quality, {N_SAMPLES} samples: SSIM nearest neighbour among all train, Fréchet",
    "temperature sweep": f"notebook 06: sample_quality at {SWEEP[0]} temperatures x {SWEEP[1]} samples",
    "judge: data": "segmenter's training set (label classes, fingerprint, 2x-reduced copy) and reference sets",
    "judge: segment test": "the segmenter over the whole test split (its test Dice; demo size, untrained)",
}


# --------------------------------------------------------------------------- memory


def _status_mb(key: str) -> float | None:
    """A /proc/self/status field (VmRSS, RssAnon, VmHWM) in MB; None off Linux."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


class PeakMemory:
    """Peak resident memory of this process while the block runs, sampled every 20 ms:
    ``rss`` (VmHWM, the kernel's own peak: exact) and ``anon`` (RssAnon, the memory the
    process holds itself, not file pages; the sampled maximum), in MB, and ``start_anon``."""

    def __enter__(self):
        self.start_anon = _status_mb("RssAnon")
        self.anon = self.start_anon
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self):
        while not self._stop.wait(0.02):
            now = _status_mb("RssAnon")
            if now is not None and (self.anon is None or now > self.anon):
                self.anon = now

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        now = _status_mb("RssAnon")
        if now is not None and (self.anon is None or now > self.anon):
            self.anon = now
        hwm = _status_mb("VmHWM")
        self.rss = hwm if hwm is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        return False


# --------------------------------------------------------------------------- the steps


def _splits(root, names=SPLITS):
    from hipgen_utils.data import load_split

    return {s: load_split(root, s, progress=False) for s in names}


def _demo_vqvae():
    import torch

    from hipgen_utils.vqvae import VQVAE

    torch.manual_seed(0)
    return VQVAE.from_config(C.get_profile("demo").vqvae).eval()


def run_step(name: str, root) -> dict:
    """Run step `name` of STEPS on the release at `root` (the slice cache is $HIPGEN_CACHE's):
    {"slices": the slices it went through, "note": numbers worth printing}."""
    from hipgen_utils.data import load_split

    if name.startswith("load cold "):
        split = name.rsplit(" ", 1)[1]
        s = load_split(root, split, progress=False)
        workers = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        return {"slices": len(s), "note": f"decoding workers' peak RSS {workers:.0f} MB" if workers else ""}
    if name == "load cached":
        splits = _splits(root)
        return {"slices": sum(map(len, splits.values())), "note": ""}
    if name == "census":
        from hipgen_utils.data import census_lines, describe

        info = describe(root, progress=False)
        return {"slices": sum(d.get("n_slices", 0) for d in info["splits"].values()),
                "note": f"{len(census_lines(info))} census lines"}  # fmt: skip
    if name == "notebook 01 figures":
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        from hipgen_utils.plotting import plot_class_area_vs_slice

        splits = _splits(root)
        for s in splits.values():  # notebook 01 prints every split's range
            float(s.images.min()), float(s.images.max())
        train = splits["train"]
        if train.labels is not None:
            plt.close(plot_class_area_vs_slice(np.asarray(train.labels), train.slice, int(train.slice.max()) + 1))
        return {"slices": sum(map(len, splits.values())), "note": ""}
    if name == "encode every split":
        from hipgen_utils.codes import extract_codes

        splits = _splits(root)
        with tempfile.TemporaryDirectory() as run:
            path = extract_codes(_demo_vqvae(), splits, run, progress=False)
            size = os.path.getsize(path) / 2**20
        return {"slices": sum(map(len, splits.values())), "note": f"codes.npz {size:.1f} MB"}
    if name == "reconstruct test":
        from hipgen_utils.pipeline import reconstruction_report

        test = _splits(root, ("test",))["test"]
        reconstruction_report(_demo_vqvae(), test.images)
        return {"slices": len(test), "note": ""}
    if name == "prior validation":
        import torch

        from hipgen_utils.metrics import evenly_spaced
        from hipgen_utils.pixelcnn import GatedPixelCNN
        from hipgen_utils.training import bits_per_code

        demo = C.get_profile("demo")
        n = len(evenly_spaced(len(_splits(root, ("validate",))["validate"]), demo.pixelcnn.val_grids or 10**9))
        torch.manual_seed(0)
        prior = GatedPixelCNN.from_config(demo.pixelcnn, demo.vqvae.n_embeddings)
        codes = np.random.default_rng(0).integers(0, demo.vqvae.n_embeddings, (n, *C.CODE_GRID))
        cond = np.arange(n) % max(prior.n_conditions, 1) if prior.n_conditions else None
        bits_per_code(prior, codes, cond)
        passes = -(-demo.pixelcnn.n_updates // demo.pixelcnn.log_interval)
        return {"slices": n, "note": f"{passes} passes over at most val_grids={demo.pixelcnn.val_grids} grids"}
    if name in ("near-copy search", "temperature sweep"):
        from hipgen_utils.sample_quality import sample_quality

        splits = _splits(root, ("train", "test"))
        train, test = splits["train"], splits["test"]
        runs, n = (1, N_SAMPLES) if name == "near-copy search" else SWEEP
        idx = np.arange(n) % len(test)  # test slices stand in for samples: the cost is the same
        samples = np.asarray(test.images[np.sort(idx)], np.float32)
        for r in range(runs):
            q = sample_quality(samples, train.images, test.images, samples, seed=r)
        return {"slices": len(train) + len(test), "note": f"median NN SSIM {q['nn_ssim_median']:.2f}"}
    if name == "judge: data":
        from hipgen_utils.judge_stats import _matched_train, anatomy_index
        from hipgen_utils.segmenter import _reduced, data_fingerprint, label_classes

        splits = _splits(root, ("train", "test"))
        train, test = splits["train"], splits["test"]
        judge = C.get_profile("demo").judge
        data_fingerprint(train)  # ensure_segmenter
        label_classes(train.labels)  # train_segmenter
        reduced = _reduced(train.images, judge.seg_scale)
        np.asarray(train.labels)[:, judge.seg_scale // 2 :: judge.seg_scale, judge.seg_scale // 2 :: judge.seg_scale]
        t_idx, tr_idx = anatomy_index(test.slice, train.slice, judge.n_anatomy, judge.seed)
        _matched_train(train.slice, np.asarray(test.slice)[t_idx], judge.seed + 7, exclude=tr_idx)
        return {"slices": len(train) + len(test), "note": f"reduced copy {reduced.nbytes / 2**20:.0f} MB"}
    if name == "judge: segment test":
        import torch

        from hipgen_utils.segmenter import UNet, label_classes, segment

        test = _splits(root, ("test",))["test"]
        judge = C.get_profile("demo").judge
        classes = label_classes(test.labels) if test.labels is not None else list(range(6))
        torch.manual_seed(0)
        model = UNet(len(classes), judge.seg_base_channels, judge.seg_levels, judge.seg_scale).eval()
        segment(model, test.images, classes)
        return {"slices": len(test), "note": ""}
    raise ValueError(f"unknown data benchmark step {name!r}; choose one of {', '.join(STEPS)}")


def _cpu_seconds() -> float:
    """CPU time (user + system) of this process and its finished children (decoding workers)."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def _step_main():
    """Entry of a step's own process: argv = [name, root]; prints one JSON line. The modules
    the step uses are imported first, so that no step's time or memory holds imports (the
    loads and the census need no torch: their "at start" is lower)."""
    name, root = sys.argv[1], sys.argv[2]
    if name not in STEPS:
        raise ValueError(f"unknown data benchmark step {name!r}; choose one of {', '.join(STEPS)}")
    import hipgen_utils.data  # noqa: F401

    if not name.startswith(("load ", "census")):
        _import_models()
    with PeakMemory() as mem:
        t0, c0 = time.perf_counter(), _cpu_seconds()
        out = run_step(name, root)
        out["seconds"], out["cpu_seconds"] = time.perf_counter() - t0, _cpu_seconds() - c0
    out.update(peak_rss_mb=mem.rss, peak_anon_mb=mem.anon, start_anon_mb=mem.start_anon)
    print(json.dumps(out))


def _import_models():
    import matplotlib

    matplotlib.use("Agg")
    import hipgen_utils.codes
    import hipgen_utils.data
    import hipgen_utils.judge
    import hipgen_utils.pipeline
    import hipgen_utils.pixelcnn
    import hipgen_utils.plotting
    import hipgen_utils.sample_quality
    import hipgen_utils.segmenter
    import hipgen_utils.training
    import hipgen_utils.vqvae  # noqa: F401


def measure_step(name: str, root, cache_dir) -> dict:
    """`run_step` in a fresh process with $HIPGEN_CACHE=cache_dir: its result with "seconds",
    "peak_rss_mb", "peak_anon_mb" and "start_anon_mb". A failing step raises RuntimeError
    with its last line of stderr."""
    env = dict(os.environ, **{C.CACHE_ENV: str(cache_dir), "MPLBACKEND": "Agg"})
    code = "from hipgen_utils.data_bench import _step_main; _step_main()"
    done = subprocess.run([sys.executable, "-c", code, name, str(root)], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        last = [ln for ln in done.stderr.splitlines() if ln.strip()][-1:] or ["no output"]
        raise RuntimeError(f"bench data: step {name!r} failed (exit {done.returncode}): {last[0]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _mb(x) -> str:
    return "-" if x is None else f"{x:.0f}"


def run(args) -> dict:
    """The phantom at the release's counts (or --case_weeks; --quick: 19/2/2), then every
    step of STEPS in its own process, against a fresh slice cache. Returns the table
    (`bench.bench_data` prints it): {"notes": lines, "title", "header", "rows"}."""
    from hipgen_utils.phantom import ensure_phantom

    sizes = tuple(getattr(args, "case_weeks", None) or ((19, 2, 2) if args.quick else RELEASE_SIZES))
    if len(sizes) != 3 or min(sizes) < 1:
        raise C.ConfigError("--case_weeks takes 3 numbers >= 1 (train validate test)")
    n_slices = getattr(args, "n_slices", None) or 60
    root = C.cache_dir() / f"phantom_{sizes[0]}_{sizes[1]}_{sizes[2]}_{n_slices}_s0"
    t0 = time.perf_counter()
    ensure_phantom(root, *sizes, n_slices=n_slices, seed=0, progress=not args.quick)
    gen_s = time.perf_counter() - t0
    only = getattr(args, "steps", None) or list(STEPS)
    unknown = [s for s in only if s not in STEPS]
    if unknown:
        raise C.ConfigError(f"unknown step {unknown[0]!r}; choose among: {', '.join(STEPS)}")
    cache = tempfile.mkdtemp(prefix="hipgen-bench-cache-")  # an empty cache: the first loads are cold
    rows = []
    try:
        for name in STEPS:
            if name not in only and not name.startswith("load cold"):  # the cold loads fill the cache
                continue
            print(f"bench data: {name} ...", flush=True)
            r = measure_step(name, root, cache)
            note = "; ".join(x for x in (STEPS[name], r["note"]) if x)
            rows.append([name, r["slices"], r["seconds"], r["cpu_seconds"], _mb(r["peak_rss_mb"]),
                         _mb(r["peak_anon_mb"]), _mb(r["start_anon_mb"]), note])  # fmt: skip
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    n = [s * n_slices for s in sizes]
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return {
        "notes": [f"phantom {sizes[0]}/{sizes[1]}/{sizes[2]} case-weeks x {n_slices} slices = {n[0]:,} / {n[1]:,} / "
                  f"{n[2]:,} slices at {root} (generated or checked in {gen_s:.1f} s); {os.cpu_count()} cores, load "
                  f"average {load:.1f} at the end (on a shared machine the CPU seconds say more than the wall seconds)"],
        "title": "hipgen bench data: what grows with the data set (each step in its own process; seconds: wall clock, "
                 "CPU (all threads and workers); MB: peak resident, peak anonymous, anonymous at the step's start)",
        "header": ["step", "slices", "seconds", "CPU s", "peak RSS MB", "peak anon MB", "at start MB", "what"],
        "rows": rows,
    }  # fmt: skip
