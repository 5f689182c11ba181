"""The notebooks as a student meets them: JupyterLab in headless Chromium, driven by Playwright.

`make browser-test` (also the last step of `make test`) serves copies of notebooks 01 and 06
with JupyterLab as `make lab` does (this .venv's kernel, the pre-save hook, `make lab`'s
JupyterLab defaults from hipgen_utils.notebooks.LAB_OVERRIDES; ci profile):

* notebook 01 opens unmodified (no unsaved-changes dot before anything ran) and no news
  pop-up covers the outputs;
* notebook 06 after Run All from the menu: the first thing done is a temperature drag, and
  it re-renders the panel (the panel is in completion mode, as the drive cell leaves it);
  then in samples mode a temperature drag and a seed drag re-render too, with real mouse
  events. The data loader's report is one plain output line, not a stderr warning box.
* the check fails when the sampler callback raises (a new cell breaks the panel's decode).

See conftest.py for Chromium and the run directory.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import sys
import urllib.request
from pathlib import Path

import pytest
from conftest import REPO, drag, free_port, serve

from hipgen_utils.notebooks import write_lab_overrides

PlaywrightError = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (dev extras)").Error

RENDER_S = 90  # one slider move re-renders in about a second; generous for a busy machine
RUN_ALL_S = int(os.environ.get("HIPGEN_BROWSER_RUN_ALL_S", 420))
NEWS = "official Jupyter news"


@pytest.fixture(scope="module")
def lab(run_dir, tmp_path_factory):
    """JupyterLab as `make lab` starts it, on copies of notebooks 01 and 06 (so nothing in
    notebooks/ is saved over) laid out as in the repository (jupytext.toml one folder up)."""
    tmp = tmp_path_factory.mktemp("lab")
    root = tmp / "notebooks"
    root.mkdir()
    shutil.copy(REPO / "jupytext.toml", tmp)
    for name in ("01_data_exploration", "06_sample"):
        for ext in (".py", ".ipynb"):
            shutil.copy(REPO / "notebooks" / f"{name}{ext}", root)
    # `make lab`'s defaults, in a settings folder of the test's own; the user's settings:
    # autosave off, so a copy is never written (and a dirty notebook not quietly saved)
    write_lab_overrides(tmp / "app-settings")
    user = tmp / "user-settings" / "@jupyterlab" / "docmanager-extension" / "plugin.jupyterlab-settings"
    user.parent.mkdir(parents=True)
    user.write_text(json.dumps({"autosave": False}))
    port, token = free_port(), secrets.token_hex(16)
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
    cmd = [
        sys.executable, "-m", "jupyterlab", "--no-browser", f"--port={port}", "--ServerApp.ip=127.0.0.1",
        f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
        f"--LabApp.app_settings_dir={tmp / 'app-settings'}", f"--LabApp.user_settings_dir={tmp / 'user-settings'}",
        f"--LabApp.workspaces_dir={tmp / 'workspaces'}",
        "--ContentsManager.pre_save_hook=hipgen_utils.notebooks.strip_outputs_pre_save",
        "--ServerApp.allow_root=True",  # containers and CI often run as root
    ]  # fmt: skip
    with serve(cmd, port, tmp / "lab.log", "JupyterLab", env=env, cwd=root):
        yield f"http://127.0.0.1:{port}", token, root


def _open(browser, lab, name: str):
    """`name` open in a new page, in a workspace of its own (so it is the only notebook)."""
    url, token, _ = lab
    pg = browser.new_page(viewport={"width": 1500, "height": 1000})
    pg.set_default_timeout(60_000)
    pg.goto(f"{url}/lab/workspaces/{name.split('_')[0]}/tree/{name}?token={token}")
    pg.wait_for_selector(".jp-Notebook .jp-Cell")
    pg.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=120_000)
    _accept_kernel_dialog(pg, 5_000)
    return pg


def _accept_kernel_dialog(pg, wait_ms: int) -> None:
    """JupyterLab may ask "Select Kernel" for the notebook: take its default, which must be
    this .venv's "Python 3 (ipykernel)" (the test's Jupyter sees no other kernel)."""
    try:
        pg.wait_for_selector(".jp-Dialog", timeout=wait_ms)
    except PlaywrightError:  # a timeout: no dialog
        return
    dialog = pg.locator(".jp-Dialog")
    assert "Python 3 (ipykernel)" in dialog.inner_text(), dialog.inner_text()
    dialog.locator(".jp-mod-accept").click()
    pg.wait_for_selector(".jp-Dialog", state="detached")


def test_notebook_01_opens_unmodified_and_without_the_news_pop_up(browser, lab):
    committed = json.loads((REPO / "notebooks" / "01_data_exploration.ipynb").read_text())
    python = committed["metadata"].get("language_info", {}).get("version")
    if python and python != sys.version.split()[0]:
        pytest.skip(f"the committed notebooks say Python {python}, this kernel is {sys.version.split()[0]}: "
                    "JupyterLab writes the kernel's version on open and marks them modified")  # fmt: skip
    pg = _open(browser, lab, "01_data_exploration.ipynb")
    try:
        pg.wait_for_timeout(3000)  # the kernel's info and spec have arrived and been applied
        tab = pg.locator(".lm-DockPanel-tabBar .lm-TabBar-tab", has_text="01_data_exploration.ipynb")
        assert "jp-mod-dirty" not in (tab.get_attribute("class") or ""), "notebook 01 shows unsaved changes on open"
        assert NEWS not in pg.locator("body").inner_text()
    finally:
        pg.close()
        _shut_down_kernels(lab, "01_data_exploration.ipynb")


def _shut_down_kernels(lab, name: str) -> None:
    """End the sessions (and kernels) of notebook `name` through the server's REST API."""
    url, token, _ = lab
    headers = {"Authorization": f"token {token}"}
    with urllib.request.urlopen(urllib.request.Request(f"{url}/api/sessions", headers=headers), timeout=10) as r:
        sessions = json.load(r)
    for sess in sessions:
        if sess.get("path", "").endswith(name):
            req = urllib.request.Request(f"{url}/api/sessions/{sess['id']}", method="DELETE", headers=headers)
            urllib.request.urlopen(req, timeout=30).close()


