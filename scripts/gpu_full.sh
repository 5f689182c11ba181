#!/usr/bin/env bash
# Run the `full` profile end to end on one GPU, through the repo's own CLI
# (`python3 -m hipgen_utils ...`, the same as the `hipgen` command), and time every step.
#
#   bash scripts/gpu_full.sh                                  # the remote runner's command (400 s budget)
#   GPU_BUDGET_S=0 bash scripts/gpu_full.sh                   # no budget: every step to its end
#   HIPMRI_DATA=/data/HipMRI GPU_BUDGET_S=0 GPU_PYTHON=.venv/bin/python bash scripts/gpu_full.sh
#                                                             # the real release, this clone's venv
#   GPU_PROFILE=ci OUT=/tmp/gpuout bash scripts/gpu_full.sh   # the same script on a CPU, seconds
#
# The notebooks do the same work with figures: `make notebooks PROFILE=full` (on a Slurm
# queue: scripts/slurm_full.sbatch).
#
# Meant for a machine with no internet that already has python3 with torch (CUDA), numpy,
# scipy, scikit-image, matplotlib, tqdm and pillow, but not nibabel: that one comes as a
# pure-python wheel in .whl/ (the runner must carry `.whl`; it is git-ignored through
# .git/info/exclude), installed into /tmp/site, never into the system.
#
# Steps (each under `timeout`; a later step runs only when the earlier ones succeeded):
#   setup    install .whl/*.whl into /tmp/site; print the GPU, python, torch, CUDA
#   data     $HIPMRI_DATA when set, else the synthetic phantom the profile asks for (full:
#            191/11/9 case-weeks x 60 slices = 12,660 slices, the release's counts) into
#            $HIPGEN_CACHE, by the CLI's own writer on every core; then every split decoded
#            once into the slice cache with all cores.
#   vqvae    hipgen train --mode vq_vae (full: 5000 updates of 32 whole slices; no cap)
#   codes    encode every split with the trained VQ-VAE (what `train --mode pixelcnn`
#            would do first; done apart only to time it)
#   prior    hipgen train --mode pixelcnn --max_seconds S (see the budget below)
#   predict  hipgen predict --n 16 -> $OUT/samples.png
#   complete scripts/gpu_completions.py: 4 test slices at the femoral heads' levels, half
#            kept, the rest sampled -> $OUT/completions.png
#   evaluate hipgen evaluate --json (test SSIM/PSNR/codebook, prior bits per code and
#            sample quality, and the anatomy judge: segmenter, completions, anatomy_gap)
#            -> $OUT/evaluate.json
#
# Time budget (GPU_BUDGET_S=0: none, the prior trains the profile's whole budget and every
# timeout is GPU_STEP_TIMEOUT, 6 h, only to stop a runaway). The 400 s default was made for a
# 7-minute slot on a lent GPU (full profile on one H100; estimates made before any GPU run;
# the H200 runs in the README measured them since):
#   * the VQ-VAE costs 8.3 GFLOP per 256x128 slice forward+backward (torch's flop
#     counter), 0.27 TFLOP per update of 32: 5-15 ms per update under bf16 plus a
#     validation (128 slices, SSIM on the CPU, ~0.2 s) every 50 updates: about 1-2 min
#     for the full 5000 updates. VQVAEConfig has no time cap, so it runs uncapped; its
#     timeout (GPU_VQVAE_TIMEOUT, 300 s) only stops a runaway.
#   * the prior (128 channels, 15 layers, kernel 5) costs 129 GFLOP per 64x32 code grid
#     forward+backward, 4.1 TFLOP per update of 32; 40 epochs are 40 x 358 = 14,320
#     updates: 20-40 ms each, i.e. 5-10 min. That does not fit, so it is capped with the
#     CLI's override of PixelCNNConfig.max_seconds (`--max_seconds S`: training stops
#     after S seconds, with the cosine learning-rate schedule fitted to S, and the
#     checkpoint is complete). S is whatever the whole-script budget GPU_BUDGET_S (400 s,
#     under the 7 minutes allowed) leaves after the earlier steps minus GPU_RESERVE_S
#     (140 s: the prior's start-up and last validation, predict, evaluate), kept within
#     [GPU_PRIOR_MIN_S, GPU_PRIOR_MAX_S] = [60, 900]; GPU_PRIOR_SECONDS=S fixes it.
#     Expected: about 150 s, some 3,500-7,500 updates (10-21 of the 40 epochs).
#
# Environment (all optional):
#   OUT                  output folder (default ./gpu_out): gpu_full.log, timings.tsv,
#                        samples.png, completions.png, evaluate.json, history.json, gpu_usage.txt
#   GPU_PROFILE          full (default) | demo | ci  (exported as HIPGEN_PROFILE)
#   GPU_WORK             scratch root (default /tmp): run dir $GPU_WORK/runs/<profile>
#   HIPGEN_CACHE         phantom + slice cache (default $GPU_WORK/hipgen_cache)
#   GPU_FRESH            1 (default): remove the run dir first; 0: reuse a finished
#                        VQ-VAE there (train --resume) and retrain the prior (--overwrite)
#   HIPMRI_DATA          the release's root folder (default: the profile's phantom)
#   GPU_PYTHON           the python to run (default python3; e.g. .venv/bin/python)
#   GPU_BUDGET_S         seconds for the whole script (400); 0 = no budget, no cap on the prior
#   GPU_STEP_TIMEOUT     every step's timeout when GPU_BUDGET_S=0 (21600)
#   GPU_RESERVE_S, GPU_PRIOR_MIN_S, GPU_PRIOR_MAX_S, GPU_PRIOR_SECONDS,
#   GPU_PRIOR_ARGS       extra options for the prior's training, e.g. "--mirror true"
#   GPU_EVAL_ARGS        extra options for evaluate, e.g. "--temperatures 0.5 0.7 1.0"
#   GPU_VQVAE_TIMEOUT, GPU_REQUIRE_CUDA (1 for full: stop when torch sees no GPU)

