"""Peak GPU memory and time of the fast sampler for the `full` prior (random weights).

    python3 scripts/gpu_sample_memory.py [n ...]

Before the sampler built its gate biases one row at a time, 256 samples of the `full` prior
held a (256, 64, 32, 512) float tensor per layer: 15.75 GiB on an H100.
"""

import sys
import time

import torch

from hipgen_utils.config import get_profile
from hipgen_utils.pixelcnn import GatedPixelCNN
from hipgen_utils.sampling import sample

cfg = get_profile("full").pixelcnn
device = "cuda" if torch.cuda.is_available() else "cpu"
print(f"{device}: {torch.cuda.get_device_name() if device == 'cuda' else 'cpu'}, torch {torch.__version__}")
print("prior        n   seconds  peak GiB")
for mirror in (True, False):
    torch.manual_seed(0)
    prior = GatedPixelCNN.from_config(cfg.__class__(**{**cfg.__dict__, "mirror": mirror}), 512).to(device)
    for n in [int(a) for a in sys.argv[1:]] or [16, 256]:
        if device == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        t = time.perf_counter()
        codes = sample(prior, n, seed=0, condition=[i % cfg.n_slices for i in range(n)])
        if device == "cuda":
            torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else float("nan")
        name = "mirror" if mirror else "dilated"
        print(f"{name:9s} {n:4d} {time.perf_counter() - t:9.2f} {peak:9.2f}  codes {tuple(codes.shape)}")
