"""Benchmarks (`hipgen bench data|vqvae|prior|sample`): each prints a table. The data
benchmark (what grows with the data set) is `data_bench`; the prior variants' comparison
(`bench prior --compare`) is `prior_variants.compare_priors`.

Timings on shared machines are noisy: compare ratios within one run, not across runs. Each
benchmark imports the models it times inside its function, so `hipgen bench data` (which
measures memory) does not carry them.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import replace

import numpy as np
import torch

from hipgen_utils import config as C
from hipgen_utils.prior_variants import COMPARE_VARIANTS, compare_priors
from hipgen_utils.tables import print_table, timed

# --------------------------------------------------------------------------- data


def bench_data(args):
    """What grows with the data set, at the release's size (`data_bench.run`); prints the
    table and returns its rows."""
    from hipgen_utils.data_bench import run

    table = run(args)
    print("\n".join(table["notes"]))
    print_table(table["title"], table["header"], table["rows"])
    return table["rows"]


# --------------------------------------------------------------------------- vqvae


def _train_throughput(cfg: C.VQVAEConfig, steps: int, shape=(256, 128)) -> float:
    from hipgen_utils.vqvae import VQVAE

    torch.manual_seed(0)
    model = VQVAE.from_config(cfg)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.learning_rate)
    x = torch.rand(cfg.batch_size, 1, *shape)
    for i in range(steps + 1):
        if i == 1:  # first step is warm-up
            t0 = time.perf_counter()
        x_hat, vq = model(x)
        loss = torch.nn.functional.mse_loss(x_hat, x) + vq.loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    return steps * cfg.batch_size / (time.perf_counter() - t0)


def bench_vqvae(args):
    """Train throughput (demo, full), encode/decode throughput, and the codebook ablation."""
    from hipgen_utils.codes import decode_codes, encode_images
    from hipgen_utils.pipeline import load_splits, reconstruction_report
    from hipgen_utils.training import train_vqvae
    from hipgen_utils.vqvae import VQVAE

    demo, full = C.get_profile("demo"), C.get_profile("full")
    steps = 3 if args.quick else 10
    rows = []
    for name, cfg in (("demo", demo.vqvae), ("full", full.vqvae)):
        shape = (cfg.crop, cfg.crop) if cfg.crop else (256, 128)
        what = f"train {name}: batch {cfg.batch_size} x {shape[0]}x{shape[1]}"
        rows.append([what, _train_throughput(cfg, steps, shape)])
    rows.append(["train demo model on whole 256x128 slices", _train_throughput(replace(demo.vqvae, crop=0), steps)])
    model = VQVAE.from_config(demo.vqvae).eval()
    imgs = np.random.default_rng(0).random((64, 256, 128), dtype=np.float32)
    codes, enc_s = timed(encode_images, model, imgs)
    _, dec_s = timed(decode_codes, model, codes)
    rows += [["encode demo", len(imgs) / enc_s], ["decode demo", len(imgs) / dec_s]]
    print_table(
        f"hipgen bench vqvae: throughput on {torch.get_num_threads()} CPU threads (images or patches per second)",
        ["what", "images/s"], rows,
    )  # fmt: skip

    if getattr(args, "no_ablation", False):
        return
    # ablation at the demo budget: EMA + dead-code restart vs plain codebook loss, no restart
    cfg_data = demo.data
    splits = load_splits(cfg_data, progress=False)
    budget = replace(demo.vqvae, n_updates=60, log_interval=30) if args.quick else demo.vqvae
    rows = []
    for label, over in (
        ("EMA + restart", dict(codebook="ema", restart_dead=True)),
        ("loss, no restart", dict(codebook="loss", restart_dead=False)),
    ):
        cfg = replace(budget, **over)
        with tempfile.TemporaryDirectory() as run:
            (model, hist), secs = timed(
                train_vqvae, cfg, splits["train"].images, splits["validate"].images, run, progress=False
            )
        summary, _ = reconstruction_report(model, splits["test"].images)
        rows.append([label, cfg.n_updates, secs, summary["ssim_mean"], summary["psnr_mean"],
                     summary["codes_used"], summary["perplexity"]])  # fmt: skip
    print_table(
        f"ablation at the demo budget ({budget.n_updates} updates, batch {budget.batch_size}, "
        f"K={budget.n_embeddings}), test split of the demo data",
        ["codebook", "updates", "train_s", "ssim_mean", "psnr_mean", "codes_used", "perplexity"],
        rows,
    )


# --------------------------------------------------------------------------- prior


def _prior_throughput(cfg: C.PixelCNNConfig, n_codes: int, batch: int, bf16: bool, nll: bool, steps: int) -> float:
    """Training updates of the prior on random 64x32 grids; returns grids per second.
    nll=False is the plain loss cross_entropy(forward(c), c) on (B, K, H, W) logits."""
    import torch.nn.functional as F

    from hipgen_utils.pixelcnn import GatedPixelCNN

    torch.manual_seed(0)
    prior = GatedPixelCNN.from_config(cfg, n_codes).train()
    opt = torch.optim.Adam(prior.parameters(), lr=cfg.learning_rate)
    codes = torch.randint(0, n_codes, (batch, *C.CODE_GRID))
    cond = torch.randint(0, cfg.n_slices, (batch,)) if cfg.conditional else None
    for i in range(steps + 1):
        if i == 1:  # first step is warm-up
            t0 = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = prior.nll(codes, cond) if nll else F.cross_entropy(prior(codes, cond).float(), codes)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return steps * batch / (time.perf_counter() - t0)


def bench_prior(args):
    """Training throughput of the demo prior: loss layout, bf16 autocast, batch size.
    With --compare: the prior variants at the same time budget (`prior_variants.compare_priors`)."""
    from hipgen_utils.devices import cpu_has_bf16

    if getattr(args, "compare", False):
        compare_priors(
            getattr(args, "run_dir", None), getattr(args, "budget_s", None), getattr(args, "variants", None),
            args.profile, getattr(args, "out", None), judge=not getattr(args, "no_judge", False),
            reuse=getattr(args, "reuse", False),
        )  # fmt: skip
        return

    demo = C.get_profile("demo")
    cfg, k = demo.pixelcnn, demo.vqvae.n_embeddings
    steps = 2 if args.quick else 6
    native = cpu_has_bf16()
    variants = [
        (32, False, False, "plain loss on (B, K, H, W) logits, float32 (the previous demo setting)"),
        (32, False, True, "nll on channels-last logits, float32"),
        (32, True, True, "nll, bf16 autocast"),
        (cfg.batch_size, False, True, "nll, float32"),
        (cfg.batch_size, True, True, "nll, bf16 autocast (the demo setting)"),
    ]
    rows, base = [], None
    for batch, bf16, nll, what in variants:
        if bf16 and not native:
            rows.append([batch, what, "skipped: no native bf16 on this CPU", "", ""])
            continue
        gps = _prior_throughput(cfg, k, batch, bf16, nll, steps)
        base = base or gps
        rows.append([batch, what, gps, gps / batch, gps / base])
    print(f"demo prior: {cfg.n_channels} channels, {cfg.n_layers} layers, kernel {cfg.kernel_size}, K={k}, "
          f"64x32 grids; {torch.get_num_threads()} CPU threads; native bf16: {native}")  # fmt: skip
    print_table(
        "hipgen bench prior: training throughput (a CPU prior lacks updates more than grids per update)",
        ["batch", "variant", "grids/s", "updates/s", "x first row"],
        rows,
    )


# --------------------------------------------------------------------------- sample


FAST_REPEATS = 3  # fast-sampler timings per `bench sample` (median reported)


def bench_sample(args):
    """16 samples with the demo prior: fast vs naive (naive timed on a few rows, extrapolated)."""
    from hipgen_utils.checkpoints import PRIOR_FILE
    from hipgen_utils.pixelcnn import GatedPixelCNN
    from hipgen_utils.run import load_prior
    from hipgen_utils.sampling import one_cpu_thread, sample, sample_naive

    demo = C.get_profile("demo")
    trained = C.REPO_ROOT / "runs" / "demo"
    if (trained / PRIOR_FILE).exists():
        prior, ckpt = load_prior(trained)
        source = f"trained demo prior ({trained / PRIOR_FILE})"
    else:
        torch.manual_seed(0)
        prior = GatedPixelCNN.from_config(demo.pixelcnn, demo.vqvae.n_embeddings).eval()
        source = "untrained demo-sized prior (no runs/demo/pixelcnn.pt yet; timing does not depend on weights)"
    n, shape = 16, C.CODE_GRID
    naive_rows = 1 if args.quick else 2
    cond = torch.arange(n) % max(prior.n_conditions, 1) if prior.n_conditions else None
    # the demo's own sampling settings (temperature, top-k, lead lines), as `predict` draws
    how = dict(temperature=demo.sample.temperature, top_k=demo.sample.top_k or None, lead_lines=demo.sample.lead_lines)
    # a shared machine's timings swing by a third from one minute to the next: the fast
    # sampler is timed FAST_REPEATS times and the median reported, with the range beside it
    runs = [timed(sample, prior, n, seed=0, condition=cond, shape=shape, **how) for _ in range(FAST_REPEATS)]
    fast, times = runs[0][0], sorted(s for _, s in runs)
    fast_s = float(np.median(times))
    same_seed = all(torch.equal(fast, other) for other, _ in runs[1:])
    # the fast sampler runs single-threaded on the CPU: time naive the same way
    with one_cpu_thread(torch.device("cpu")):
        naive, naive_s = timed(sample_naive, prior, n, seed=0, condition=cond, shape=shape, rows=naive_rows, **how)
    naive_full = naive_s / naive_rows * shape[0]
    same_rows = bool(torch.equal(fast[:, :naive_rows], naive[:, :naive_rows]))
    print(f"{source}; both samplers on 1 CPU thread; grid {shape[0]}x{shape[1]}, K={prior.n_codes}; "
          f"T={how['temperature']:g}, top-k {how['top_k'] or 'off'}, {how['lead_lines']} lead lines")
    print_table(
        "hipgen bench sample (targets: fast <= 10 s for 16 samples, >= 20x naive, identical for a seed)",
        ["sampler", "samples", "seconds", "note"],
        [
            ["fast", n, fast_s, f"median of {FAST_REPEATS} runs ({times[0]:.2f}-{times[-1]:.2f} s); row-cached "
             "vertical stack, current-row horizontal stack"],
            ["naive", n, naive_full, f"full forward per position; timed on {naive_rows} rows x{shape[0] // naive_rows}"],
            ["ratio naive/fast", "", naive_full / fast_s, ""],
            [f"same seed {FAST_REPEATS} times identical", "", str(same_seed), ""],
            [f"fast == naive on first {naive_rows} rows", "", str(same_rows), ""],
        ],
    )
    if args.quick:
        return
    # the prior's switches on a demo-sized prior: timing does not depend on the weights, so
    # untrained ones do; same conditions, the fast sampler only
    rows = []
    for name, switches in COMPARE_VARIANTS.items():
        torch.manual_seed(0)
        variant = GatedPixelCNN.from_config(replace(demo.pixelcnn, **switches), demo.vqvae.n_embeddings).eval()
        vcond = torch.arange(n) % variant.n_conditions if variant.n_conditions else None
        _, secs = timed(sample, variant, n, seed=0, condition=vcond, shape=shape)
        rows.append([name, n, secs, str(switches or "")])
    print_table(
        f"fast sampler per prior variant (untrained demo-sized: {demo.pixelcnn.n_channels} channels, "
        f"{demo.pixelcnn.n_layers} layers; target <= 3 s for 16 on a 2-core CPU)",
        ["variant", "samples", "seconds", "switches"],
        rows,
    )
