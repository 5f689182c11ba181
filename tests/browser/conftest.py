"""What the browser tests share: the system's Chromium, a ci run to show, free ports.

Needs the system's Chromium (Playwright downloads nothing here): $CHROMIUM or `chromium`
on PATH; without it every browser test is skipped with one line saying so. The run
(notebooks 02, 04 and 05's results) is read from $HIPGEN_BROWSER_RUN_DIR (default
runs/ci-browser; `make test` passes runs/ci, which its notebook step has just made) and made
there first (ci profile, ~1-2 min) when missing.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
NEEDS = ("vqvae.pt", "codes.npz", "pixelcnn.pt")  # what notebook 06 and the app page load


def pytest_collection_modifyitems(config, items):
    if CHROMIUM:
        return
    skip = pytest.mark.skip(reason="no chromium on PATH (Debian: apt-get install chromium)")
    for item in items:
        item.add_marker(skip)


@pytest.fixture(scope="session")
def sync_api():
    return pytest.importorskip("playwright.sync_api", reason="playwright is not installed (dev extras)")


@pytest.fixture(scope="session")
def run_dir() -> Path:
    d = Path(os.environ.get("HIPGEN_BROWSER_RUN_DIR") or "runs/ci-browser")
    d = d if d.is_absolute() else REPO / d
    if not all((d / n).exists() for n in NEEDS):
        env = {**os.environ, "HIPGEN_RUN_DIR": str(d), "HIPGEN_PROFILE": "ci"}
        cmd = [sys.executable, "-m", "hipgen_utils", "notebooks", "--profile", "ci", "--only", "02", "04", "05"]
        subprocess.run(cmd, env=env, check=True, cwd=REPO)
    return d


@pytest.fixture(scope="session")
def browser(sync_api):
    """One headless Chromium for the session (each test opens its own pages)."""
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        yield b
        b.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, proc: subprocess.Popen, log: Path, what: str, timeout: float = 90) -> None:
    """Until something listens on 127.0.0.1:`port`; fails naming `log` when `proc` exits or time runs out."""
    deadline = time.monotonic() + timeout
    while True:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not start; log: {log}")
        time.sleep(0.3)


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@contextmanager
def serve(cmd: list, port: int, log_path: Path, what: str, **popen):
    """`cmd` started with its output in `log_path`, yielded once it listens on `port`;
    stopped (and the log closed) on the way out, whatever happened."""
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, **popen)
        try:
            wait_for_port(port, proc, log_path, what)
            yield proc
        finally:
            stop(proc)


def drag(page, slider, dx: float) -> None:
    """Drag a slider's handle by dx pixels with the mouse (press, move, release), aimed
    where the handle is right after scrolling it into view, as a user's eye would."""
    slider.scroll_into_view_if_needed()  # mouse events go to screen coordinates
    box = slider.locator(".noUi-handle").bounding_box()
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x + dx, y, steps=8)
    page.mouse.up()
