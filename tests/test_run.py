"""The Run object: one way to open a run directory and what earlier steps wrote in it."""

import shutil

import numpy as np
import pytest
import torch

from hipgen_utils import config as C
from hipgen_utils import pipeline
from hipgen_utils.checkpoints import (
    PRIOR_FILE,
    CheckpointError,
    MissingStepError,
    atomic_save,
    load_checkpoint,
    state_fingerprint,
)
from hipgen_utils.run import Run


def test_open_resolves_profile_run_dir_and_figures_and_says_so(tmp_path, capsys):
    run = Run.open("ci", tmp_path / "r", data_dir=tmp_path / "data")
    out = capsys.readouterr().out
    assert run.cfg.profile == "ci" and run.dir == tmp_path / "r" and run.dir.is_dir()
    assert run.cfg.data.data_dir == str(tmp_path / "data") and run.data_dir == str(tmp_path / "data")
    assert run.figure("x") == run.dir / "figures" / "x.png"  # ci keeps its figures in the run
    assert "profile: ci" in out and str(tmp_path / "r") in out and str(tmp_path / "data") in out
    assert run.device == torch.device("cpu") or torch.cuda.is_available() or torch.backends.mps.is_available()


def test_at_refuses_a_missing_run_directory_in_one_line(tmp_path):
    with pytest.raises(MissingStepError, match=r"does not exist; train first \(hipgen train --mode vq_vae"):
        Run.at(tmp_path / "nothing")


def test_each_missing_step_names_the_notebook_to_run(tmp_path):
    run = Run.at(tmp_path, device="cpu")
    with pytest.raises(MissingStepError, match="02_train_vqvae"):
        run.vqvae()


def test_loads_once_and_ties_codes_and_prior_to_the_vqvae(trained):
    root, run_dir = trained
    run = Run.at(run_dir, device="cpu")
    vq = run.vqvae()
    assert run.vqvae() is vq and not vq.training
    assert run.vqvae_id == state_fingerprint(vq.state_dict())
    grids = run.codes()
    assert run.codes() is grids and str(grids["vqvae_id"]) == run.vqvae_id
    prior = run.prior()
    assert run.prior() is prior and not prior.training and run.has_prior()
    assert run.code_grid() == tuple(grids["codes_train"].shape[1:])


def test_data_config_is_the_vqvaes_and_data_dir_replaces_only_its_folder(trained, tmp_path):
    root, run_dir = trained
    saved = load_checkpoint(run_dir / "vqvae.pt", "vqvae")["extra"]["data"]
    data = Run.at(run_dir, device="cpu").data_config()
    assert isinstance(data, C.DataConfig) and data.data_dir == saved["data_dir"]
    assert (data.height, data.width, data.norm) == (saved["height"], saved["width"], saved["norm"])
    moved = Run.at(run_dir, data_dir=tmp_path / "elsewhere", device="cpu").data_config()
    assert moved.data_dir == str(tmp_path / "elsewhere")
    assert (moved.height, moved.width, moved.norm) == (data.height, data.width, data.norm)


def test_splits_come_from_the_trained_data(trained):
    root, run_dir = trained
    splits = Run.at(run_dir, device="cpu").splits("train", "test", progress=False)
    assert set(splits) == {"train", "test"} and len(splits["test"]) == 4


def test_a_prior_of_another_vqvae_is_refused(trained, tmp_path):
    _, run_dir = trained
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    ckpt = load_checkpoint(copy / PRIOR_FILE, "pixelcnn")
    atomic_save({**ckpt, "vqvae_id": "someone-else"}, copy / PRIOR_FILE)
    with pytest.raises(CheckpointError, match="another VQ-VAE's codes"):
        Run.at(copy, device="cpu").prior()


class _Prior:
    def __init__(self, n_conditions):
        self.n_conditions = n_conditions


@pytest.mark.parametrize("n, k", [(16, 60), (4, 12), (20, 12), (1, 60)])
def test_spread_slices_runs_from_the_lowest_to_the_highest_known_position(n, k):
    cond = pipeline.spread_slices(_Prior(k), n)
    assert cond.dtype == torch.int64 and cond.shape == (n,)
    assert cond.min() >= 0 and cond.max() <= k - 1 and bool((cond.diff() >= 0).all())
    if n > 1:
        assert cond[0] == 0 and cond[-1] == k - 1
    assert np.array_equal(cond.numpy(), np.linspace(0, k - 1, n).round().astype(int))  # notebook 06's rule
    assert pipeline.spread_slices(_Prior(0), n) is None


def test_samples_at_temperatures_equal_one_generate_call_each(trained_parts):
    prior, vq, grids, _, _ = trained_parts
    shape = grids["codes_train"].shape[1:]
    cond = pipeline.spread_slices(prior, 2)
    rows = pipeline.samples_at_temperatures(prior, vq, (1.0, 0.5), 2, seed=3, condition=cond, shape=shape)
    assert len(rows) == 2
    for t, images in zip((1.0, 0.5), rows):
        _, want = pipeline.generate(prior, vq, 2, temperature=t, seed=3, condition=cond, shape=shape)
        assert np.array_equal(images, want)
    assert not np.array_equal(rows[0], rows[1])  # the temperature is what differs