set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1
T_START=$(date +%s)

PROFILE=${GPU_PROFILE:-full}
OUT=${OUT:-$PWD/gpu_out}
WORK=${GPU_WORK:-/tmp}
RUN=${GPU_RUN_DIR:-$WORK/runs/$PROFILE}
SITE=${GPU_SITE:-/tmp/site}
BUDGET=${GPU_BUDGET_S:-400}
RESERVE=${GPU_RESERVE_S:-140}
PRIOR_MIN=${GPU_PRIOR_MIN_S:-60}
PRIOR_MAX=${GPU_PRIOR_MAX_S:-900}
PY=${GPU_PYTHON:-python3}
if [ "$BUDGET" = 0 ]; then  # no budget: each step runs to its end; timeouts only stop a runaway
    T_LONG=${GPU_STEP_TIMEOUT:-21600}
    T_SHORT=$T_LONG
else
    T_LONG=300
    T_SHORT=120
fi
VQVAE_TIMEOUT=${GPU_VQVAE_TIMEOUT:-$T_LONG}
FRESH=${GPU_FRESH:-1}
if [ "$PROFILE" = full ]; then REQUIRE_CUDA=${GPU_REQUIRE_CUDA:-1}; else REQUIRE_CUDA=${GPU_REQUIRE_CUDA:-0}; fi

export HIPGEN_PROFILE=$PROFILE
export HIPGEN_CACHE=${HIPGEN_CACHE:-$WORK/hipgen_cache}
export PYTHONUNBUFFERED=1
export TQDM_MININTERVAL=${TQDM_MININTERVAL:-10}  # progress bars: a line every 10 s, not 10 a second
export MPLBACKEND=Agg
DEADLINE=$((T_START + BUDGET))
export PY

mkdir -p "$OUT" "$WORK" "$HIPGEN_CACHE" || exit 1
OUT=$(cd "$OUT" && pwd)
LOG=$OUT/gpu_full.log
TIMES=$OUT/timings.tsv
GPU_USE=$OUT/gpu_usage.txt
: > "$LOG"
rm -f "$GPU_USE"
exec > >(tee -a "$LOG") 2>&1
TEE_PID=$!

echo "gpu_full.sh: profile $PROFILE, data ${HIPMRI_DATA:-the phantom of the profile}, run dir $RUN, cache $HIPGEN_CACHE," \
    "out $OUT, budget ${BUDGET}s (0: none), python $PY, $(date -u '+%F %T') UTC"
printf 'step\tseconds\tstatus\tgpu_mem_max_mib\tgpu_util_mean_pct\n' > "$TIMES"

