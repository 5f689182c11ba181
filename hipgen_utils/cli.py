"""The `hipgen` command (also `python -m hipgen_utils`).

    hipgen phantom  --out DIR [--case_weeks TRAIN [VALIDATE TEST]] [--n_slices 60] [--seed 0]
    hipgen info     --data_dir DIR [--json] [--skip_bad]
    hipgen train    --mode vq_vae|pixelcnn [--data_dir DIR] [--run_dir RUN] [--profile full|demo|ci]
                    [--batch_size 32 --n_updates 5000 --n_hiddens 128 ... any config field] [--resume | --overwrite]
    hipgen evaluate --run_dir RUN [--data_dir DIR] [--split test] [--json] [--skip_bad]
    hipgen predict  --run_dir RUN [--n 16] [--temperature T] [--top_k K] [--seed 0] [--slice S]
                    --out PATH [--format png|nii] [--overwrite]
    hipgen bench    data|vqvae|prior|sample [--profile demo]
    hipgen bench    prior --compare [--budget_s S] [--variants baseline dilated mirror mirror_tables]
    hipgen notebooks [--profile demo] [--only 02 03]   (execute notebooks into RUN/notebooks)

Config fields are overridden with `--field value` (the same names as the notebooks'
parameters cell and the dataclasses in hipgen_utils.config). Errors print one line and
exit 2 (docs/errors.md lists them): a bad value, a trained run that would be replaced
without --overwrite, a --resume whose settings differ or whose run directory does not
exist, a run directory in use by another process, a missing/unreadable/mismatched artefact,
bad data, a write that fails (a full disk, a read-only folder: nothing half-written is left).

Imports of the package sit inside the command functions on purpose: `hipgen --help`, a
mistyped flag or a refused command answer in a few tenths of a second, where importing the
model code (torch, matplotlib, nibabel) takes seconds, ten on a loaded 2-core machine.

Why one file of about 600 lines: it is the parser (every flag with its help) and one short
function per command that checks the arguments and calls the library; the work itself is in
`run`, `training`, `pipeline` and `bench`. Reading the commands side by side is how their
flags stay consistent.
"""

from __future__ import annotations

import argparse
import difflib
import errno
import json
import math
import os
import re
import sys
import warnings
from dataclasses import asdict, fields, replace
from pathlib import Path

from hipgen_utils import config as C
from hipgen_utils.layout import FILE_RE, SPLITS

EXIT_ERROR = 2


def _add_overrides(parser: argparse.ArgumentParser, *sections):
    """One `--name` flag per config field (default None = keep the profile's value)."""
    seen = set()
    for section in sections:
        group = parser.add_argument_group(f"{section.__name__} overrides")
        for f in fields(section):
            if f.name in seen or f.name in ("data_dir",):
                continue
            seen.add(f.name)
            if f.type in (bool, "bool"):
                group.add_argument(f"--{f.name}", nargs="?", const="true", default=None, metavar="BOOL")
            else:
                group.add_argument(f"--{f.name}", default=None, metavar=str(f.type).upper())


def _apply(section, args, exclude=()):
    keys = {f.name for f in fields(section)} - set(exclude)
    given = {k: v for k, v in vars(args).items() if k in keys and v is not None}
    return C.override(section, **given)


