"""Notebook 06 as a student uses it: JupyterLab in headless Chromium, driven by Playwright.

`make browser-test` (also the last step of `make test`): serve a copy of notebook 06 with
JupyterLab (this .venv's kernel, ci profile), Run All from the menu, then drag the
temperature and seed sliders and click "completion" with real mouse events; each must
change the panel's image and no error may appear. The second test shows that the check
fails when the sampler callback raises: it breaks the panel's decode function from a new
cell typed into the notebook, moves a slider, and expects the check to fail.

Needs the system's Chromium (Playwright downloads nothing here): $CHROMIUM or `chromium`
on PATH; without it the module is skipped with one line saying so. Notebook 06 reads
notebooks 02, 04 and 05's results from $HIPGEN_BROWSER_RUN_DIR (default runs/ci-browser),
which are made there first (ci profile, ~1-2 min) when missing.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
if not CHROMIUM:
    pytest.skip("no chromium on PATH (Debian: apt-get install chromium)", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (dev extras)")

NEEDS = ("vqvae.pt", "codes.npz", "pixelcnn.pt")  # what notebook 06 loads
RENDER_S = 90  # one slider move re-renders in about a second; generous for a busy machine
RUN_ALL_S = int(os.environ.get("HIPGEN_BROWSER_RUN_ALL_S", 420))


@pytest.fixture(scope="module")
def run_dir() -> Path:
    d = Path(os.environ.get("HIPGEN_BROWSER_RUN_DIR") or "runs/ci-browser")
    d = d if d.is_absolute() else REPO / d
    if not all((d / n).exists() for n in NEEDS):
        env = {**os.environ, "HIPGEN_RUN_DIR": str(d), "HIPGEN_PROFILE": "ci"}
        cmd = [sys.executable, "-m", "hipgen_utils", "notebooks", "--profile", "ci", "--only", "02", "04", "05"]
        subprocess.run(cmd, env=env, check=True, cwd=REPO)
    return d


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def lab(run_dir, tmp_path_factory):
    """JupyterLab serving a copy of notebook 06 (so nothing in notebooks/ is saved over)."""
    tmp = tmp_path_factory.mktemp("lab")
    root = tmp / "notebooks"
    root.mkdir()
    for ext in (".py", ".ipynb"):
        shutil.copy(REPO / "notebooks" / f"06_sample{ext}", root)
    # windowing off: every cell stays in the DOM; autosave off: the copy is never written
    settings = tmp / "settings"
    for plugin, values in {
        "@jupyterlab/notebook-extension/tracker": {"windowingMode": "none"},
        "@jupyterlab/docmanager-extension/plugin": {"autosave": False},
        "@jupyterlab/apputils-extension/notification": {"fetchNews": "false", "checkForUpdates": False},
    }.items():
        f = settings / (plugin + ".jupyterlab-settings")
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(json.dumps(values))
    port, token = _free_port(), secrets.token_hex(16)
    env = {
        **os.environ,
        "HIPGEN_PROFILE": "ci",
        "HIPGEN_RUN_DIR": str(run_dir),
        # this environment's kernels first: "python3" is the .venv's
        "JUPYTER_PATH": os.pathsep.join([str(Path(sys.prefix) / "share" / "jupyter"), os.environ.get("JUPYTER_PATH", "")]),
        "JUPYTER_CONFIG_DIR": str(tmp / "config"),
        "JUPYTER_RUNTIME_DIR": str(tmp / "runtime"),
        # no user-wide kernels (e.g. one an older clone installed): only the .venv's python3
        "JUPYTER_DATA_DIR": str(tmp / "data"),
    }
    log = open(tmp / "lab.log", "w")  # noqa: SIM115 (closed below)
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "jupyterlab", "--no-browser", f"--port={port}", "--ServerApp.ip=127.0.0.1",
            f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
            f"--LabApp.user_settings_dir={settings}", f"--LabApp.workspaces_dir={tmp / 'workspaces'}",
            "--ContentsManager.pre_save_hook=hipgen_utils.notebooks.strip_outputs_pre_save",
            "--ServerApp.allow_root=True",  # containers and CI often run as root
        ],
        env=env, stdout=log, stderr=subprocess.STDOUT, cwd=root,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=2)
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"JupyterLab did not start; log: {tmp / 'lab.log'}") from None
                time.sleep(0.5)
        yield url, token, root
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.fixture(scope="module")
def page(lab, tmp_path_factory):
    """Notebook 06 open in headless Chromium, after Run All from the menu."""
    url, token, _ = lab
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        pg = browser.new_page(viewport={"width": 1500, "height": 1000})
        pg.set_default_timeout(60_000)
        pg.goto(f"{url}/lab/tree/06_sample.ipynb?token={token}")
        pg.wait_for_selector(".jp-Notebook .jp-Cell")
        pg.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=120_000)
        _accept_kernel_dialog(pg, 20_000)
        pg.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
        pg.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Run All Cells$")).click()
        _accept_kernel_dialog(pg, 5_000)
        try:
            pg.wait_for_function(_ALL_RAN_JS, timeout=RUN_ALL_S * 1000, polling=1000)
        except sync_api.Error:
            shot = tmp_path_factory.mktemp("failed") / "run_all.png"
            pg.screenshot(path=str(shot), full_page=True)
            prompts = pg.locator(".jp-Notebook .jp-CodeCell .jp-InputPrompt").all_inner_texts()
            pytest.fail(f"Run All did not finish in {RUN_ALL_S} s; prompts {prompts}; screenshot {shot}")
        yield pg
        browser.close()


def _accept_kernel_dialog(pg, wait_ms: int) -> None:
    """JupyterLab may ask "Select Kernel" for the notebook: take its default, which must be
    this .venv's "Python 3 (ipykernel)" (the test's Jupyter sees no other kernel)."""
    try:
        pg.wait_for_selector(".jp-Dialog", timeout=wait_ms)
    except sync_api.Error:
        return
    dialog = pg.locator(".jp-Dialog")
    assert "Python 3 (ipykernel)" in dialog.inner_text(), dialog.inner_text()
    dialog.locator(".jp-mod-accept").click()
    pg.wait_for_selector(".jp-Dialog", state="detached")


# every code cell ran: a number in each prompt, none still "[*]"
_ALL_RAN_JS = """() => {
  const p = [...document.querySelectorAll('.jp-Notebook .jp-CodeCell .jp-InputPrompt')].map(e => e.textContent);
  return p.length > 0 && p.every(t => /\\[\\d+\\]/.test(t));
}"""


def _panel(page):
    """The sampler panel: the VBox holding the mode buttons and the Output widget."""
    return page.locator(".widget-vbox").filter(has=page.locator(".widget-toggle-buttons")).filter(
        has=page.locator(".widget-output")
    ).last


def _image(page) -> str:
    img = _panel(page).locator(".widget-output img")
    return img.get_attribute("src") if img.count() else ""


def check_no_error(page) -> None:
    """Fail when the panel shows a failed render or any cell shows a traceback."""
    panel_text = _panel(page).inner_text()
    assert "render failed" not in panel_text, panel_text
    errors = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']")
    for text in errors.all_inner_texts():
        assert "Traceback" not in text and "Error" not in text, text


def _drag(page, slider_name: str, dx: float) -> None:
    """Drag a slider's handle by dx pixels with the mouse (press, move, release)."""
    slider = _panel(page).locator(".widget-slider", has_text=slider_name)
    slider.scroll_into_view_if_needed()  # mouse events go to screen coordinates
    box = slider.locator(".noUi-handle").bounding_box()
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x + dx, y, steps=8)
    page.mouse.up()