# ---- GPU memory/utilisation, sampled once a second (for the table; nothing depends on it)
SMI_PID=
if command -v nvidia-smi > /dev/null 2>&1; then
    (
        while :; do
            printf '%s %s\n' "$(date +%s)" \
                "$(nvidia-smi --query-gpu=memory.used,utilization.gpu --format=csv,noheader,nounits 2> /dev/null | head -n 1 | tr -d ' ')"
            sleep 1
        done
    ) > "$GPU_USE" 2> /dev/null &
    SMI_PID=$!
fi
cleanup() { [ -n "$SMI_PID" ] && kill "$SMI_PID" 2> /dev/null; }
trap cleanup EXIT

gpu_stats() {  # gpu_stats T0 T1 -> "max_mem_mib<TAB>mean_util_pct" over [T0, T1] ("-" without samples)
    if [ ! -s "$GPU_USE" ]; then printf -- '-\t-'; return; fi
    awk -v a="$1" -v b="$2" '{split($2, v, ","); if ($1 >= a && $1 <= b + 1 && v[1] != "") {
        n++; if (v[1] + 0 > m) m = v[1] + 0; u += v[2] } }
        END { if (n) printf "%d\t%.0f", m, u / n; else printf "-\t-" }' "$GPU_USE"
}

FAILED=
step() {  # step NAME TIMEOUT_S STDOUT_FILE|- CMD ...: run CMD under timeout, time it, record it
    local name=$1 limit=$2 dest=$3 rc status t0 t1 secs
    shift 3
    if [ -n "$FAILED" ]; then
        echo "=== [$name] skipped: step '$FAILED' did not succeed"
        printf '%s\t-\tskipped\t-\t-\n' "$name" >> "$TIMES"
        return 1
    fi
    echo "=== [$name] $(date -u +%T) (timeout ${limit}s): $*"
    t0=$(date +%s.%N)
    if [ "$dest" = - ]; then
        timeout --kill-after=15 "$limit" "$@"
    else
        timeout --kill-after=15 "$limit" "$@" > "$dest"
    fi
    rc=$?
    t1=$(date +%s.%N)
    secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')
    case $rc in
        0) status=ok ;;
        124 | 137) status="timeout(${limit}s)" ;;
        *) status="failed(rc=$rc)" ;;
    esac
    printf '%s\t%s\t%s\t%s\n' "$name" "$secs" "$status" "$(gpu_stats "${t0%.*}" "${t1%.*}")" >> "$TIMES"
    echo "=== [$name] $status after ${secs}s"
    if [ $rc -ne 0 ]; then FAILED=$name; fi
    return $rc
}

# ---- setup: the missing pure-python wheels, then what this machine is ------------------
setup() {
    shopt -s nullglob
    local wheels=(.whl/*.whl)
    if [ ${#wheels[@]} -eq 0 ]; then
        echo "no wheels in .whl/ (did the runner carry .whl?); relying on what python3 has"
    elif ! "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target "$SITE" "${wheels[@]}"; then
        # no pip: a pure-python wheel is a zip of the package, so unpacking it installs it
        echo "pip install failed; unpacking the wheels into $SITE instead"
        "$PY" -c 'import sys, zipfile; [zipfile.ZipFile(w).extractall(sys.argv[1]) for w in sys.argv[2:]]' \
            "$SITE" "${wheels[@]}" || return 1
    fi
    echo "installed into $SITE: ${wheels[*]##*/}"
    if command -v nvidia-smi > /dev/null 2>&1; then nvidia-smi -L; else echo "nvidia-smi: not found"; fi
    nproc
    "$PY" - "$REQUIRE_CUDA" << 'EOF'
import sys

import torch

print("python", sys.version.split()[0], "| torch", torch.__version__, "| CUDA build", torch.version.cuda)
print("torch.cuda.is_available():", torch.cuda.is_available())
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    print(f"device 0: {p.name}, {p.total_memory / 2**30:.1f} GiB, bf16 {torch.cuda.is_bf16_supported()}")
import nibabel  # noqa: E402  (the carried wheel)

import hipgen_utils.cli  # noqa: E402,F401  (the package imports with what is installed)

print("nibabel", nibabel.__version__, "from", nibabel.__file__)
if sys.argv[1] == "1" and not torch.cuda.is_available():
    sys.exit("gpu_full.sh: torch sees no CUDA device; stopping (GPU_REQUIRE_CUDA=0 runs on the CPU)")
EOF
}
export PYTHONPATH="$SITE:$PWD${PYTHONPATH:+:$PYTHONPATH}"
export SITE REQUIRE_CUDA
export -f setup  # `timeout` runs programs, not functions: bash -c runs the exported function
step setup 120 - bash -c setup

