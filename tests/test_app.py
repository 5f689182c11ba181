"""The sampler page `make app` serves (hipgen_utils.app), on the tiny trained run."""

import json
import shutil

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from hipgen_utils import app  # noqa: E402
from hipgen_utils import config as C  # noqa: E402
from hipgen_utils.checkpoints import load_checkpoint  # noqa: E402


@pytest.fixture(scope="module")
def page(trained):
    root, run_dir = trained
    return app.sampler_page(None, run_dir, data_dir=root, device="cpu"), run_dir


def test_the_page_is_one_line_about_the_run_and_the_panel_with_its_first_samples(page):
    page, run_dir = page
    line, panel_widget = page.children
    assert panel_widget is page.panel.widget
    text = line.value
    prior_steps = int(load_checkpoint(run_dir / "pixelcnn.pt")["step"])
    for part in ("profile ci", "data: ", f"prior {prior_steps:,} updates", "VQ-VAE ", "bits per code"):
        assert part in text, text
    assert "test SSIM not measured (notebook 03)" in text  # the CLI run has no ssim_test.json
    panel = page.panel
    assert panel.n_renders == 1 and panel.error is None  # one small grid, rendered once
    assert panel.last_images.shape[0] == app.FIRST_SAMPLES and np.isfinite(panel.last_images).all()
    assert panel.output.outputs and panel.output.outputs[0]["data"]["image/png"]


def test_the_panel_opens_at_the_sampling_settings_of_the_runs_profile(page, monkeypatch):
    page, _ = page
    S = C.get_profile("ci").sample
    panel = page.panel
    assert (panel.temperature.value, panel.top_k.value, panel.seed.value, panel.lead_lines) == (
        pytest.approx(S.temperature), S.top_k, S.seed, S.lead_lines)  # fmt: skip
    assert panel.mode.value == "samples"


def test_the_line_reports_measured_ssim_and_test_bits_when_the_notebooks_wrote_them(trained, tmp_path):
    root, run_dir = trained
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    (copy / "ssim_test.json").write_text(json.dumps({"ssim_mean": 0.8123}))
    (copy / "sample_quality.json").write_text(json.dumps({"pixelcnn_bits_per_code_test": 2.345}))
    from hipgen_utils.run import Run

    text = app.run_summary(Run.at(copy, data_dir=root, device="cpu"))
    assert "test SSIM 0.812" in text and "2.35 bits per code (test)" in text


@pytest.mark.parametrize(
    ("keep", "says"),
    [
        ((), r"has no VQ-VAE yet \(vqvae.pt\): run notebooks/02_train_vqvae"),
        (("vqvae.pt",), r"has no code grids yet \(codes.npz\): run notebooks/04_extract_codes"),
        (("vqvae.pt", "codes.npz"), r"has no prior yet \(pixelcnn.pt\): run notebooks/05_train_pixelcnn"),
    ],
)
def test_a_run_missing_a_step_gets_one_line_naming_what_to_run_first(trained, tmp_path, keep, says):
    _, run_dir = trained
    part = tmp_path / "part"
    part.mkdir()
    for name in keep:
        shutil.copy(run_dir / name, part / name)
    page = app.sampler_page(None, part, device="cpu")
    assert page.panel is None and len(page.children) == 1
    text = page.children[0].value
    assert 'class="hipgen-missing"' in text and "\n" not in text
    import re

    assert re.search(says, text), text


def test_make_app_refuses_a_run_it_cannot_show_in_one_line(tmp_path, capsys):
    assert app.main(["--run_dir", str(tmp_path / "nothing")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("make app: ") and "does not exist: run `make demo` first" in err and "\n" not in err


def test_voila_settings_shut_kernels_down_and_cull_the_idle_ones():
    c = app.voila_config(8999, cull_idle_s=30, cull_interval_s=5)
    assert c.Voila.tornado_settings["disable_check_xsrf"] is True  # the page's shutdown request
    assert c.MappingKernelManager.cull_idle_timeout == 30 and c.MappingKernelManager.cull_interval == 5
    assert c.MappingKernelManager.cull_connected is False  # an open page keeps its kernel
    assert c.Voila.ip == "127.0.0.1" and c.KernelManager.transport == "ipc"
