"""Demo-profile priors at this CPU's update counts, several at once on one GPU.

A `make demo` prior costs 14 minutes of a 2-core CPU, so trying a handful of them there takes
an afternoon. The numbers a prior reaches depend on its updates, not on the device that ran
them (both train under bf16 autocast), so this script trains demo-profile VQ-VAEs and priors
on a GPU with the update counts the CPU affords (`--n_updates` per variant), all at once,
and scores each with `hipgen evaluate --json`: the same judge as notebook 07.

    python3 scripts/gpu_demo_sweep.py                       # the default variants, on a GPU
    python3 scripts/gpu_demo_sweep.py --profile ci --variants "a:2:--n_updates 3" "b:3:--n_updates 3"

A variant is NAME:CASE_WEEKS:PRIOR_ARGS: the phantom's train case-weeks (validate and test
as the profile has them; note that the phantom's test case-weeks change with the train
count, so each variant is scored against its own test slices and mirror reference) and
extra `hipgen train --mode pixelcnn` options. One VQ-VAE is trained per phantom size (the
profile's settings) and shared by its variants. Prints one table; writes sweep.json and
each variant's samples.png to --out.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
# CPU cost per update of batch 8 (this repo's 2-core CPU, bf16): 32 channels 286 ms (the
# demo's 2880 updates in 824 s), 48 channels 443 ms, 64 channels 648 ms; the updates below
# give each variant about the demo prior's 2880 x 286 ms = 824 s of that CPU.
DEFAULT_VARIANTS = (
    "d24_c32:24:--n_updates 2880",  # today's demo prior (1440 grids, 2880 updates)
    "d48_c32:48:--n_updates 2880",  # twice the case-weeks, the same 2880 updates
    "d120_c32:120:--n_updates 2700",  # five times, 2700 updates
    "d24_c48:24:--n_channels 48 --n_updates 1800",  # 48 channels, 1800 updates (~800 CPU s)
    "d48_c48:48:--n_channels 48 --n_updates 1800",  # 1800 updates
    "d120_c48:120:--n_channels 48 --n_updates 1800",  # 1800 updates
)


def hipgen(*args) -> list[str]:
    return [sys.executable, "-m", "hipgen_utils", *map(str, args)]


def start(cmd, log: Path, env) -> subprocess.Popen:
    log.parent.mkdir(parents=True, exist_ok=True)
    print(f"started {log.stem} (its commands and output: {log})", flush=True)
    log.write_text(shlex.join(cmd) + "\n")
    return subprocess.Popen(cmd, stdout=log.open("a"), stderr=subprocess.STDOUT, env=env, cwd=ROOT)


def wait_all(procs: dict, what: str) -> set:
    failed = set()
    for name, p in procs.items():
        if p.wait() != 0:
            failed.add(name)
            print(f"{what} {name}: failed (rc {p.returncode}); see its log", flush=True)
    return failed


# decode every split of a run's data once into the slice cache, so that the variants that
# share it start from the cache instead of decoding it side by side
WARM = """
import sys
from hipgen_utils.data import load_split, resolve_data_dir
from hipgen_utils.layout import SPLITS
from hipgen_utils.run import Run
d = Run.at(sys.argv[1], device="cpu").data_config()
root = resolve_data_dir(None, d, progress=False)
for s in SPLITS:
    load_split(root, s, shape=(d.height, d.width), resize_mode=d.resize_mode, norm=d.norm,
               skip_bad=d.skip_bad, progress=False, workers=4)