def build_config(args, mode: str | None = None) -> C.Config:
    """The profile named by --profile/$HIPGEN_PROFILE with the command line's overrides."""
    cfg = C.get_profile(getattr(args, "profile", None))
    cfg.data = _apply(cfg.data, args)
    if getattr(args, "data_dir", None):
        cfg.data.data_dir = args.data_dir
    model_only = {
        "vq_vae": {f.name for f in fields(C.PixelCNNConfig)} - {f.name for f in fields(C.VQVAEConfig)},
        "pixelcnn": {f.name for f in fields(C.VQVAEConfig)} - {f.name for f in fields(C.PixelCNNConfig)},
    }
    if getattr(args, "epochs", None) is not None:
        raise C.ConfigError(f"--epochs {args.epochs}: budgets are counted in updates, so they do not grow with the "
                            "data set; use --n_updates (the prior trains n_updates batches of --batch_size grids)")
    if mode:
        wrong = sorted(k for k in model_only[mode] if getattr(args, k, None) is not None)
        if wrong:
            raise C.ConfigError(f"--{wrong[0]} does not apply to --mode {mode}")
        if mode == "vq_vae":
            cfg.vqvae = _apply(cfg.vqvae, args)
        else:
            cfg.pixelcnn = _apply(cfg.pixelcnn, args)
    return cfg


# --------------------------------------------------------------------------- commands


def cmd_phantom(args):
    from hipgen_utils.phantom import write_phantom

    cfg = C.get_profile(args.profile).data
    sizes = [cfg.phantom_train, cfg.phantom_validate, cfg.phantom_test]
    if args.full_size:
        sizes = [191, 11, 9]
    if args.case_weeks:
        if len(args.case_weeks) not in (1, 3):
            raise C.ConfigError("--case_weeks takes 1 (train) or 3 (train validate test) numbers")
        sizes[: len(args.case_weeks)] = args.case_weeks
    n_slices = args.n_slices or cfg.phantom_slices
    if args.workers is not None and args.workers < 1:
        raise C.ConfigError(f"--workers {args.workers}: give at least 1 process")
    try:
        out = write_phantom(
            args.out, *sizes, n_slices=n_slices, seed=args.seed, progress=not args.quiet, workers=args.workers
        )
    except OSError as e:  # also a worker's, re-raised here: a full disk, a read-only folder
        if e.errno is None:  # write_phantom's own one-line refusals
            raise
        from hipgen_utils.checkpoints import write_error

        dest = Path(args.out).expanduser().resolve()
        raise write_error(dest, e, what=f"the phantom into {dest}", folder=dest.parent,
                          then="run the command again (nothing was left behind)") from e  # fmt: skip
    print(f"wrote phantom ({sizes[0]}/{sizes[1]}/{sizes[2]} case-weeks x {n_slices} slices) to {out}")


def cmd_info(args):
    from hipgen_utils.data import census_lines, describe

    info = describe(args.data_dir, skip_bad=True)
    if args.json:
        print(json.dumps(info))
        return
    print("\n".join(census_lines(info)))


def cmd_train(args):
    """Train holding RUN's lock for the whole command (data, codes, training): a second
    `train` on the same run directory is refused in one line naming this one's pid."""
    from hipgen_utils.rundir import run_lock

    cfg = build_config(args, args.mode)
    if args.resume and args.overwrite:
        raise C.ConfigError("--resume and --overwrite exclude each other; pick one")
    # config.run_dir's folder, looked at before it (or the lock) creates it
    run = Path(args.run_dir or os.environ.get(C.RUN_DIR_ENV) or C.REPO_ROOT / "runs" / cfg.profile)
    note = _check_run_dir(run, args, cfg)
    run = C.run_dir(cfg.profile, run)
    with run_lock(run):
        print(f"profile {cfg.profile}, run directory {run}")
        if note:
            print(note, file=sys.stderr)
        (_train_vqvae if args.mode == "vq_vae" else _train_prior)(args, cfg, run)


