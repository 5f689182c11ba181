"""Execute the pipeline's notebooks in order (what `make demo` runs).

Each `notebooks/NN_name.py` (py:percent, the source) is read with jupytext and executed
with nbclient in a kernel whose environment selects the profile; the executed copy, with
outputs, is written to RUN/notebooks/ so the committed .ipynb stays output-free.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from hipgen_utils.config import PROFILE_ENV, REPO_ROOT, run_dir

NOTEBOOK_DIR = REPO_ROOT / "notebooks"


def notebook_sources(only=None) -> list[Path]:
    """The numbered py:percent sources, in pipeline order (optionally only some numbers)."""
    paths = sorted(NOTEBOOK_DIR.glob("[0-9][0-9]_*.py"))
    if only:
        paths = [p for p in paths if p.name[:2] in set(only)]
        if not paths:
            raise ValueError(f"no notebook numbered {' '.join(only)} in {NOTEBOOK_DIR}")
    return paths


def run_notebooks(profile: str, only=None, timeout: int | None = None) -> list[Path]:
    """Execute the notebooks with $HIPGEN_PROFILE=profile; returns the executed copies' paths."""
    import jupytext
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    out_dir = run_dir(profile) / "notebooks"
    out_dir.mkdir(parents=True, exist_ok=True)
    os.environ[PROFILE_ENV] = profile  # the kernel inherits it; the parameters cell reads it
    written = []
    for src in notebook_sources(only):
        t0 = time.perf_counter()
        print(f"[{profile}] running {src.name} ...", flush=True)
        nb = jupytext.read(src)
        client = NotebookClient(
            nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOK_DIR)}}
        )
        out = out_dir / (src.stem + ".ipynb")
        try:
            client.execute()
        except CellExecutionError as e:
            nbformat.write(nb, out)
            last = [line for line in str(e).splitlines() if line.strip()][-1:]
            raise RuntimeError(f"{src.name} failed ({' '.join(last)}); executed copy with the error: {out}") from None
        nbformat.write(nb, out)
        written.append(out)
        print(f"[{profile}] {src.name} done in {time.perf_counter() - t0:.0f} s -> {out}", flush=True)
    return written