# ---- data: $HIPMRI_DATA, or the profile's phantom (the CLI's own writer), decoded into the cache ----
if [ "$BUDGET" = 0 ]; then T_DATA=$T_LONG; else T_DATA=240; fi
step data "$T_DATA" - "$PY" - << 'EOF'
"""$HIPMRI_DATA when set, else write the profile's phantom where the CLI looks for it
(resolve_data_dir reuses it when complete) with one process per core; then decode every
split once into the slice cache with all cores (the CLI uses 2), so the later steps' times
are the models' alone."""
import os
import time

from hipgen_utils import config as C
from hipgen_utils.data import load_split, resolve_data_dir
from hipgen_utils.layout import SPLITS

t0 = time.perf_counter()
cfg = C.get_profile().data
workers = os.cpu_count() or 1
t1 = time.perf_counter()
root = resolve_data_dir(None, cfg, workers=workers)  # the CLI's own writer, on every core
print(f"data root {root} (checked in {time.perf_counter() - t1:.1f} s)")
for split in SPLITS:
    t1 = time.perf_counter()
    s = load_split(root, split, shape=(cfg.height, cfg.width), resize_mode=cfg.resize_mode, norm=cfg.norm,
                   skip_bad=cfg.skip_bad, progress=False, workers=workers)
    print(f"{split}: {len(s)} slices cached in {time.perf_counter() - t1:.1f} s")
print(f"data step {time.perf_counter() - t0:.1f} s")
EOF

# ---- the VQ-VAE: the full 5000 updates (VQVAEConfig has no time cap) ----------------------
if [ "$FRESH" = 1 ] && [ -z "$FAILED" ] && [ -d "$RUN" ] && [ "$RUN" != / ]; then
    echo "GPU_FRESH=1: removing the earlier run dir $RUN"
    rm -rf "$RUN"
fi
mkdir -p "$RUN"
RESUME=()  # continue a VQ-VAE left there (GPU_FRESH=0); --resume on none would be refused
[ -f "$RUN/vqvae.pt" ] && RESUME=(--resume)
step vqvae "$VQVAE_TIMEOUT" - "$PY" -m hipgen_utils train --mode vq_vae --run_dir "$RUN" "${RESUME[@]}"

# ---- codes: what `train --mode pixelcnn` extracts first, apart so that it is timed -------
step codes "$T_SHORT" - "$PY" - "$RUN" << 'EOF'
import sys
import time

from hipgen_utils import config as C
from hipgen_utils.codes import codes_are_current, extract_codes
from hipgen_utils.run import Run

t0 = time.perf_counter()
cfg = C.get_profile()
r = Run.at(sys.argv[1], device=cfg.pixelcnn.device, profile=cfg.profile)
if codes_are_current(r.dir, r.vqvae_id):
    print("codes.npz is current")
else:
    extract_codes(r.vqvae(), r.splits(), r.dir, device=r.device, progress=False)
codes = r.codes()
print(f"codes on {r.device}: " + ", ".join(f"{k} {codes[k].shape}" for k in sorted(codes) if k.startswith("codes_"))
      + f" in {time.perf_counter() - t0:.1f} s")
EOF

# ---- the prior: capped by --max_seconds to what the budget leaves ------------------------
LEFT=$((DEADLINE - $(date +%s)))
CAP=()
if [ "$BUDGET" = 0 ] && [ -z "${GPU_PRIOR_SECONDS:-}" ]; then
    PRIOR_S=0  # no cap: the profile's whole budget
elif [ -n "${GPU_PRIOR_SECONDS:-}" ]; then
    PRIOR_S=$GPU_PRIOR_SECONDS
else
    PRIOR_S=$((LEFT - RESERVE))
    [ "$PRIOR_S" -lt "$PRIOR_MIN" ] && PRIOR_S=$PRIOR_MIN
    [ "$PRIOR_S" -gt "$PRIOR_MAX" ] && PRIOR_S=$PRIOR_MAX
fi
if [ "$PRIOR_S" = 0 ]; then
    echo "no budget: the prior trains the profile's whole budget"
    T_PRIOR=$T_LONG