def _check_run_dir(run: Path, args, cfg) -> str | None:
    """Refuse a run directory that does not exist where one must (--resume, a prior: a
    mistyped path would otherwise train from scratch in a new folder), in one line with the
    closest existing name; return the line to say when --resume finds no checkpoint to
    continue (training then starts from 0)."""
    from hipgen_utils.checkpoints import PRIOR_FILE, VQVAE_FILE, MissingStepError
    from hipgen_utils.rundir import LOCK_FILE

    if run.exists() and not run.is_dir():
        raise C.ConfigError(f"--run_dir {run} is a file; give a folder")
    if not run.exists():
        try:
            siblings = [p.name for p in run.parent.iterdir() if p.is_dir()]
        except OSError:  # no parent folder, or an unreadable one: no suggestion
            siblings = []
        close = difflib.get_close_matches(run.name, siblings, n=1)
        hint = f" (did you mean {run.parent / close[0]}?)" if close else ""
        if args.mode == "pixelcnn":
            raise MissingStepError(f"run directory {run} does not exist{hint}; check the path, or train the VQ-VAE "
                                   f"there first (hipgen train --mode vq_vae --run_dir {run})")  # fmt: skip
        if args.resume:
            raise C.ConfigError(f"--resume: run directory {run} does not exist, so there is nothing to resume{hint}; "
                                "check the path, or leave out --resume to start a new run there")  # fmt: skip
        return None
    path = run / (VQVAE_FILE if args.mode == "vq_vae" else PRIOR_FILE)
    if not args.resume or path.exists():
        return None
    if args.mode == "pixelcnn":
        return (f"{path} not found, so --resume has nothing to continue (no prior was trained here, or its "
                f"training stopped before its first checkpoint, due every {cfg.pixelcnn.log_interval} updates): "
                "training from update 0")  # fmt: skip
    why = (f"an earlier run here stopped before its first checkpoint, due every {cfg.vqvae.log_interval} updates"
           if (run / LOCK_FILE).exists() else "a new run directory")  # fmt: skip
    return f"{path} not found, so --resume has nothing to continue ({why}): training from update 0"


def _train_vqvae(args, cfg, run):
    from hipgen_utils.checkpoints import VQVAE_FILE
    from hipgen_utils.pipeline import load_splits
    from hipgen_utils.resume import refuse_existing
    from hipgen_utils.training import train_vqvae

    refuse_existing(run / VQVAE_FILE, "vqvae", resume=args.resume, overwrite=args.overwrite)  # before the data
    splits = load_splits(cfg.data, ("train", "validate"))
    print(f"training VQ-VAE on {len(splits['train'])} slices: {asdict(cfg.vqvae)}")
    _, hist = train_vqvae(
        cfg.vqvae, splits["train"].images, splits["validate"].images, run, resume=args.resume,
        overwrite=args.overwrite, extra={"data": asdict(cfg.data), "profile": cfg.profile},
    )  # fmt: skip
    if hist["val_ssim"]:
        print(f"done: {int(hist['step'][-1])} updates, validation SSIM {hist['val_ssim'][-1]:.4f}")


def _train_prior(args, cfg, run):
    """Extract the codes when missing, stale or unreadable (safe: they are a pure function
    of the VQ-VAE and the data), then train the prior."""
    from hipgen_utils.checkpoints import CODES_FILE
    from hipgen_utils.codes import codes_are_current, extract_codes
    from hipgen_utils.run import Run
    from hipgen_utils.training import train_pixelcnn

    r = Run.at(run, data_dir=args.data_dir, device=cfg.pixelcnn.device, profile=cfg.profile, skip_bad=cfg.data.skip_bad)
    vid = r.vqvae_id
    if not codes_are_current(run, vid):
        why = "from another VQ-VAE or unreadable" if (run / CODES_FILE).exists() else "missing"
        print(f"{run / CODES_FILE} {why}: extracting codes with the trained VQ-VAE ...")
        extract_codes(r.vqvae(), r.splits(), run, device=r.device)
    codes = r.codes()
    _, hist = train_pixelcnn(cfg.pixelcnn, codes, codes["n_embeddings"], run, vqvae_id=vid,
                             resume=args.resume, overwrite=args.overwrite)  # fmt: skip
    if hist["val_bits"]:
        print(f"done: {int(hist['step'][-1])} updates ({hist['epoch'][-1]:.3g} epochs), "
              f"validation bits/code {hist['val_bits'][-1]:.4f}")


