"""How much of a run's VQ-VAE codes the phantom's noise and fine texture decide.

    python3 scripts/code_noise_entropy.py [RUN_DIR] [DRAWS]      (default runs/demo, 32)

Fresh phantom slices (3 case-weeks, every 6th slice, seeded; not the run's own files) are
rendered once without their Rician noise, then encoded DRAWS times, each time with a fresh
draw of the noise ("noise"); and, separately, rendered DRAWS times with fresh draws of the
renderer's other random fields (tissue texture, fascial fat planes, the small wobble of
edges, their offsets) and of the noise, the anatomy kept ("texture + noise"). For each code
position the script counts how often two draws give the same code and the entropy of its
code over the draws (plug-in and Miller-Madow corrected), in bits and as a fraction of the
run's unigram bits per code.

What it says and what it does not: a prior that knew the anatomy exactly would still have
to pay for what these draws leave open. The per-position entropies summed over positions
overstate that joint entropy (neighbouring codes share noise through the encoder's
receptive field, and the texture fields are smooth, so much of a code's texture can be
told from its neighbours) and the plug-in estimate understates each one (DRAWS samples of
up to 512 codes), so read the numbers as how much of each code the noise and texture
decide, position by position, not as a floor on the bits per code. About 90 s for the
demo run on a 2-core CPU.
"""

import sys

import numpy as np
import torch

from hipgen_utils import phantom as P
from hipgen_utils.bench import print_table
from hipgen_utils.codes import encode_images, load_codes
from hipgen_utils.metrics import unigram_bits_per_code
from hipgen_utils.preprocess import harmonise, normalise
from hipgen_utils.run import load_vqvae

run_dir = sys.argv[1] if len(sys.argv) > 1 else "runs/demo"
draws = int(sys.argv[2]) if len(sys.argv) > 2 else 32
torch.set_num_threads(1)
vq, _ = load_vqvae(run_dir, device="cpu")
codes = load_codes(run_dir)
unigram = unigram_bits_per_code(codes["codes_train"], codes["codes_test"], int(codes["n_embeddings"]))


def prepared(img, case):
    """A rendered slice as the loader gives it: integer intensities at the case's scale,
    resized to the data's shape, robust-normalised."""
    return normalise(harmonise(np.rint(img * case["scale"]).astype(np.float32)))


def spread(grids):
    """(agreement of draws 0 and 1, plug-in entropy, Miller-Madow entropy), means over positions."""
    flat = grids.reshape(len(grids), -1)
    plug, mm = [], []
    for j in range(flat.shape[1]):
        _, c = np.unique(flat[:, j], return_counts=True)
        p = c / len(flat)
        h = float(-(p * np.log2(p)).sum())
        plug.append(h)
        mm.append(h + (len(c) - 1) / (2 * len(flat) * np.log(2)))
    return float(np.mean(flat[0] == flat[1])), float(np.mean(plug)), float(np.mean(mm))


noise_rng = np.random.default_rng(5)
out = {"noise": [], "texture + noise": []}
for cw in range(3):
    case = P.sample_case(np.random.default_rng([99, cw]))
    week = P.sample_week(np.random.default_rng([99, cw, 1]), case)
    for s in range(0, 60, 6):
        quiet, _ = P.phantom_slice(case, week, s, 60, rng=np.random.default_rng([98, cw, s]), noise=False)
        imgs = []
        for _ in range(draws):  # the renderer's Rician noise, drawn afresh
            n = noise_rng.standard_normal((2, *quiet.shape)).astype(np.float32) * week["noise"]
            imgs.append(prepared(np.sqrt((quiet + n[0]) ** 2 + n[1] ** 2), case))
        out["noise"].append(spread(encode_images(vq, np.stack(imgs))))
        imgs = [prepared(P.phantom_slice(case, week, s, 60, rng=np.random.default_rng([97, cw, s, k]))[0], case)
                for k in range(draws)]  # fmt: skip
        out["texture + noise"].append(spread(encode_images(vq, np.stack(imgs))))

rows = []
for name, vals in out.items():
    agree, plug, mm = np.mean(vals, axis=0)
    rows.append([name, f"{agree:.0%}", f"{plug:.2f}", f"{mm:.2f}", f"{mm / unigram:.2f}"])
print_table(
    f"{run_dir}: codes of {len(out['noise'])} phantom slices under {draws} draws each; "
    f"unigram {unigram:.2f} bits/code",
    ["what is drawn afresh", "same code in two draws", "entropy (bits, plug-in)", "Miller-Madow", "x unigram"],
    rows,
)