"""


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--variants", nargs="+", default=DEFAULT_VARIANTS, metavar="NAME:CASE_WEEKS:ARGS")
    ap.add_argument("--profile", default="demo")
    ap.add_argument("--work", default="/tmp/sweep", help="run directories and the phantom cache")
    ap.add_argument("--out", default=os.environ.get("OUT", "sweep_out"))
    ap.add_argument("--threads", type=int, default=2, help="CPU threads per job")
    args = ap.parse_args(argv)

    variants = []
    for spec in args.variants:
        name, n, extra = (spec.split(":", 2) + [""])[:3]
        variants.append((name, int(n), shlex.split(extra)))
    work, out = Path(args.work), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, HIPGEN_PROFILE=args.profile, HIPGEN_CACHE=str(work / "cache"), MPLBACKEND="Agg",
               OMP_NUM_THREADS=str(args.threads), TQDM_DISABLE="1", PYTHONUNBUFFERED="1")
    t0 = time.perf_counter()

    # one VQ-VAE per phantom size (it writes the phantom), then every split cached once
    sizes = sorted({n for _, n, _ in variants})
    procs = {}
    for n in sizes:
        run = work / f"vq{n}"
        shutil.rmtree(run, ignore_errors=True)
        cmd = hipgen("train", "--mode", "vq_vae", "--run_dir", run, "--phantom_train", n)
        warm = [sys.executable, "-c", WARM, str(run)]
        sh = f"{shlex.join(cmd)} && {shlex.join(warm)}"
        procs[n] = start(["bash", "-c", sh], out / f"vq{n}.log", env)
    bad = wait_all(procs, "vqvae")
    t_vq = time.perf_counter() - t0
    print(f"VQ-VAEs done in {t_vq:.0f} s", flush=True)

    # the priors, all at once, then their evaluations
    procs = {}
    for name, n, extra in variants:
        if n in bad:
            continue
        run = work / name
        shutil.rmtree(run, ignore_errors=True)
        run.mkdir(parents=True)
        shutil.copy2(work / f"vq{n}" / "vqvae.pt", run / "vqvae.pt")
        steps = [
            hipgen("train", "--mode", "pixelcnn", "--run_dir", run, *extra),
            hipgen("predict", "--run_dir", run, "--n", 16, "--seed", 0, "--out", out / f"{name}_samples.png"),
        ]
        sh = " && ".join(shlex.join(c) for c in steps)
        sh += f" && {shlex.join(hipgen('evaluate', '--run_dir', run, '--json'))} > {shlex.quote(str(out / name))}.json"
        procs[name] = start(["bash", "-c", sh], out / f"{name}.log", env)
    bad |= wait_all(procs, "variant")

    rows = []
    for name, n, extra in variants:
        try:
            ev = json.loads((out / f"{name}.json").read_text().strip().splitlines()[-1])
        except (OSError, ValueError, IndexError):
            continue  # its failure was reported above
        ck = torch.load(work / name / "pixelcnn.pt", map_location="cpu", weights_only=True)
        h = ck.get("history", {})
        anat = ev.get("anatomy", {})
        sym = {k: anat.get(k, {}).get("2", {}).get("symmetry_median", float("nan")) for k in ("samples", "test")}
        dice = ev.get("completion_dice_per_class", {})
        dice_m = ev.get("completion_dice_per_class_mirror", {})
        rows.append({
            "variant": name, "case_weeks": n, "args": " ".join(extra), "updates": int(ck.get("step", 0)),
            "bits": ev.get("pixelcnn_bits_per_code_test"), "ratio": ev.get("bits_ratio_vs_unigram"),
            "val_bits_last": (h.get("val_bits") or [None])[-1],
            "dice": ev.get("completion_dice"), "dice_mirror": ev.get("completion_dice_mirror"),
            "dice_bones": dice.get("2"), "dice_bones_mirror": dice_m.get("2"),
            "ssim": ev.get("completion_ssim"), "ssim_mirror": ev.get("completion_ssim_mirror"),
            "gap": ev.get("anatomy_gap"), "sym_samples": sym["samples"], "sym_test": sym["test"],
            "vq_ssim": ev.get("ssim_mean"), "pairs_ratio": ev.get("bone_pairs_ratio"),
            "pairs_test": ev.get("bone_pairs", {}).get("test"),
        })
    (out / "sweep.json").write_text(json.dumps(rows, indent=1))
    cols = ("variant", "updates", "ratio", "dice", "dice_mirror", "dice_bones", "dice_bones_mirror", "ssim",
            "ssim_mirror", "gap", "sym_samples", "sym_test", "pairs_ratio", "pairs_test", "vq_ssim")
    print("\n" + "  ".join(f"{c:>12s}" for c in cols))
    for r in rows:
        print("  ".join(f"{r[c]:>12.4f}" if isinstance(r[c], float) else f"{str(r[c]):>12s}" for c in cols))
    print(f"\n{len(rows)} of {len(variants)} variants scored in {time.perf_counter() - t0:.0f} s "
          f"(VQ-VAEs {t_vq:.0f} s); failed: {sorted(map(str, bad)) or 'none'}")
    return 0 if not bad else 1


if __name__ == "__main__":
    sys.exit(main())
