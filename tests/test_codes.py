from types import SimpleNamespace

import numpy as np
import pytest
import torch

from hipgen_utils.checkpoints import CheckpointError, MissingStepError, state_fingerprint
from hipgen_utils.codes import (
    codes_are_current,
    decode_codes,
    extract_codes,
    load_codes,
    reconstruct_images,
)
from hipgen_utils.vqvae import VQVAE


def _split(n, seed):
    rng = np.random.default_rng(seed)
    return SimpleNamespace(
        images=rng.random((n, 32, 16), dtype=np.float32),
        case=np.full(n, 7), week=np.arange(n) % 2, slice=np.arange(n),
    )  # fmt: skip


def test_extract_and_load_codes_round_trip(tmp_path):
    torch.manual_seed(0)
    model = VQVAE(
        n_hiddens=8, n_residual_hiddens=4, n_residual_layers=1, embedding_dim=4, n_embeddings=16
    ).eval()
    splits = {"train": _split(5, 0), "test": _split(3, 1)}
    extract_codes(model, splits, tmp_path, progress=False)
    vid = state_fingerprint(model.state_dict())
    d = load_codes(tmp_path, vid)
    assert d["codes_train"].shape == (5, 8, 4) and d["codes_test"].shape == (3, 8, 4)
    assert d["n_embeddings"] == 16 and d["vqvae_id"] == vid
    assert np.array_equal(d["slice_train"], np.arange(5)) and np.array_equal(
        d["case_test"], [7, 7, 7]
    )
    # decoding the stored codes reproduces the reconstructions exactly
    assert np.array_equal(
        decode_codes(model, d["codes_test"]), reconstruct_images(model, splits["test"].images)
    )
    assert codes_are_current(tmp_path, vid) and not codes_are_current(tmp_path, "other")
    with pytest.raises(CheckpointError, match="another VQ-VAE"):
        load_codes(tmp_path, "other")


def test_missing_codes_names_the_notebook(tmp_path):
    with pytest.raises(MissingStepError, match="run notebooks/04_extract_codes"):
        load_codes(tmp_path)
