"""The sampler page `make app` serves, as a visitor meets it: Voilà in headless Chromium.

One Voilà server (`python -m hipgen_utils.app`, as `make app` starts it) on the ci run; the
page is loaded 10 times, one after the other, each time in a new browser page: each shows
its first image within FIRST_IMAGE_S, one line about the run and no error text; each load
moves one control (every slider and the mode buttons get moved), which must change the
image; then the visitor leaves the page, and its kernel must be gone within SHUTDOWN_S
(the page's shutdown request; idle culling is set longer, so it cannot stand in). At the
end no kernel is left. The times to first image are printed (median of the 10 loads).
"""

from __future__ import annotations

import os
import statistics
import sys
import time

import pytest
from conftest import drag, free_port, serve

psutil = pytest.importorskip("psutil")

LOADS = 10
FIRST_IMAGE_S = 30  # from asking for the page to its first image, on a busy 2-core machine
RENDER_S = 60
SHUTDOWN_S = 20  # the page's shutdown request works well within this
CULL_IDLE_S = 45  # longer than SHUTDOWN_S: a kernel gone in time was shut down, not culled
# what each load moves: (mode to pick first or None, slider description or None, dx pixels)
MOVES = [
    (None, "temperature", 40),
    (None, "top-k", 40),
    (None, "seed", 120),
    (None, "samples", 40),
    (None, "slice", -40),
    ("completion", None, 0),
    ("completion", "test image", 40),
    ("completion", "keep", -40),
    ("completion", "temperature", -40),
    ("completion", "seed", 120),
]
ERROR_TEXT = ("Traceback", "Error", "error", "render failed", "not found", "There was an error")


@pytest.fixture(scope="module")
def voila(run_dir, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("voila")
    port = free_port()
    log_path = tmp / "voila.log"
    cmd = [sys.executable, "-m", "hipgen_utils.app", "--run_dir", str(run_dir), "--port", str(port),
           "--cull_idle_s", str(CULL_IDLE_S), "--cull_interval_s", "5"]  # fmt: skip
    with serve(cmd, port, log_path, "Voila", env={**os.environ, "HIPGEN_PROFILE": "ci"}) as proc:
        yield f"http://127.0.0.1:{port}/", proc, log_path


def kernels(proc) -> list:
    """The server's kernel processes still running."""
    out = []
    for child in psutil.Process(proc.pid).children(recursive=True):
        try:
            if child.status() != psutil.STATUS_ZOMBIE and "ipykernel_launcher" in " ".join(child.cmdline()):
                out.append(child)
        except psutil.NoSuchProcess:
            pass
    return out


def _wait_no_kernels(proc, timeout: float) -> float:
    t0 = time.monotonic()
    while kernels(proc):
        if time.monotonic() - t0 > timeout:
            return float("inf")
        time.sleep(0.25)
    return time.monotonic() - t0


def _image(page) -> str:
    img = page.locator(".widget-output img")
    return img.first.get_attribute("src") if img.count() else ""


def _changes_image(page, action) -> None:
    before = _image(page)
    action()
    page.wait_for_function(
        "(before) => { const i = document.querySelector('.widget-output img'); return i && i.src !== before; }",
        arg=before,
        timeout=RENDER_S * 1000,
    )


def _move(page, mode, slider, dx) -> None:
    """Pick `mode` (a click on its button) and/or drag `slider`: each must change the image."""
    if mode:
        _changes_image(page, lambda: page.get_by_role("button", name=mode).click())
    if slider:
        _changes_image(page, lambda: drag(page, page.locator(".widget-slider", has_text=slider), dx))


def test_ten_loads_each_show_an_image_move_a_control_and_leave_no_kernel(voila, browser, tmp_path_factory, capsys):
    url, proc, log = voila
    shots = tmp_path_factory.mktemp("app_page")
    first_image, gone_after = [], []
    for i, (mode, slider, dx) in enumerate(MOVES[:LOADS]):
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.set_default_timeout(RENDER_S * 1000)
        t0 = time.monotonic()
        page.goto(url)
        page.wait_for_selector(".widget-output img", timeout=FIRST_IMAGE_S * 1000)
        first_image.append(time.monotonic() - t0)
        if i == 0:
            page.screenshot(path=str(shots / "first_load.png"), full_page=True)
        text = page.locator("body").inner_text()
        line = page.locator(".hipgen-run").inner_text()
        assert "profile ci" in line and "bits per code" in line and "test SSIM" in line, line
        bad = [w for w in ERROR_TEXT if w in text]
        assert not bad, f"load {i + 1}: {bad} on the page: {text[:1500]}"
        _move(page, mode, slider, dx)
        text = page.locator("body").inner_text()
        assert not [w for w in ERROR_TEXT if w in text], f"load {i + 1} after moving {slider or mode}: {text[:1500]}"
        page.goto("about:blank")  # the visitor leaves: the page asks the server to shut its kernel down
        page.close()
        gone_after.append(_wait_no_kernels(proc, SHUTDOWN_S))
        assert gone_after[-1] <= SHUTDOWN_S, f"load {i + 1}: its kernel still runs {SHUTDOWN_S} s after the page went; log {log}"
    assert len(kernels(proc)) == 0
    with capsys.disabled():
        print(f"\napp page: first image after {statistics.median(first_image):.1f} s (median of {LOADS} loads; "
              f"{min(first_image):.1f}-{max(first_image):.1f} s), kernels left after {LOADS} loads: "
              f"{len(kernels(proc))} (each gone {max(gone_after):.1f} s or less after its page); "
              f"screenshot {shots / 'first_load.png'}")  # fmt: skip
