"""The sampler as a page anyone can open: what `make app` serves with Voilà.

notebooks/app_sampler.ipynb holds one cell, ``sampler_page(PROFILE, RUN_DIR)``: one line saying
what the run is (profile, data, training updates, test SSIM, bits per code), then notebook
06's sampler panel (`widgets.SamplerPanel`) at the run's profile's sampling settings, already
showing its first small grid of samples. A run without a VQ-VAE, code grids or a prior gets
one line naming what to run first instead.

``python -m hipgen_utils.app [--run_dir D] [--profile P] [--port N]`` serves that notebook
with Voilà (only its outputs; `make app` runs it): each page's kernel is shut down when the
page closes, and a kernel left without a page (a browser that crashed) is culled after
`--cull_idle_s` seconds idle; the kernels talk to the server over IPC sockets.
"""

from __future__ import annotations

import html
import json
import os
import sys
import warnings
from pathlib import Path

import ipywidgets
import numpy as np

from hipgen_utils import codes, widgets
from hipgen_utils import config as C
from hipgen_utils.checkpoints import (
    CODES_FILE,
    PRIOR_FILE,
    PRODUCER,
    VQVAE_FILE,
    CheckpointError,
    MissingStepError,
)
from hipgen_utils.data import DataError, resolve_data_dir
from hipgen_utils.notebooks import use_this_environments_kernel
from hipgen_utils.run import Run

NOTEBOOK = C.REPO_ROOT / "notebooks" / "app_sampler.ipynb"
# what the page needs from the run, in pipeline order, and how to say it is missing
NEEDS = ((VQVAE_FILE, "no VQ-VAE"), (CODES_FILE, "no code grids"), (PRIOR_FILE, "no prior"))
FIRST_SAMPLES = 4  # the first grid: small, so the page shows an image within seconds
CULL_IDLE_S = 120  # a kernel with no page open is shut down after this long idle
CULL_INTERVAL_S = 20


def page_run_dir(profile=None, run_dir=None) -> Path:
    """The run the page shows: `run_dir`, else $HIPGEN_RUN_DIR, else <repo>/runs/<profile>
    (as `config.run_dir`, but nothing is created)."""
    return Path(run_dir or os.environ.get(C.RUN_DIR_ENV) or C.REPO_ROOT / "runs" / C.profile_name(profile))


def _shown(path: Path) -> str:
    """`path` relative to the repository when it is inside it (runs/demo), else as given."""
    try:
        return str(Path(path).resolve().relative_to(C.REPO_ROOT))
    except ValueError:
        return str(path)


def what_is_missing(run_dir) -> str | None:
    """One line naming what to run first when `run_dir` lacks a step the page needs, else None."""
    rd = Path(run_dir)
    if not rd.is_dir():
        return f"{_shown(rd)} does not exist: run `make demo` first, or give RUN_DIR= a run directory."
    for name, what in NEEDS:
        if not (rd / name).is_file():
            return (f"{_shown(rd)} has {what} yet ({name}): run {PRODUCER[name]} first, "
                    "or `make demo`, which runs every notebook.")  # fmt: skip
    return None


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def run_profile(run) -> str:
    """The profile the run's VQ-VAE was trained with (its checkpoint says), else the run's cfg's."""
    return C.profile_name(run.vqvae_checkpoint.get("extra", {}).get("profile") or run.cfg.profile)


def run_summary(run) -> str:
    """One line saying what the run is: folder, profile, data, training updates, test SSIM
    (notebook 03's ssim_test.json) and bits per code (notebook 06's sample_quality.json on
    the test split, else the prior's last validation epoch)."""
    data = run.data_config().data_dir or "built-in phantom"
    parts = [_shown(run.dir), f"profile {run_profile(run)}", f"data: {data}"]
    parts.append(f"VQ-VAE {int(run.vqvae_checkpoint.get('step', 0)):,} updates, "
                 f"prior {int(run.prior_checkpoint.get('step', 0)):,} updates")  # fmt: skip
    ssim = _read_json(run.dir / "ssim_test.json").get("ssim_mean")
    parts.append(f"test SSIM {ssim:.3f}" if ssim is not None else "test SSIM not measured (notebook 03)")
    bits = _read_json(run.dir / "sample_quality.json").get("pixelcnn_bits_per_code_test")
    if bits is not None:
        parts.append(f"{bits:.2f} bits per code (test)")
    else:
        val = run.prior_checkpoint.get("history", {}).get("val_bits") or [None]
        parts.append(f"{val[-1]:.2f} bits per code (validation)" if val[-1] is not None else "bits per code not measured")
    return " · ".join(parts)


def _line(text: str, cls: str):
    return ipywidgets.HTML(f'<p class="{cls}" style="margin: 4px 0 8px 0">{html.escape(text)}</p>')