def _json_safe(x):
    """NaN/inf (e.g. a Dice of a class absent everywhere) -> null: strict JSON for jq and friends."""
    if isinstance(x, dict):
        return {k: _json_safe(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_json_safe(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def cmd_evaluate(args):
    from hipgen_utils.evaluate import evaluate_run
    from hipgen_utils.run import Run

    _sampling_defaults(args)
    _check_sampling(args, args.n_samples, 2, MAX_EVALUATE, "--n_samples")
    for t in (args.temperature, *args.temperatures):
        _check_temperature(t)
    if args.temperatures and args.no_anatomy:
        raise C.ConfigError("--temperatures sweeps the anatomy judge; drop --no_anatomy")
    run = Run.at(args.run_dir, data_dir=args.data_dir, device=args.device, skip_bad=args.skip_bad)
    # progress bars go to stderr, so also with --json (stdout: one JSON line): training the
    # judge's segmenter takes minutes on a CPU and must not look like a hang
    result = evaluate_run(
        run, args.split, n_samples=args.n_samples, seed=args.seed, temperature=args.temperature, progress=True,
        judge_cfg=replace(C.get_profile(args.profile).judge, seed=args.seed), anatomy=not args.no_anatomy,
        temperatures=args.temperatures, lead_lines=args.lead_lines, top_k=args.top_k,
    )  # fmt: skip
    if args.json:
        print(json.dumps(_json_safe(result)))
        return
    sweep = result.pop("temperature_sweep", [])
    # a dict of numbers (one per set: test, train, samples, ...) fits on its line
    inline = {k for k, v in result.items() if isinstance(v, dict) and all(isinstance(x, float) for x in v.values())}
    flat = {k: v for k, v in result.items() if not isinstance(v, dict) or k in inline}
    width = max(map(len, flat))
    for k, v in flat.items():
        if k in inline:
            v = ", ".join(f"{name} {x:.4f}" for name, x in v.items())
        print(f"{k:{width}s}  {v:.4f}" if isinstance(v, float) else f"{k:{width}s}  {v}")
    nested = [k for k, v in result.items() if isinstance(v, dict) and k not in inline]
    if nested:
        print(f"(per-class tables {', '.join(nested)}: see --json)")
    if sweep:
        from hipgen_utils.bench import print_table

        cols = [c for c in ("temperature", "anatomy_gap", "bone_pairs_ratio", "bone_pair_area_ratio",
                            "bone_pair_area_ratio_by_level", "bone_symmetry",
                            "bone_cortex_gap", "empty_samples")
                if c in sweep[0]]  # fmt: skip
        print_table("the judge's anatomy against temperature", cols, [[r[c] for c in cols] for r in sweep])


_LEAD_HELP = "the first this many code rows (in sampling order) are drawn at temperature 1 (0 = none)"


MAX_PREDICT = 256  # samples per `predict` call (a 16x16 grid; about 0.5 GB at most on a CPU)
MAX_EVALUATE = 4096  # samples scored by `evaluate`


def _check_sampling(args, n, low, high, flag):
    """Refuse bad sampling arguments in one line before any model is loaded."""
    if not low <= n <= high:
        raise C.ConfigError(f"{flag} {n} is out of range; use {low}..{high} (more: run again with another --seed)")
    if args.seed < 0:
        raise C.ConfigError(f"--seed {args.seed} must be >= 0")
    C.check_device(args.device)


def _png_out(out) -> tuple[Path, str]:
    """The PNG path for --out (".png" appended when it does not end so) and a note saying so."""
    p = Path(out)
    if p.is_dir():
        raise C.ConfigError(f"--out {p} is a folder; give a file name, or --format nii to write NIfTI files into it")
    if p.suffix.lower() == ".png":
        return p, ""
    return p.with_name(p.name + ".png"), f" (.png added to --out {p})"


_SLICE_NAME = re.compile(FILE_RE.pattern, re.IGNORECASE)  # case_/seg_ slices, as the loader reads them


def _nii_out(out, overwrite: bool) -> tuple[Path, list[Path]]:
    """The folder for --format nii and its earlier samples: refused when it is a file, a data
    folder (named keras_slices_*, or holding case_/seg_ slices), or holds samples (two runs'
    files would mix) unless --overwrite; those are deleted once the new samples are written."""
    p = Path(out)
    if p.exists() and not p.is_dir():
        raise C.ConfigError(f"--out {p} is a file; --format nii writes one .nii.gz per sample into a folder")
    if p.name.lower().startswith("keras_slices_"):
        raise C.ConfigError(f"--out {p} is named like a folder of the HipMRI data (keras_slices_*), whose loader "
                            "would read the samples as slices; choose another folder")  # fmt: skip
    data = next((f.name for f in p.iterdir() if _SLICE_NAME.match(f.name)), None) if p.is_dir() else None
    if data:
        raise C.ConfigError(f"--out {p} holds slices of the HipMRI data ({data}, ...); samples must not mix with "
                            "them: choose another folder")  # fmt: skip
    old = sorted(p.glob("sample_*.nii.gz")) if p.is_dir() else []
    if old and not overwrite:
        raise C.ConfigError(
            f"--out {p} already holds {len(old)} samples; pass --overwrite to replace them, or choose a new folder"
        )
    return p, old


def _sampling_defaults(args):
    """Fill --temperature / --top_k / --lead_lines left out with the profile's (--profile,
    else $HIPGEN_PROFILE, else demo: its `SampleConfig` in config.py), and refuse a negative
    top-k or lead-line count in one line."""
    sample = C.get_profile(args.profile).sample
    if args.temperature is None:
        args.temperature = sample.temperature
    if args.lead_lines is None:
        args.lead_lines = sample.lead_lines
    if args.top_k is None:
        args.top_k = sample.top_k
    if args.top_k < 0:
        raise C.ConfigError(f"--top_k {args.top_k} must be >= 0 (0 = off)")
    if args.lead_lines < 0:
        raise C.ConfigError(f"--lead_lines {args.lead_lines} must be >= 0 (code rows drawn at temperature 1; 0 = none)")


def _check_temperature(t: float):
    if t != t or not 0 < t < float("inf"):
        raise C.ConfigError(f"--temperature {t} must be a finite number > 0")


def cmd_predict(args):
    _sampling_defaults(args)
    _check_sampling(args, args.n, 1, MAX_PREDICT, "--n")
    _check_temperature(args.temperature)
    if args.format == "png":
        out, note = _png_out(args.out)
        _predict(args, out, note=note)
    else:
        out, old = _nii_out(args.out, args.overwrite)
        _predict(args, out, replaced=old)


def _predict(args, out: Path, note: str = "", replaced=()):
    import torch

    from hipgen_utils.checkpoints import check_writable
    from hipgen_utils.pipeline import generate, spread_slices, write_nifti_samples
    from hipgen_utils.plotting import plot_samples, save_figure
    from hipgen_utils.run import Run

    run = Run.at(args.run_dir, device=args.device)
    vqvae, prior, device = run.vqvae(), run.prior(), run.device
    check_writable(out if args.format == "nii" else out.parent, f"--out {out}")  # before the sampling
    if args.slice is not None:
        if not prior.n_conditions:
            raise C.ConfigError("--slice given but this prior is unconditional (trained with conditional=false)")
        if not 0 <= args.slice < prior.n_conditions:
            raise C.ConfigError(f"--slice {args.slice} out of range; this prior knows slices 0..{prior.n_conditions - 1}")
        cond = torch.full((args.n,), args.slice, dtype=torch.long)
    else:
        cond = spread_slices(prior, args.n)  # spread over the pelvis (None: unconditional)
    shape = run.code_grid()
    _, images = generate(
        prior, vqvae, args.n, temperature=args.temperature, top_k=args.top_k, seed=args.seed,
        condition=cond, shape=shape, device=device, lead_lines=args.lead_lines,
    )  # fmt: skip
    if args.format == "nii":  # all or nothing; --overwrite's earlier samples are removed only then
        paths = write_nifti_samples(images, out, replaced=replaced)
        if replaced:
            print(f"--overwrite: removed {len(replaced)} earlier samples from {out}")
        print(f"wrote {len(paths)} NIfTI samples to {out}")
    else:
        titles = None if cond is None else [f"slice {int(s)}" for s in cond]
        top = f", top-{args.top_k}" if args.top_k else ""
        title = f"T={args.temperature}{top}, seed={args.seed}"
        fig = plot_samples(images, titles=titles, suptitle=title)
        tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp.png")  # a whole PNG or none
        try:
            save_figure(fig, tmp)
            os.replace(tmp, out)
        except OSError as e:
            from hipgen_utils.checkpoints import write_error

            raise write_error(out, e) from e
        finally:
            tmp.unlink(missing_ok=True)
        print(f"wrote {out}{note}")


def cmd_bench(args):
    from hipgen_utils import bench

    {"data": bench.bench_data, "vqvae": bench.bench_vqvae, "prior": bench.bench_prior, "sample": bench.bench_sample}[args.what](args)


def cmd_notebooks(args):
    from hipgen_utils.notebooks import run_notebooks

    run_notebooks(C.profile_name(args.profile), only=args.only)


# --------------------------------------------------------------------------- parser


_SAMPLE = C.SampleConfig()  # the sampling defaults, in one place (config.SampleConfig)
# the profiles' own sampling settings, for the help of --temperature and --top_k
_PROFILE_SAMPLE = {name: C.get_profile(name).sample for name in C.PROFILE_NAMES}
_TEMPS = ", ".join(f"{name} {s.temperature:g}" for name, s in _PROFILE_SAMPLE.items())
_TOPK_HELP = "sample among the k likeliest codes at each position (0 = all; default: the profile's, " + ", ".join(
    f"{name} {s.top_k}" for name, s in _PROFILE_SAMPLE.items()) + ")"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hipgen", description="VQ-VAE + PixelCNN for 2D pelvic MRI slices")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("phantom", help="write the synthetic pelvic phantom in the HipMRI layout")
    s.add_argument("--out", required=True)
    s.add_argument("--case_weeks", type=int, nargs="+", help="TRAIN [VALIDATE TEST] case-weeks")
    s.add_argument("--full_size", action="store_true", help="the real release's counts (191/11/9)")
    s.add_argument("--n_slices", type=int)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--workers", type=int, help="processes writing case-weeks at once (default: min(2, cores))")
    s.add_argument("--profile", choices=C.PROFILE_NAMES)
    s.add_argument("--quiet", action="store_true")
    s.set_defaults(func=cmd_phantom)

    s = sub.add_parser("info", help="per split: counts, shapes, dtypes, intensity range, labels, skipped files")
    s.add_argument("--data_dir", required=True)
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_info)

    s = sub.add_parser("train", help="train the VQ-VAE or the PixelCNN prior")
    s.add_argument("--mode", required=True, choices=("vq_vae", "pixelcnn"))
    s.add_argument("--data_dir")
    s.add_argument("--run_dir")
    s.add_argument("--profile", choices=C.PROFILE_NAMES)
    s.add_argument("--resume", action="store_true",
                   help="continue the checkpoint in --run_dir with the same settings (only n_updates may grow)")
    s.add_argument("--overwrite", action="store_true",
                   help="start again: the run's checkpoint and the files computed from it move to RUN/replaced-<time>/")
    _add_overrides(s, C.VQVAEConfig, C.PixelCNNConfig, C.DataConfig)
    s.add_argument("--epochs", help=argparse.SUPPRESS)  # gone: refused with a hint (build_config)
    s.set_defaults(func=cmd_train)

    s = sub.add_parser("evaluate", help="SSIM/PSNR/codebook metrics, and prior metrics when trained")
    s.add_argument("--run_dir", required=True)
    s.add_argument("--data_dir")
    s.add_argument("--split", default="test", choices=SPLITS)
    s.add_argument("--json", action="store_true", help="print one JSON line")
    s.add_argument("--n_samples", type=int, default=256,
                   help=f"samples scored for sample quality, 2..{MAX_EVALUATE} (more: a steadier Fréchet distance)")
    s.add_argument("--seed", type=int, default=0,
                   help="seed of the scored samples and of the judge (its completion slices, samples, train subset)")
    s.add_argument("--temperature", type=float, default=None,
                   help="temperature of the scored samples and completions (default: the profile's, " + _TEMPS + ")")
    s.add_argument("--lead_lines", type=int, default=None, help=_LEAD_HELP + " (default: the profile's, 8)")
    s.add_argument("--top_k", type=int, default=None, help=_TOPK_HELP)
    s.add_argument("--temperatures", type=float, nargs="+", default=(),
                   help="the judge also scores the anatomy of samples at these temperatures (notebook 07's sweep)")
    s.add_argument("--device", default="auto")
    s.add_argument("--profile", help="profile whose judge and sampling settings (segmenter size, slices scored, "
                   "temperature, top-k, lead lines) to use (default: $HIPGEN_PROFILE, else demo)")
    s.add_argument("--no_anatomy", action="store_true",
                   help="skip the anatomy judge (segmenter, completion scores, anatomy_gap)")
    s.add_argument("--skip_bad", action="store_true",
                   help="skip (and count) unreadable or blank slice files instead of stopping at the first")
    s.set_defaults(func=cmd_evaluate)

    s = sub.add_parser("predict", help="sample new slices: a PNG grid or NIfTI files")
    s.add_argument("--run_dir", required=True)
    s.add_argument("--n", type=int, default=_SAMPLE.n_samples, help=f"number of samples, 1..{MAX_PREDICT}")
    s.add_argument("--temperature", type=float, default=None, help=f"default: the profile's, {_TEMPS}")
    s.add_argument("--lead_lines", type=int, default=None, help=_LEAD_HELP + " (default: the profile's, 8)")
    s.add_argument("--top_k", type=int, default=None, help=_TOPK_HELP)
    s.add_argument("--seed", type=int, default=_SAMPLE.seed)
    s.add_argument("--profile", help="profile whose sampling settings (temperature, top-k, lead lines) to use "
                   "(default: $HIPGEN_PROFILE, else demo)")
    s.add_argument("--slice", type=int, default=None, help="slice position to condition on")
    s.add_argument("--out", required=True,
                   help="png: the grid's file (replaced if it exists; '.png' is appended when the name "
                        "does not end in it, and the printed path says so). nii: a folder, created if "
                        "needed, that gets sample_000.nii.gz ...; a folder already holding samples is "
                        "refused unless --overwrite (so two runs' samples never mix), and so is a folder "
                        "of the data (keras_slices_*, or holding case_/seg_ slices)")
    s.add_argument("--format", choices=("png", "nii"), default="png")
    s.add_argument("--overwrite", action="store_true",
                   help="nii: replace the folder's earlier samples (deleted once the new ones are written)")
    s.add_argument("--device", default="auto")
    s.set_defaults(func=cmd_predict)

    s = sub.add_parser("bench", help="print a benchmark table")
    s.add_argument("what", choices=("data", "vqvae", "prior", "sample"))
    s.add_argument("--profile", choices=C.PROFILE_NAMES, default="demo")
    s.add_argument("--quick", action="store_true", help="smaller sizes (a smoke run of the benchmark)")
    s.add_argument("--no_ablation", action="store_true", help="vqvae: throughput only, skip the ablation")
    s.add_argument("--case_weeks", type=int, nargs=3, metavar=("TRAIN", "VALIDATE", "TEST"),
                   help="data: the phantom's case-weeks (default: the release's 191 11 9; --quick: 19 2 2)")
    s.add_argument("--n_slices", type=int, help="data: slices per case-week of the phantom (default 60)")
    s.add_argument("--steps", nargs="+", help="data: only these steps (the cold loads always run), e.g. 'census'")
    s.add_argument("--compare", action="store_true",
                   help="prior: train the prior variants (dilation, mirror context, code tables off and on) for the same time and score them")
    s.add_argument("--budget_s", type=float, help="prior --compare: training seconds per variant (default: the run's prior's)")
    s.add_argument("--run_dir", help="prior --compare: the run with vqvae.pt and codes.npz (default runs/<profile>)")
    s.add_argument("--variants", nargs="+", help="prior --compare: names (baseline dilated mirror mirror_tables) or name=key:value,...")
    s.add_argument("--out", help="prior --compare: keep each variant's checkpoint and compare.json here")
    s.add_argument("--no_judge", action="store_true", help="prior --compare: skip the judge's columns")
    s.add_argument("--reuse", action="store_true",
                   help="prior --compare: score a variant already trained in --out with the same settings instead of training it again")
    s.set_defaults(func=cmd_bench)

    s = sub.add_parser("notebooks", help="execute the notebooks in order into RUN/notebooks/")
    s.add_argument("--profile", choices=C.PROFILE_NAMES)
    s.add_argument("--only", nargs="+", help="notebook numbers, e.g. 01 02")
    s.set_defaults(func=cmd_notebooks)
    return p


def _expected_errors():
    from hipgen_utils.checkpoints import CheckpointError, MissingStepError, WriteError
    from hipgen_utils.notebooks import NotebookFailed
    from hipgen_utils.rundir import RunBusyError
    from hipgen_utils.training import TrainingStopped

    errors = [C.ConfigError, CheckpointError, MissingStepError, TrainingStopped, RunBusyError,
              NotebookFailed, FileNotFoundError, ValueError, WriteError]  # fmt: skip
    try:
        from hipgen_utils.data import DataError

        errors.append(DataError)
    except ImportError:
        pass
    return tuple(errors)


_OS_ADVICE = {
    errno.ENOSPC: "the disk is full: free some space, or use a folder on another disk",
    errno.EDQUOT: "your disk quota is used up: free some space, or use a folder on another disk",
    errno.EFBIG: "the file size limit was reached (`ulimit -f`): raise it",
    errno.EACCES: "check its permissions and its folder's (ls -ld)",
    errno.EPERM: "check its permissions and its folder's (ls -ld)",
    errno.EROFS: "it is on a read-only disk: use a folder on a writable one",
}


def _os_error_line(e: OSError) -> str:
    """One line for a file-system error no command turned into its own message."""
    if e.strerror and e.filename:
        return f"{e.filename}: {e.strerror}; {_OS_ADVICE.get(e.errno, 'check the path')}"
    return str(e).splitlines()[0] if str(e) else type(e).__name__


def _one_line_warning(message, category, filename, lineno, file=None, line=None):
    """Warnings (skipped files, resized slices) as one `hipgen: warning: ...` line, not two."""
    print(f"hipgen: warning: {message}", file=file or sys.stderr)


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _one_line_warning
            args.func(args)
    except _expected_errors() as e:
        if os.environ.get("HIPGEN_DEBUG"):
            raise
        print(f"hipgen {args.command}: error: {e}", file=sys.stderr)
        return EXIT_ERROR
    except OSError as e:  # a file-system failure met anywhere else: one line, not a traceback
        if os.environ.get("HIPGEN_DEBUG"):
            raise
        print(f"hipgen {args.command}: error: {_os_error_line(e)}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print(f"hipgen {args.command}: interrupted (checkpoints are written atomically; --resume continues)", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
