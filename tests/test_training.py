"""Training loops: determinism, resume, checkpoints, NaN handling, clear errors."""

from dataclasses import replace

import numpy as np
import pytest
import torch

from hipgen_utils import config as C
from hipgen_utils.checkpoints import CheckpointError, MissingStepError, load_checkpoint
from hipgen_utils.run import load_prior, load_vqvae
from hipgen_utils.training import (
    TrainingStopped,
    batch_indices,
    train_pixelcnn,
    train_vqvae,
)

torch.set_num_threads(1)


def _images(n=24, shape=(32, 16), seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    imgs = []
    for _ in range(n):
        cy, cx, r = rng.uniform(8, 24), rng.uniform(4, 12), rng.uniform(3, 7)
        imgs.append(
            ((yy - cy) ** 2 + (xx - cx) ** 2 < r**2).astype(np.float32) * rng.uniform(0.5, 1)
        )
    return np.stack(imgs)


def _vq_cfg(**kw):
    base = replace(
        C.get_profile("ci").vqvae,
        n_updates=6,
        log_interval=3,
        batch_size=4,
        val_images=4,
        crop=0,  # whole 32x16 images, whatever the ci profile's patch size
        device="cpu",
    )
    return replace(base, **kw)


def test_batch_indices_deterministic_and_cover_an_epoch():
    a = [batch_indices(20, 5, 0, t) for t in range(4)]
    b = [batch_indices(20, 5, 0, t) for t in range(4)]
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert sorted(np.concatenate(a).tolist()) == list(range(20))  # one epoch sees every image once
    assert not np.array_equal(batch_indices(20, 5, 1, 0), a[0])  # the seed matters


def test_vqvae_checkpoint_carries_config_and_loads_weights_only(tmp_path):
    imgs = _images()
    model, hist = train_vqvae(_vq_cfg(), imgs, imgs[:8], tmp_path, progress=False)
    ckpt = torch.load(tmp_path / "vqvae.pt", weights_only=True)
    assert ckpt["kind"] == "vqvae" and ckpt["step"] == 6 and ckpt["config"]["n_hiddens"] == 16
    assert hist["step"] == [3.0, 6.0] and len(hist["val_ssim"]) == 2
    assert all(np.isfinite(hist["train_total"])) and 0 < hist["codes_used"][-1] <= 32
    again, _ = load_vqvae(tmp_path)
    x = torch.from_numpy(imgs[:2, None])
    assert torch.equal(model.encode(x), again.encode(x))


def test_resume_after_an_interruption_matches_an_uninterrupted_run(tmp_path, monkeypatch):
    import hipgen_utils.training as T

    imgs = _images()
    full, _ = train_vqvae(_vq_cfg(crop=16), imgs, imgs[:8], tmp_path / "a", progress=False)

    real = T.batch_indices

    def crash_at_4(n, bs, seed, step):
        if step == 4:
            raise KeyboardInterrupt
        return real(n, bs, seed, step)

    monkeypatch.setattr(T, "batch_indices", crash_at_4)
    with pytest.raises(KeyboardInterrupt):
        train_vqvae(_vq_cfg(crop=16), imgs, imgs[:8], tmp_path / "b", progress=False)
    monkeypatch.setattr(T, "batch_indices", real)
    assert load_checkpoint(tmp_path / "b" / "vqvae.pt")["step"] == 3
    resumed, hist = train_vqvae(_vq_cfg(crop=16), imgs, imgs[:8], tmp_path / "b", resume=True, progress=False)
    assert hist["step"] == [3.0, 6.0]
    for (k, v), w in zip(full.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(v, w), k


def test_cosine_schedule_and_crops():
    from hipgen_utils.training import random_crops, scheduled_lr

    assert scheduled_lr(1e-3, "cosine", 0, 100) == 1e-3
    assert scheduled_lr(1e-3, "cosine", 50, 100) == pytest.approx(5e-4)
    assert scheduled_lr(1e-3, "cosine", 100, 100) == pytest.approx(0.0)
    assert scheduled_lr(1e-3, "constant", 99, 100) == 1e-3
    with pytest.raises(ValueError, match="lr_schedule='step'"):
        scheduled_lr(1e-3, "step", 0, 10)
    imgs = np.arange(3 * 32 * 16, dtype=np.float32).reshape(3, 32, 16)
    a = random_crops(imgs, np.array([0, 2]), 8, seed=0, step=5)
    assert a.shape == (2, 8, 8) and np.array_equal(a, random_crops(imgs, np.array([0, 2]), 8, seed=0, step=5))
    # each patch is a contiguous window of its own image, at an offset aligned to the code grid
    for patch, i in zip(a, (0, 2)):
        y, x = np.argwhere(imgs[i] == patch[0, 0])[0]
        assert y % 4 == 0 and x % 4 == 0 and np.array_equal(imgs[i, y : y + 8, x : x + 8], patch)
    with pytest.raises(ValueError, match="crop=6 must be a multiple of 4"):
        random_crops(imgs, np.array([0]), 6, seed=0, step=0)


def test_same_seed_same_model_different_seed_differs(tmp_path):
    imgs = _images()
    a, _ = train_vqvae(_vq_cfg(), imgs, imgs[:8], tmp_path / "a", progress=False)
    b, _ = train_vqvae(_vq_cfg(), imgs, imgs[:8], tmp_path / "b", progress=False)
    c, _ = train_vqvae(_vq_cfg(seed=1), imgs, imgs[:8], tmp_path / "c", progress=False)
    w = "encoder.0.weight" if "encoder.0.weight" in a.state_dict() else next(iter(a.state_dict()))
    assert torch.equal(a.state_dict()[w], b.state_dict()[w])
    assert not torch.equal(a.state_dict()[w], c.state_dict()[w])


def test_resume_with_other_architecture_is_one_line(tmp_path):
    imgs = _images()
    train_vqvae(_vq_cfg(n_updates=3), imgs, imgs[:8], tmp_path, progress=False)
    with pytest.raises(CheckpointError, match=r"n_hiddens: 16 -> 32"):
        train_vqvae(_vq_cfg(n_hiddens=32), imgs, imgs[:8], tmp_path, resume=True, progress=False)


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
    imgs = _images()
    train_vqvae(_vq_cfg(n_updates=2, log_interval=2), imgs, imgs[:8], tmp_path, progress=False)
    before = load_checkpoint(tmp_path / "vqvae.pt")
    bad = imgs.copy()
    bad[:] = np.nan
    with pytest.raises(
        TrainingStopped, match="non-finite loss at update 2.*kept the last good checkpoint"
    ):
        train_vqvae(_vq_cfg(), bad, imgs[:8], tmp_path, resume=True, progress=False)
    after = load_checkpoint(tmp_path / "vqvae.pt")
    assert after["step"] == before["step"] == 2


def test_missing_and_corrupt_checkpoints(tmp_path):
    with pytest.raises(MissingStepError, match="run notebooks/02_train_vqvae"):
        load_vqvae(tmp_path)
    (tmp_path / "vqvae.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable hipgen checkpoint"):
        load_vqvae(tmp_path)


def _codes(n=16, shape=(6, 4), k=8, seed=0):
    rng = np.random.default_rng(seed)
    # structured codes: a code per row position, so a prior can beat the unigram baseline
    base = np.tile((np.arange(shape[0]) % k)[:, None], (1, shape[1]))
    codes = np.where(rng.random((n, *shape)) < 0.9, base, rng.integers(0, k, (n, *shape)))
    slices = rng.integers(0, 4, n)
    return {
        "codes_train": codes.astype(np.int16), "slice_train": slices,
        "codes_validate": codes[:4].astype(np.int16), "slice_validate": slices[:4],
        "n_embeddings": k,
    }  # fmt: skip


def test_pixelcnn_trains_checkpoints_and_ties_to_its_vqvae(tmp_path):
    cfg = replace(
        C.get_profile("ci").pixelcnn,
        n_slices=4,
        n_updates=24,
        log_interval=4,
        batch_size=4,
        learning_rate=1e-2,
        device="cpu",
    )
    prior, hist = train_pixelcnn(cfg, _codes(), 8, tmp_path, vqvae_id="abc", progress=False)
    assert len(hist["val_bits"]) == 6 and hist["val_bits"][-1] < hist["val_bits"][0]
    loaded, ckpt = load_prior(tmp_path, vqvae_id="abc")
    assert ckpt["vqvae_id"] == "abc" and loaded.n_conditions == 4
    with pytest.raises(CheckpointError, match="another VQ-VAE's codes"):
        load_prior(tmp_path, vqvae_id="other")


def test_pixelcnn_conditions_come_from_the_data(tmp_path):
    # the data's slices are 0..3: the prior gets 4 conditions whatever n_slices said, the
    # checkpoint keeps them, and loading builds the same model
    cfg = replace(C.get_profile("ci").pixelcnn, n_slices=60, n_updates=4, batch_size=4, device="cpu")
    prior, _ = train_pixelcnn(cfg, _codes(), 8, tmp_path, vqvae_id="abc", progress=False)
    assert prior.n_conditions == 4 and cfg.n_slices == 60  # the caller's config is untouched
    loaded, ckpt = load_prior(tmp_path)
    assert loaded.n_conditions == 4 and ckpt["config"]["n_slices"] == 4


def test_pixelcnn_max_seconds_stops_training_and_records_it(tmp_path, monkeypatch):
    import hipgen_utils.training as T

    clock = iter(range(0, 10_000, 10))  # every perf_counter() call advances 10 "seconds"
    monkeypatch.setattr(T.time, "perf_counter", lambda: float(next(clock)))
    cfg = replace(C.get_profile("ci").pixelcnn, n_updates=200, log_interval=4, batch_size=4, device="cpu",
                  max_seconds=55.0)  # fmt: skip
    _, hist = train_pixelcnn(cfg, _codes(), 8, tmp_path, vqvae_id="abc", progress=False)
    done = int(hist["step"][-1])
    assert 1 <= done < 200 and hist["seconds"][-1] >= 55  # stopped on time, not on the update budget
    assert load_checkpoint(tmp_path / "pixelcnn.pt")["step"] == done  # and saved there


def test_pixelcnn_resume_after_an_interruption_matches_an_uninterrupted_run(tmp_path, monkeypatch):
    import hipgen_utils.training as T

    cfg = replace(C.get_profile("ci").pixelcnn, n_slices=4, n_updates=8, log_interval=4, batch_size=4, device="cpu")
    full, _ = train_pixelcnn(cfg, _codes(), 8, tmp_path / "a", vqvae_id="abc", progress=False)
    real = T.batch_indices

    def crash_at_5(n, bs, seed, step):
        if step == 5:  # a checkpoint every 4 updates: the first exists by now
            raise KeyboardInterrupt
        return real(n, bs, seed, step)

    monkeypatch.setattr(T, "batch_indices", crash_at_5)
    with pytest.raises(KeyboardInterrupt):
        train_pixelcnn(cfg, _codes(), 8, tmp_path / "b", vqvae_id="abc", progress=False)
    monkeypatch.setattr(T, "batch_indices", real)
    assert load_checkpoint(tmp_path / "b" / "pixelcnn.pt")["step"] == 4
    resumed, hist = train_pixelcnn(cfg, _codes(), 8, tmp_path / "b", vqvae_id="abc", resume=True, progress=False)
    assert hist["epoch"] == [1.0, 2.0]
    for (k, v), w in zip(full.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(v, w), k


def test_the_prior_budget_does_not_grow_with_the_data_set(tmp_path, capsys):
    """The same config on 16 grids and on 64 grids trains the same number of updates (the
    epochs follow), and says the budget, the epochs and the expected time before it ends."""
    import hipgen_utils.training as T

    cfg = replace(C.get_profile("ci").pixelcnn, n_slices=4, n_updates=12, log_interval=6, batch_size=4, device="cpu")
    steps = {}
    for n in (16, 64):
        _, hist = train_pixelcnn(cfg, _codes(n=n), 8, tmp_path / str(n), vqvae_id="abc", progress=True)
        steps[n] = hist["step"]
        out = capsys.readouterr().out
        assert f"12 updates of 4 grids ({12 / (n // 4):.3g} epochs of {n})" in out
    assert steps[16] == steps[64] == [6.0, 12.0]
    eta = T.EtaReport("PixelCNN", 0, 100, after=5)
    for done in range(1, 5):
        eta.update(done)
    assert capsys.readouterr().out == ""
    eta.update(5)
    eta.update(6)  # once only
    out = capsys.readouterr().out
    assert out.startswith("PixelCNN: 5 updates took ") and out.count("\n") == 1 and "for the 95 left" in out
    assert T.eta_line("PixelCNN", 20, 10.0, 2860) == "PixelCNN: 20 updates took 10.0 s (0.50 s each): about 24 min for the 2860 left"
    assert T.eta_line("VQ-VAE", 10, 5.0, 10_000, max_seconds=65.0).endswith("about 60 s for the 10000 left")


def test_the_prior_validates_on_at_most_val_grids_grids(tmp_path, monkeypatch):
    import hipgen_utils.training as T

    seen = []
    real = T.bits_per_code
    monkeypatch.setattr(T, "bits_per_code", lambda p, c, y, *a, **k: seen.append(len(c)) or real(p, c, y, *a, **k))
    cfg = replace(C.get_profile("ci").pixelcnn, n_slices=4, n_updates=4, log_interval=2, batch_size=4, device="cpu")
    train_pixelcnn(replace(cfg, val_grids=3), _codes(), 8, tmp_path / "a", vqvae_id="abc", progress=False)
    train_pixelcnn(cfg, _codes(), 8, tmp_path / "b", vqvae_id="abc", progress=False)  # 0: all 4
    assert seen == [3, 3, 4, 4]


def test_cpu_bf16_autocast_only_when_asked_and_native(monkeypatch):
    from hipgen_utils import devices

    def dtype_inside(**kw):
        with devices.autocast(torch.device("cpu"), **kw):
            return (torch.ones(2, 2) @ torch.ones(2, 2)).dtype

    monkeypatch.setattr(devices, "cpu_has_bf16", lambda: True)
    assert dtype_inside(cpu_bf16=True) == torch.bfloat16
    assert dtype_inside() == torch.float32  # evaluation and the VQ-VAE stay float32 on a CPU
    monkeypatch.setattr(devices, "cpu_has_bf16", lambda: False)
    assert dtype_inside(cpu_bf16=True) == torch.float32  # emulated bf16 would be slower
