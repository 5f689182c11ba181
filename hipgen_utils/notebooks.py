"""Execute the pipeline's notebooks in order (what `make demo` runs).

Each `notebooks/NN_name.py` (py:percent, the source) is read with jupytext and executed
with nbclient in a kernel whose environment selects the profile; the executed copy, with
outputs, is written to RUN/notebooks/ so the committed .ipynb stays output-free.

Every cell runs under a time limit (CELL_TIMEOUT per profile, $HIPGEN_CELL_TIMEOUT to
change it): a cell that hangs becomes a one-line failure naming the notebook and the cell.
The kernels talk to the runner over IPC sockets in a private temporary folder, not TCP
(ipykernel warns on every TCP start that the traffic is unencrypted).
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

from hipgen_utils.config import PROFILE_ENV, REPO_ROOT, RUN_DIR_ENV, run_dir

NOTEBOOK_DIR = REPO_ROOT / "notebooks"
# Seconds one cell may run: well above the longest cell of each profile (demo: notebook 05's
# training cell, ~17 min on a 2-core CPU; full: 40 epochs of the big prior).
CELL_TIMEOUT = {"ci": 300, "demo": 3600, "full": 12 * 3600}
CELL_TIMEOUT_ENV = "HIPGEN_CELL_TIMEOUT"
# nbclient waits for a cell's execute_reply on the shell socket; poll it in slices this long
# so that a lost wake-up (see _sliced_get_msg) costs at most one slice, not the whole limit.
SHELL_POLL_S = 1.0


def cell_timeout(profile: str) -> int:
    """The per-cell limit in seconds: $HIPGEN_CELL_TIMEOUT, else CELL_TIMEOUT[profile]."""
    raw = os.environ.get(CELL_TIMEOUT_ENV)
    if raw is None:
        return CELL_TIMEOUT.get(profile, CELL_TIMEOUT["full"])
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value <= 0:
        raise ValueError(f"${CELL_TIMEOUT_ENV}={raw!r} must be a whole number of seconds > 0")
    return value


def _sliced_get_msg(channel, slice_s: float = SHELL_POLL_S):
    """Wrap an async zmq channel's get_msg so it polls in short slices until its timeout.

    nbclient awaits the execute_reply with ``shell_channel.get_msg(timeout)`` while, for an
    ipywidgets Output widget that captures output (``with out:``), its front-end mimic
    sends comm messages on the same shell socket. That send can consume the socket's
    edge-triggered readiness notification: the pending poll is never woken for the reply,
    which sits unread until the poll's own timeout (forever with timeout=None). A poll
    that ends re-checks the socket, so polling in slices bounds the damage to one slice.
    """
    from queue import Empty

    get_msg = channel.get_msg

    async def sliced(timeout=None):
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = slice_s if deadline is None else min(slice_s, deadline - time.monotonic())
            try:
                return await get_msg(timeout=max(left, 0.0))
            except Empty:
                if deadline is not None and time.monotonic() >= deadline:
                    raise

    return sliced


# colour and cursor codes in IPython's tracebacks (CSI sequences: ESC [ ... letter)
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def plain(text: str) -> str:
    """`text` without ANSI escape codes (a failing cell's traceback is coloured)."""
    return _ANSI.sub("", text)


def _first_line(source: str) -> str:
    lines = [ln.strip() for ln in source.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    text = lines[0] if lines else source.strip()[:60]
    return text if len(text) <= 60 else text[:57] + "..."


def notebook_sources(only=None) -> list[Path]:
    """The numbered py:percent sources, in pipeline order (optionally only some numbers)."""
    paths = sorted(NOTEBOOK_DIR.glob("[0-9][0-9]_*.py"))
    if only:
        paths = [p for p in paths if p.name[:2] in set(only)]
        if not paths:
            raise ValueError(f"no notebook numbered {' '.join(only)} in {NOTEBOOK_DIR}")
    return paths


class NotebookFailed(RuntimeError):
    """A notebook cell failed, timed out or killed its kernel (message: one line)."""


def use_this_environments_kernel() -> None:
    """Put this environment's kernelspecs first on JUPYTER_PATH, so "python3" is its kernel
    (which runs sys.executable), not a user-wide spec of that name. For the notebook runner
    and `make app`'s Voilà; the Makefile does the same for `make lab`."""
    here = str(Path(sys.prefix) / "share" / "jupyter")
    paths = [p for p in os.environ.get("JUPYTER_PATH", "").split(os.pathsep) if p]
    os.environ["JUPYTER_PATH"] = os.pathsep.join([here, *[p for p in paths if p != here]])


def execute_notebook(nb, name: str, out: Path | None, timeout: int, cwd: Path = NOTEBOOK_DIR):
    """Execute notebook `nb` (nbformat node, changed in place) with this environment's
    python3 kernel, `timeout` seconds per cell; write it to `out` (when given) either way.

    A failing, timed-out or dead cell raises NotebookFailed with one line naming `name`, the
    cell and `out`.
    """
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

    class Client(NotebookClient):
        async def async_start_new_kernel_client(self):
            kc = await super().async_start_new_kernel_client()
            kc.shell_channel.get_msg = _sliced_get_msg(kc.shell_channel)
            return kc

    use_this_environments_kernel()

    from jupyter_client.manager import AsyncKernelManager

    # IPC sockets, not TCP: nothing listens on the network and ipykernel does not warn that
    # TCP is unencrypted. The socket paths must stay short (about 100 bytes on Linux and
    # macOS), so they live in a fresh folder under the system's temporary directory.
    # (Windows keeps TCP: ZeroMQ has no IPC transport there.)
    sockets = Path(tempfile.mkdtemp(prefix="hipgen-kernel-"))
    ipc = dict(transport="ipc", ip=str(sockets / "k")) if sys.platform != "win32" else {}
    km = AsyncKernelManager(kernel_name="python3", connection_file=str(sockets / "kernel.json"), **ipc)
    current = {"index": None}
    client = Client(nb, km=km, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(cwd)}})
    # a client given its kernel manager leaves the kernel running when it ends; `make demo`
    # runs seven notebooks in one process, and each kernel holds its models and data (up to
    # 3 GB at the release's size) until the process exits: shut each down with its notebook
    client.owns_km = True
    client.on_cell_execute = lambda cell, cell_index: current.update(index=cell_index)

    def where() -> str:
        k = current["index"]
        if k is None:
            return "before the first cell"
        return f"cell {k + 1} of {len(nb.cells)} ({_first_line(nb.cells[k].source)!r})"

    saved = f"; executed copy so far: {out}" if out else ""
    try:
        client.execute()
    except CellTimeoutError:
        msg = f"{name}: {where()} did not finish within {timeout} s (${CELL_TIMEOUT_ENV} sets the limit){saved}"
    except DeadKernelError:
        msg = f"{name}: the kernel died in {where()}{saved}"
    except CellExecutionError as e:
        last = [line for line in plain(str(e)).splitlines() if line.strip()][-1:]
        msg = f"{name} failed in {where()} ({' '.join(last)}){saved}"
    else:
        msg = None
    finally:
        shutil.rmtree(sockets, ignore_errors=True)
    if out is not None:
        nbformat.write(nb, out)
    if msg:
        raise NotebookFailed(msg)
    return nb