else
    echo "budget: ${LEFT}s of ${BUDGET}s left before the prior; prior --max_seconds $PRIOR_S (reserve ${RESERVE}s for the rest)"
    CAP=(--max_seconds "$PRIOR_S")
    T_PRIOR=$((PRIOR_S + 120))
fi
step prior "$T_PRIOR" - "$PY" -m hipgen_utils train --mode pixelcnn --run_dir "$RUN" \
    "${CAP[@]}" --overwrite ${GPU_PRIOR_ARGS:-}

# ---- samples and evaluation ---------------------------------------------------------------
step predict "$T_SHORT" - "$PY" -m hipgen_utils predict --run_dir "$RUN" --n 16 --seed 0 --out "$OUT/samples.png"
step complete "$T_SHORT" - "$PY" scripts/gpu_completions.py "$RUN" "$OUT/completions.png"
step evaluate "$T_LONG" "$OUT/evaluate.json" "$PY" -m hipgen_utils evaluate --run_dir "$RUN" --json ${GPU_EVAL_ARGS:-}

# ---- summary -------------------------------------------------------------------------------
T_END=$(date +%s)
TOTAL_STATUS=ok
[ -n "$FAILED" ] && TOTAL_STATUS="failed at $FAILED"
printf 'total\t%s\t%s\t%s\n' "$((T_END - T_START))" "$TOTAL_STATUS" \
    "$(gpu_stats "$T_START" "$T_END")" >> "$TIMES"
"$PY" - "$RUN" "$OUT" << 'EOF' || true
"""Training histories from the checkpoints (-> history.json) and the headline numbers."""
import json
import sys
from pathlib import Path

import torch

run, out = Path(sys.argv[1]), Path(sys.argv[2])
hist = {}
for name, kind in (("vqvae.pt", "vqvae"), ("pixelcnn.pt", "prior")):
    try:
        ck = torch.load(run / name, map_location="cpu", weights_only=False)
    except Exception as e:  # noqa: BLE001
        print(f"{name}: {e.__class__.__name__}: {e}")
        continue
    h = ck.get("history", {})
    hist[kind] = {"config": ck.get("config"), "step": ck.get("step"), "history": h}
    secs = (h.get("seconds") or [0])[-1]
    steps = int(ck.get("step", 0))
    rate = f"{steps / secs:.1f} updates/s" if secs else ""
    if kind == "vqvae":
        print(f"VQ-VAE: {steps} updates in {secs:.0f} s ({rate}), val SSIM {(h.get('val_ssim') or [float('nan')])[-1]:.4f}")
    else:
        ep = (h.get("epoch") or [0])[-1]
        print(f"prior: {steps} updates, {ep:.2f} epochs in {secs:.0f} s ({rate}), "
              f"val bits/code {(h.get('val_bits') or [float('nan')])[-1]:.4f}")
if hist:
    (out / "history.json").write_text(json.dumps(hist, default=str))
try:
    ev = json.loads((out / "evaluate.json").read_text())
except (OSError, ValueError):
    ev = {}
keys = ("ssim_mean", "ssim_min", "psnr_mean", "codes_used", "perplexity", "pixelcnn_bits_per_code_test",
        "unigram_bits_per_code", "bits_ratio_vs_unigram", "nn_ssim_median", "fid_samples", "fid_test_vs_train",
        "fid_unigram", "segmenter_seconds", "trusted_classes", "completion_dice", "completion_dice_mirror",
        "completion_dice_reconstruction", "completion_dice_unigram", "completion_ssim", "completion_ssim_mirror",
        "anatomy_gap", "bone_pairs_ratio", "bone_pairs", "fid_seg_samples", "fid_seg_test_vs_train", "fid_seg_unigram")
for k in keys:
    if k in ev:
        v = ev[k]
        print(f"  {k:32s} {v:.4f}" if isinstance(v, float) else f"  {k:32s} {v}")
EOF
echo
echo "=== timings (profile $PROFILE, prior --max_seconds $PRIOR_S; 0: no cap) ==="
column -t -s "$(printf '\t')" "$TIMES" 2> /dev/null || cat "$TIMES"
echo "outputs in $OUT:" $(cd "$OUT" && ls)
RC=0
[ -n "$FAILED" ] && RC=1
exec > /dev/null 2>&1  # let tee write the last lines before the script ends (at most 5 s)
for _ in 1 2 3 4 5 6 7 8 9 10; do kill -0 "$TEE_PID" 2> /dev/null || break; sleep 0.5; done
exit $RC