def build_panel(run):
    """Notebook 06's sampler panel on `run`'s models, at the sampling settings of the
    profile the run was trained with, after its first render (`FIRST_SAMPLES` samples)."""
    vq, prior, grids = run.vqvae(), run.prior(), run.codes()
    S = C.get_profile(run_profile(run)).sample
    test_images = None
    try:
        with warnings.catch_warnings():  # resized or skipped slices: the notebooks said so
            warnings.simplefilter("ignore")
            # no progress bar on the page if the phantom must be made again (a cleared cache)
            resolve_data_dir(None, run.data_config(), progress=False)
            test_images = np.asarray(run.splits("test", progress=False)["test"].images)
    except DataError:
        pass  # completion mode then shows the VQ-VAE's decoding of the test codes as the original
    if test_images is not None and len(test_images) != len(grids["codes_test"]):
        test_images = None  # the data changed since the codes were extracted
    panel = widgets.SamplerPanel(
        prior, lambda c: codes.decode_codes(vq, np.asarray(c)), test_codes=grids["codes_test"],
        test_images=test_images, test_slices=grids["slice_test"], shape=grids["codes_train"].shape[1:],
        max_samples=16, n_samples=FIRST_SAMPLES, temperature=S.temperature, lead_lines=S.lead_lines,
        top_k=S.top_k, seed=S.seed,
    )  # fmt: skip
    panel.render()
    return panel


def sampler_page(profile=None, run_dir=None, data_dir=None, device="auto"):
    """The page: an ipywidgets VBox of one line saying what the run is and the sampler panel
    (`build_panel`), or one line naming what to run first (class "hipgen-missing"). The
    panel is also the VBox's ``panel`` attribute (None on a missing step)."""
    rd = page_run_dir(profile, run_dir)
    missing = what_is_missing(rd)
    panel = None
    if missing is None:
        try:
            run = Run.at(rd, data_dir=data_dir, device=device, profile=profile)
            panel = build_panel(run)
            children = [_line(run_summary(run), "hipgen-run"), panel.widget]
        except (MissingStepError, CheckpointError) as e:
            missing = f"{_shown(rd)}: {e}"
    if missing is not None:
        children = [_line(missing, "hipgen-missing")]
    page = ipywidgets.VBox(children)
    page.panel = panel
    return page


# --------------------------------------------------------------------------- serving it


def voila_config(port: int, cull_idle_s: int = CULL_IDLE_S, cull_interval_s: int = CULL_INTERVAL_S):
    """The traitlets Config `serve` starts Voilà with (see the module docstring)."""
    from traitlets.config import Config

    c = Config()
    c.Voila.ip = "127.0.0.1"
    c.Voila.port = int(port)
    c.Voila.port_retries = 0  # the port asked for, or a clear failure
    c.Voila.open_browser = False
    # The page asks the server to shut its kernel down on `beforeunload`, with the _xsrf
    # cookie as proof; Voilà 0.5 sends the page before it would set that cookie, so every
    # request was refused (403 '_xsrf' argument missing) and each closed page left its
    # kernel (about 1 GB) running. Voilà serves this one notebook, without a token, to this
    # machine only (ip above); its kernels take widget messages only.
    c.Voila.tornado_settings = {"disable_check_xsrf": True}
    # and whatever is left without a page (a browser that crashed) goes after a while
    c.MappingKernelManager.cull_idle_timeout = int(cull_idle_s)
    c.MappingKernelManager.cull_interval = int(cull_interval_s)
    c.MappingKernelManager.cull_connected = False  # an open page keeps its kernel
    # IPC sockets in Voilà's private connection folder: no TCP port per kernel, and no
    # "Kernel is running over TCP without encryption" line per page in the terminal
    # (Windows keeps TCP: ZeroMQ has no IPC transport there)
    if sys.platform != "win32":
        c.KernelManager.transport = "ipc"
    return c


def serve(run_dir=None, profile=None, port: int = 8866, cull_idle_s: int = CULL_IDLE_S,
          cull_interval_s: int = CULL_INTERVAL_S) -> None:  # fmt: skip
    """Serve notebooks/app_sampler.ipynb with Voilà on http://127.0.0.1:`port`/ until
    interrupted. Refuses, in one line, a run the page could not show (`what_is_missing`)."""
    rd = page_run_dir(profile, run_dir).resolve()  # the kernels run in notebooks/
    missing = what_is_missing(rd)
    if missing:
        raise MissingStepError(missing)
    os.environ[C.RUN_DIR_ENV] = str(rd)
    if profile:
        os.environ[C.PROFILE_ENV] = C.profile_name(profile)
    use_this_environments_kernel()
    from voila.app import Voila

    print(f"sampler page for {_shown(rd)}: http://127.0.0.1:{port}/  (Ctrl-C stops it)", flush=True)
    Voila.launch_instance(argv=[str(NOTEBOOK)], config=voila_config(port, cull_idle_s, cull_interval_s))


def main(argv=None) -> int:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m hipgen_utils.app", description=__doc__.split("\n\n")[0])
    ap.add_argument("--run_dir", help="the run to show (default: $HIPGEN_RUN_DIR, else runs/<profile>)")
    ap.add_argument("--profile", choices=C.PROFILE_NAMES, help="picks the default run directory")
    ap.add_argument("--port", type=int, default=8866)
    ap.add_argument("--cull_idle_s", type=int, default=CULL_IDLE_S,
                    help="shut down a kernel with no page open after this many idle seconds")  # fmt: skip
    ap.add_argument("--cull_interval_s", type=int, default=CULL_INTERVAL_S, help="how often to look for such kernels")
    args = ap.parse_args(argv)
    try:
        serve(args.run_dir, args.profile, args.port, args.cull_idle_s, args.cull_interval_s)
    except MissingStepError as e:
        print(f"make app: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