def run_notebooks(profile: str, only=None, timeout: int | None = None) -> list[Path]:
    """Execute the notebooks with $HIPGEN_PROFILE=profile; returns the executed copies' paths.

    timeout: seconds per cell (default `cell_timeout(profile)`). A failing or timed-out
    cell raises NotebookFailed with one line naming the notebook, the cell and the executed
    copy (written with the outputs so far).
    """
    import jupytext

    timeout = cell_timeout(profile) if timeout is None else timeout
    if os.environ.get(RUN_DIR_ENV):  # the kernels run in notebooks/: make it absolute here
        os.environ[RUN_DIR_ENV] = str(Path(os.environ[RUN_DIR_ENV]).resolve())
    out_dir = run_dir(profile) / "notebooks"
    out_dir.mkdir(parents=True, exist_ok=True)
    os.environ[PROFILE_ENV] = profile  # the kernel inherits it; the parameters cell reads it
    written = []
    for src in notebook_sources(only):
        t0 = time.perf_counter()
        print(f"[{profile}] running {src.name} ...", flush=True)
        out = out_dir / (src.stem + ".ipynb")
        execute_notebook(jupytext.read(src), src.name, out, timeout)
        written.append(out)
        print(f"[{profile}] {src.name} done in {time.perf_counter() - t0:.0f} s -> {out}", flush=True)
    return written


