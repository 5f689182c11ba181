"""Where the models run: one rule for choosing a device, and when to use bf16.

`pick_device("auto")` takes CUDA, then Apple MPS, then the CPU; every loader and training
loop goes through it (or `as_device`, which also accepts a torch.device), so nothing
hard-codes "cuda". `autocast` gives bf16 on CUDA always, and on a CPU only where it
computes bf16 natively (elsewhere emulated bf16 is slower than float32).
"""

from __future__ import annotations

import contextlib
import functools
from pathlib import Path

import torch

from hipgen_utils.config import check_device


def pick_device(name: str = "auto") -> torch.device:
    """`auto` picks CUDA, then Apple MPS, then CPU; otherwise the named device."""
    check_device(name)  # a ConfigError in one line, not torch's RuntimeError
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} requested but CUDA is not available; use --device auto or cpu")
    return torch.device(name)


def as_device(device="auto") -> torch.device:
    """A torch.device from a name ("auto", "cpu", "cuda", "cuda:1", "mps"; see `pick_device`)
    or a torch.device. The loaders default to "auto": a model loaded on a GPU box runs there."""
    return device if isinstance(device, torch.device) else pick_device(str(device))


@functools.cache
def cpu_has_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX512-BF16 or AMX; read from /proc/cpuinfo
    once per process: `autocast` asks on every training step).

    Elsewhere CPU bf16 is emulated and slower than float32, so it is not used."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def autocast(device: torch.device, cpu_bf16: bool = False):
    """bf16 autocast on CUDA (the quantiser keeps float32 inside); on a CPU only when
    `cpu_bf16` is asked for and the CPU has native bf16; a no-op elsewhere."""
    kind = torch.device(device).type
    if kind == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    if kind == "cpu" and cpu_bf16 and cpu_has_bf16():
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()