# every code cell ran: a number in each prompt, none still "[*]"
_ALL_RAN_JS = """() => {
  const p = [...document.querySelectorAll('.jp-Notebook .jp-CodeCell .jp-InputPrompt')].map(e => e.textContent);
  return p.length > 0 && p.every(t => /\\[\\d+\\]/.test(t));
}"""


@pytest.fixture(scope="module")
def page(browser, lab, tmp_path_factory):
    """Notebook 06 open in headless Chromium, after Run All from the menu."""
    pg = _open(browser, lab, "06_sample.ipynb")
    pg.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
    pg.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Run All Cells$")).click()
    _accept_kernel_dialog(pg, 5_000)
    try:
        pg.wait_for_function(_ALL_RAN_JS, timeout=RUN_ALL_S * 1000, polling=1000)
    except PlaywrightError:
        shot = tmp_path_factory.mktemp("failed") / "run_all.png"
        pg.screenshot(path=str(shot), full_page=True)
        prompts = pg.locator(".jp-Notebook .jp-CodeCell .jp-InputPrompt").all_inner_texts()
        pytest.fail(f"Run All did not finish in {RUN_ALL_S} s; prompts {prompts}; screenshot {shot}")
    yield pg
    pg.close()


def _panel(page):
    """The sampler panel: the VBox holding the mode buttons and the Output widget."""
    return page.locator(".widget-vbox").filter(has=page.locator(".widget-toggle-buttons")).filter(
        has=page.locator(".widget-output")
    ).last


def _image(page) -> str:
    img = _panel(page).locator(".widget-output img")
    return img.get_attribute("src") if img.count() else ""


def _slider(page, name: str):
    return _panel(page).locator(".widget-slider", has_text=name)


def check_no_error(page) -> None:
    """Fail when the panel shows a failed render or any cell shows a traceback."""
    panel_text = _panel(page).inner_text()
    assert "render failed" not in panel_text, panel_text
    errors = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']")
    for text in errors.all_inner_texts():
        assert "Traceback" not in text and "Error" not in text, text


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


def test_run_all_then_the_first_temperature_drag_renders_in_both_modes(page):
    check_no_error(page)
    assert _image(page).startswith("data:image/png"), "the panel shows no image after Run All"
    mode = _panel(page).locator(".widget-toggle-button.mod-active").text_content().strip()
    assert mode == "completion", mode  # where the drive cell leaves the panel
    # the first thing after Run All: a temperature drag, in completion mode
    _changes_image(page, lambda: drag(page, _slider(page, "temperature"), -40))
    _changes_image(page, lambda: _panel(page).get_by_role("button", name="samples").click())
    _changes_image(page, lambda: drag(page, _slider(page, "temperature"), 40))
    _changes_image(page, lambda: drag(page, _slider(page, "seed"), 120))
    assert NEWS not in page.locator("body").inner_text()


def test_the_loaders_report_is_one_plain_line_not_a_warning_box(page):
    stderr = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']")
    boxes = [t for t in stderr.all_inner_texts() if "keras_slices_" in t]
    assert not boxes, boxes
    stdout = "\n".join(page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stdout']").all_inner_texts())
    notes = [line for line in stdout.splitlines() if line.startswith("warning: keras_slices_")]
    assert notes and all(".py:" not in n for n in notes), stdout[-2000:]


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
    drag(page, _slider(page, "temperature"), 40)
    page.wait_for_function(
        "() => [...document.querySelectorAll('.widget-vbox .widget-output')]"
        ".some(o => o.innerText.includes('render failed'))",
        timeout=RENDER_S * 1000,
    )
    with pytest.raises(AssertionError, match="injected decode failure"):
        check_no_error(page)