# --------------------------------------------------------------------------- the .ipynb pairs


def _stable_ids(cells, old_cells=()) -> None:
    """Give each cell a stable id: the id of an unchanged cell (same type and source) in the
    previous .ipynb, else one derived from its type and source, so `make sync` on a clean
    tree rewrites nothing and an edit changes only the edited cells' ids."""
    import hashlib

    old_cells = list(old_cells)
    pool: dict = {}
    for c in old_cells:
        if c.get("id"):
            pool.setdefault((c["cell_type"], c["source"]), []).append(c["id"])
    new_keys = {(c["cell_type"], c["source"]) for c in cells}
    used: set = set()
    for pos, c in enumerate(cells):
        key = (c["cell_type"], c["source"])
        reuse = [i for i in pool.get(key, []) if i not in used]
        # an edited cell keeps the id of the cell it replaced at the same position
        same = old_cells[pos] if pos < len(old_cells) else None
        if reuse:
            cid = reuse[0]
        elif (
            same is not None and same.get("id") and same["id"] not in used
            and same["cell_type"] == c["cell_type"] and (same["cell_type"], same["source"]) not in new_keys
        ):  # fmt: skip
            cid = same["id"]
        else:
            base = hashlib.sha1(f"{c['cell_type']}\n{c['source']}".encode()).hexdigest()[:8]
            cid, k = base, 1
            while cid in used:
                cid, k = f"{base}-{k}", k + 1
        c["id"] = cid
        used.add(cid)


# What JupyterLab writes into a notebook's metadata as soon as it opens it with this
# project's kernel (the kernel's spec, then the kernel's language_info): the committed .ipynb
# carries the same, so opening a notebook does not mark it modified. The Python version is
# the one of the machine that first synced the notebook (CI's) and is kept from then on, so
# that `make sync` gives the same file on every machine.
KERNELSPEC = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}


def language_info(version: str | None = None) -> dict:
    """ipykernel's language_info (what its kernel_info reply says) for Python `version`
    (default: this interpreter's)."""
    version = version or sys.version.split()[0]
    major = int(version.split(".")[0])
    return {
        "codemirror_mode": {"name": "ipython", "version": major},
        "file_extension": ".py",
        "mimetype": "text/x-python",
        "name": "python",
        "nbconvert_exporter": "python",
        "pygments_lexer": f"ipython{major}",
        "version": version,
    }


def sync_ipynb(sources=None) -> list[Path]:
    """Rewrite each notebooks/NN_name.ipynb from its py:percent source, without outputs and
    with stable cell ids, with the kernelspec and language_info JupyterLab would add on
    opening it (`KERNELSPEC`, `language_info`: the committed .ipynb's Python version is kept);
    a file whose content would not change is left untouched (also its mtime). Returns the
    files written."""
    import jupytext
    import nbformat
    from jupytext.config import load_jupytext_config

    written = []
    for py in sources or notebook_sources():
        py = Path(py)
        ipynb = py.with_suffix(".ipynb")
        # as `jupytext --to ipynb` does: jupytext.toml's filters go into the metadata
        nb = jupytext.read(py, config=load_jupytext_config(str(py.parent)))
        old = nbformat.read(ipynb, as_version=4) if ipynb.exists() else nbformat.v4.new_notebook()
        _stable_ids(nb.cells, old.cells)
        nb.metadata["kernelspec"] = dict(KERNELSPEC)
        nb.metadata["language_info"] = language_info(old.metadata.get("language_info", {}).get("version"))
        text = jupytext.writes(nb, fmt="ipynb") + "\n"
        if not ipynb.exists() or ipynb.read_text(encoding="utf-8") != text:
            ipynb.write_text(text, encoding="utf-8")
            written.append(ipynb)
    return written


# Notebook metadata a saved .ipynb keeps (what `make sync` writes; the version on disk wins);
# the rest (widget state, ...) is what the front-end adds on every save.
_KEEP_METADATA = ("kernelspec", "jupytext", "language_info")


def _on_disk(contents_manager, path) -> Path | None:
    root = getattr(contents_manager, "root_dir", None)
    f = Path(root or ".") / str(path).lstrip("/")
    return f if f.is_file() else None