def _changes_image(page, action) -> None:
    before = _image(page)
    action()
    page.wait_for_function(
        "([sel, before]) => { const i = document.querySelectorAll(sel); "
        "const last = i[i.length - 1]; return last && last.src !== before; }",
        arg=[".widget-vbox .widget-output img", before],
        timeout=RENDER_S * 1000,
    )
    check_no_error(page)


def test_run_all_then_sliders_and_completion_change_the_image(page):
    check_no_error(page)
    assert _image(page).startswith("data:image/png"), "the panel shows no image after Run All"
    # Run All leaves the panel in completion mode (the drive cell): back to samples first
    _changes_image(page, lambda: _panel(page).get_by_role("button", name="samples").click())
    _changes_image(page, lambda: _drag(page, "temperature", -60))
    _changes_image(page, lambda: _drag(page, "seed", 120))
    _changes_image(page, lambda: _panel(page).get_by_role("button", name="completion").click())
    assert "Completion of test image" in _panel(page).inner_text() or _image(page)


def test_the_check_fails_when_the_sampler_callback_raises(page):
    """Break the panel's decode from a new cell, move a slider: check_no_error must fail."""
    last = page.locator(".jp-Notebook .jp-Cell").last
    last.click()
    page.keyboard.press("Escape")
    page.keyboard.press("b")  # new cell below (command mode)
    page.keyboard.press("Enter")  # edit it
    page.keyboard.insert_text(
        "def _broken_decode(codes):\n    raise RuntimeError('injected decode failure')\n\n"
        "panel.decode = _broken_decode"
    )
    page.keyboard.press("Control+Enter")  # run in place (Shift+Enter would add an empty cell)
    page.wait_for_function(_ALL_RAN_JS, timeout=60_000, polling=500)
    _drag(page, "temperature", 40)
    page.wait_for_function(
        "() => [...document.querySelectorAll('.widget-vbox .widget-output')]"
        ".some(o => o.innerText.includes('render failed'))",
        timeout=RENDER_S * 1000,
    )
    with pytest.raises(AssertionError, match="injected decode failure"):
        check_no_error(page)