def _header_end(text: str) -> int:
    """Offset just past a py:percent file's "# ---" ... "# ---" header, or 0 without one."""
    if not text.startswith("# ---\n"):
        return 0
    end = text.find("\n# ---\n", 5)
    return 0 if end < 0 else end + len("\n# ---\n")


def strip_outputs_pre_save(model, path="", contents_manager=None, **kwargs) -> None:
    """Jupyter server pre-save hook (`make lab` installs it) so that saving from JupyterLab
    leaves the pair as `make sync` writes it: the .ipynb without outputs, execution counts
    or front-end metadata; the .py and .ipynb keep their headers (kernelspec, language_info,
    jupytext settings) as they are on disk. The executed copies with outputs are in RUN/notebooks/."""
    content = model.get("content")
    old = _on_disk(contents_manager, path) if path else None
    if model.get("type") == "file" and isinstance(content, str) and str(path).endswith(".py"):
        # jupytext rewrites the header (kernel display name, jupytext version): keep ours
        if old is not None:
            before = old.read_text(encoding="utf-8")
            new_end, old_end = _header_end(content), _header_end(before)
            if new_end and old_end:
                model["content"] = before[:old_end] + content[new_end:]
        return
    if model.get("type") != "notebook" or not isinstance(content, dict):
        return
    meta = {k: v for k, v in content.get("metadata", {}).items() if k in _KEEP_METADATA}
    if old is not None:
        import json

        try:
            on_disk = json.loads(old.read_text(encoding="utf-8")).get("metadata", {})
            meta.update({k: v for k, v in on_disk.items() if k in _KEEP_METADATA})
        except ValueError:
            pass
    content["metadata"] = meta
    for cell in content.get("cells", []):
        tags = cell.get("metadata", {}).get("tags")
        cell["metadata"] = {"tags": tags} if tags else {}
        if cell.get("cell_type") == "code":
            cell["outputs"] = []
            cell["execution_count"] = None


# --------------------------------------------------------------------------- JupyterLab defaults

# `make lab`'s JupyterLab defaults, written as overrides.json into this environment's
# JupyterLab settings folder (a user's own settings still win).
LAB_OVERRIDES = {
    # every cell laid out at once. With JupyterLab's default ("contentVisibility") the cells
    # above notebook 06's sampler panel are laid out only when they scroll into view, at
    # their real heights: the panel moves down by hundreds of pixels just after it was
    # scrolled to, and the first drag of a slider lands where the slider was, not on it.
    "@jupyterlab/notebook-extension:tracker": {"windowingMode": "none"},
    # no "Would you like to get notified about official Jupyter news?" pop-up over the outputs
    "@jupyterlab/apputils-extension:notification": {"fetchNews": "false", "checkForUpdates": False},
}


def lab_settings_dir() -> Path:
    """This environment's JupyterLab settings folder (JupyterLab's `app_settings_dir`)."""
    return Path(sys.prefix) / "share" / "jupyter" / "lab" / "settings"


def write_lab_overrides(settings_dir=None) -> Path:
    """Write `LAB_OVERRIDES` into `settings_dir`/overrides.json (default `lab_settings_dir()`),
    keeping any other plugin's overrides already there. Returns the file."""
    import json

    path = Path(settings_dir or lab_settings_dir()) / "overrides.json"
    current = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    for plugin, values in LAB_OVERRIDES.items():
        current.setdefault(plugin, {}).update(values)
    text = json.dumps(current, indent=2) + "\n"
    if not path.is_file() or path.read_text(encoding="utf-8") != text:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return path


def _main(argv=None) -> int:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m hipgen_utils.notebooks")
    ap.add_argument("command", choices=["sync", "lab-settings"],
                    help="sync: rewrite the .ipynb from the .py sources; lab-settings: write "
                         "`make lab`'s JupyterLab defaults into this environment")  # fmt: skip
    ap.add_argument("sources", nargs="*", help="sync: py:percent sources (default: notebooks/NN_*.py)")
    args = ap.parse_args(argv)
    if args.command == "lab-settings":
        print(f"JupyterLab defaults: {write_lab_overrides()}")
        return 0
    for path in sync_ipynb(args.sources or None):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())
