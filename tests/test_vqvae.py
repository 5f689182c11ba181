"""Tests for hipgen_utils.vqvae and hipgen_utils.quantizer: shapes, quantiser maths,
codebook updates, helpers."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from hipgen_utils.codes import codebook_usage, decode_codes, encode_images, reconstruct_images
from hipgen_utils.config import get_profile
from hipgen_utils.quantizer import VectorQuantizer
from hipgen_utils.vqvae import VQVAE

torch.set_num_threads(1)


def tiny(**kw) -> VQVAE:
    args = dict(
        n_hiddens=8, n_residual_hiddens=4, n_residual_layers=1, embedding_dim=4, n_embeddings=16
    )
    args.update(kw)
    return VQVAE(**args)


def latents(vectors: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """(h*w, D) channel-last vectors -> (1, D, h, w) NCHW latents (row-major positions)."""
    return vectors.reshape(1, h, w, -1).permute(0, 3, 1, 2).contiguous()


def set_codebook(vq: VectorQuantizer, e: torch.Tensor) -> None:
    with torch.no_grad():
        vq.embedding.copy_(e)
        if vq.codebook == "ema":
            vq.ema_cluster_size.fill_(1.0)
            vq.ema_embed_sum.copy_(e)
        vq.initialised.fill_(True)


# ---------------------------------------------------------------------------- shapes


@pytest.mark.parametrize("H,W", [(256, 128), (40, 24)])
def test_shapes_non_square(H, W):
    torch.manual_seed(0)
    model = tiny()
    x = torch.rand(2, 1, H, W)
    x_hat, vq = model(x)
    assert x_hat.shape == (2, 1, H, W) and x_hat.dtype == torch.float32
    assert vq.z_q.shape == (2, 4, H // 4, W // 4)
    assert vq.codes.shape == (2, H // 4, W // 4) and vq.codes.dtype == torch.int64
    assert vq.loss.ndim == 0 and vq.perplexity.ndim == 0 and vq.n_used.ndim == 0
    assert 1 <= int(vq.n_used) <= 16 and 1.0 <= float(vq.perplexity) <= int(vq.n_used) + 1e-4
    codes = model.encode(x)
    assert codes.shape == (2, H // 4, W // 4) and codes.dtype == torch.int64
    y = model.decode(codes)
    assert y.shape == (2, 1, H, W) and y.dtype == torch.float32
    assert float(y.detach().min()) >= 0.0 and float(y.detach().max()) <= 1.0


def test_from_config_uses_model_fields():
    cfg = get_profile("ci").vqvae
    model = VQVAE.from_config(cfg)
    q = model.quantizer
    assert (q.n_embeddings, q.embedding_dim) == (cfg.n_embeddings, cfg.embedding_dim)
    assert (q.codebook, q.decay, q.beta, q.dead_after) == (
        cfg.codebook,
        cfg.ema_decay,
        cfg.beta,
        cfg.dead_after,
    )
    assert model.encoder[2].out_channels == cfg.n_hiddens
    assert len(model.encoder[-1].layers) == cfg.n_residual_layers


def test_quantizer_still_importable_from_vqvae():
    from hipgen_utils import quantizer, vqvae

    assert vqvae.VectorQuantizer is VectorQuantizer and vqvae.VQOutput is quantizer.VQOutput


def test_bad_inputs_raise_one_line_errors():
    model = tiny()
    for bad in (torch.rand(2, 32, 16), torch.rand(2, 1, 30, 16), torch.rand(2, 3, 32, 16)):
        with pytest.raises(ValueError, match="divisible by 4"):
            model(bad)
    with pytest.raises(ValueError, match="outside"):
        model.decode(torch.full((1, 2, 2), 16))
    with pytest.raises(ValueError, match="integer"):
        model.decode(torch.zeros(1, 2, 2))
    with pytest.raises(ValueError, match="codebook"):
        VectorQuantizer(8, 2, codebook="adam")
    with pytest.raises(ValueError, match=r"\(N, H, W\)"):
        encode_images(model, np.zeros((2, 1, 8, 8), np.float32))


# ---------------------------------------------------------------------------- quantiser maths


def test_quantiser_is_channel_last_nearest_neighbour():
    # two positions that both hold (1, 0): flattening NCHW memory would instead quantise
    # the chunks (1, 1) and (0, 0), i.e. codes 2 and 3
    vq = VectorQuantizer(4, 2, data_init=False).eval()
    set_codebook(vq, torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [0.0, 0.0]]))
    z = latents(torch.tensor([[1.0, 0.0], [1.0, 0.0]]), 1, 2)
    out = vq(z)
    assert out.codes.tolist() == [[[0, 0]]]
    assert torch.equal(vq.quantize(z), out.codes)
    assert torch.allclose(out.z_q, z)


def test_quantiser_matches_brute_force():
    torch.manual_seed(1)
    vq = VectorQuantizer(7, 3, data_init=False).eval()
    e = torch.randn(7, 3)
    set_codebook(vq, e)
    z = torch.randn(2, 3, 3, 5)
    out = vq(z)
    for b in range(2):
        for i in range(3):
            for j in range(5):
                d = ((z[b, :, i, j][None] - e) ** 2).sum(1)
                k = int(d.argmin())
                assert int(out.codes[b, i, j]) == k
                assert torch.allclose(out.z_q[b, :, i, j], e[k], atol=1e-6)
    assert torch.equal(vq.lookup(out.codes), e[out.codes].permute(0, 3, 1, 2))


def test_straight_through_gradient():
    torch.manual_seed(0)
    vq = VectorQuantizer(5, 3, data_init=False, restart_dead=False)
    z = torch.randn(2, 3, 2, 4, requires_grad=True)
    g = torch.randn(2, 3, 2, 4)
    (vq(z).z_q * g).sum().backward()
    assert torch.allclose(z.grad, g)  # identity gradient through the quantiser

    # and through the whole model: the reconstruction loss alone reaches the first conv
    model = tiny()
    x = torch.rand(2, 1, 16, 8)
    x_hat, _ = model(x)
    F.mse_loss(x_hat, x).backward()
    grad = model.encoder[0].weight.grad
    assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0


def test_beta_on_encoder_side_analytic_gradients():
    torch.manual_seed(2)
    beta = 0.3
    vq = VectorQuantizer(4, 2, beta=beta, codebook="loss", data_init=False, restart_dead=False)
    e = torch.randn(4, 2)
    set_codebook(vq, e)
    h, w = 2, 3
    flat = torch.randn(h * w, 2)
    z = latents(flat, h, w).requires_grad_(True)
    out = vq(z)
    out.loss.backward()

    codes = out.codes.flatten()
    e_sel = e[codes]
    numel = flat.numel()
    expected_loss = beta * ((flat - e_sel) ** 2).mean() + ((flat - e_sel) ** 2).mean()
    assert torch.allclose(out.loss, expected_loss)
    # d/dz_e = 2 beta (z_e - e) / numel (the commitment term only)
    dz = latents(2 * beta * (flat - e_sel) / numel, h, w)
    assert torch.allclose(z.grad, dz, atol=1e-7)
    # d/de_k = sum over vectors assigned to k of 2 (e_k - z_e) / numel (no beta)
    de = torch.zeros(4, 2).index_add_(0, codes, 2 * (e_sel - flat) / numel)
    assert torch.allclose(vq.embedding.grad, de, atol=1e-7)


def test_ema_codebook_is_not_a_parameter():
    model = tiny(codebook="ema")
    assert all(p is not model.quantizer.embedding for p in model.parameters())
    model = tiny(codebook="loss")
    assert any(p is model.quantizer.embedding for p in model.parameters())


def test_ema_moves_used_codes_to_their_mean_and_leaves_unused():
    decay, eps = 0.9, 1e-5
    vq = VectorQuantizer(
        3, 2, codebook="ema", decay=decay, eps=eps, restart_dead=False, data_init=False
    )
    e0 = torch.tensor([[0.0, 0.0], [5.0, 5.0], [-5.0, 5.0]])
    set_codebook(vq, e0)
    flat = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [0.5, 0.0], [4.0, 4.0], [6.0, 5.0]])
    z = latents(flat, 2, 3)
    vq.train()
    out = vq(z)
    assert out.codes.flatten().tolist() == [0, 0, 0, 0, 1, 1]

    # the EMA step written out by hand
    counts = torch.tensor([4.0, 2.0, 0.0])
    sums = torch.stack([flat[:4].sum(0), flat[4:].sum(0), torch.zeros(2)])
    size = decay * 1.0 + (1 - decay) * counts
    total = decay * e0 + (1 - decay) * sums
    n = size.sum()
    smoothed = (size + eps) / (n + 3 * eps) * n
    assert torch.allclose(vq.embedding, total / smoothed[:, None], atol=1e-6)

    means = [flat[:4].mean(0), flat[4:].mean(0)]
    for k in (0, 1):
        assert (vq.embedding[k] - means[k]).norm() < (e0[k] - means[k]).norm()
    assert torch.allclose(vq.embedding[2], e0[2], rtol=1e-4)  # unused: (almost) unchanged

    # (few enough steps that the unused code's EMA size stays >> eps; by design it would
    # otherwise shrink towards the origin, which is what dead-code restarts are for)
    for _ in range(60):
        vq(z)
    for k in (0, 1):
        assert torch.allclose(vq.embedding[k], means[k], atol=1e-2)


@pytest.mark.parametrize("codebook", ["ema", "loss"])
def test_dead_codes_are_restarted_from_batch_vectors(codebook):
    torch.manual_seed(3)
    vq = VectorQuantizer(4, 2, codebook=codebook, dead_after=3, data_init=False)
    set_codebook(vq, torch.tensor([[0.0, 0.0], [5.0, 5.0], [50.0, 50.0], [-50.0, 50.0]]))
    flat = torch.cat([torch.randn(4, 2) * 0.5, 5 + torch.randn(4, 2) * 0.5])
    z = latents(flat, 2, 4)
    vq.train()
    for step in (1, 2):
        out = vq(z)
        assert int(out.n_used) == 2
        assert vq.unused_steps.tolist() == [0, 0, step, step]
        assert int(vq.n_restarts) == 0
        assert vq.embedding[2, 0] > 40 and vq.embedding[3, 0] < -40

    vq(z)  # third update without codes 2 and 3: both are re-seeded
    assert int(vq.n_restarts) == 2
    assert vq.unused_steps.tolist() == [0, 0, 0, 0]
    for k in (2, 3):
        assert (vq.embedding[k] == flat).all(1).any(), f"code {k} is not a batch vector"
        if codebook == "ema":
            assert float(vq.ema_cluster_size[k]) == 1.0
            assert torch.equal(vq.ema_embed_sum[k], vq.embedding[k])
    assert not torch.equal(vq.embedding[2], vq.embedding[3])

    out = vq(z)  # restarted codes are now used, not pulled back
    assert int(out.n_used) == 4


def test_eval_mode_changes_nothing():
    torch.manual_seed(0)
    model = tiny(dead_after=1).eval()  # data_init pending, restarts would fire at once
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        model(torch.rand(2, 1, 16, 8))
        model.reconstruct(torch.rand(2, 1, 16, 8))
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert not bool(model.quantizer.initialised)

    model.train()
    model(torch.rand(2, 1, 16, 8))  # the first training forward initialises from the data
    assert bool(model.quantizer.initialised)


def test_data_init_takes_codes_from_encoder_outputs_and_survives_state_dict():
    torch.manual_seed(0)
    model = tiny(n_embeddings=8)
    x = torch.rand(2, 1, 16, 8)
    with torch.no_grad():
        flat = model.pre_quantization(model.encoder(x)).permute(0, 2, 3, 1).reshape(-1, 4)
    model.train()
    model.quantizer.restart_dead = False
    model.quantizer.decay = 0.0  # so the codebook after one step is exactly the batch means
    model(x)
    # every code was initialised from a batch vector; the EMA step then moved used ones to
    # the mean of their vectors, so each code is a mean of batch vectors (inside their hull)
    lo, hi = flat.min(0).values, flat.max(0).values
    emb = model.quantizer.embedding
    assert ((emb >= lo - 1e-5) & (emb <= hi + 1e-5)).all()

    clone = tiny(n_embeddings=8)
    clone.load_state_dict(model.state_dict())
    assert bool(clone.quantizer.initialised)
    assert torch.equal(clone.encode(x), model.encode(x))


# ---------------------------------------------------------------------------- behaviour


def test_autocast_bfloat16_forward():
    torch.manual_seed(0)
    model = tiny()
    x = torch.rand(2, 1, 16, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        x_hat, vq = model(x)
    assert vq.codes.dtype == torch.int64
    assert vq.loss.dtype == torch.float32 and torch.isfinite(vq.loss)
    assert model.quantizer.embedding.dtype == torch.float32
    (F.mse_loss(x_hat.float(), x) + vq.loss).backward()
    assert torch.isfinite(model.encoder[0].weight.grad).all()


def _train_run(seed: int, steps: int = 3):
    torch.manual_seed(seed)
    model = tiny(dead_after=2)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = torch.rand(3, 1, 16, 8)
    for _ in range(steps):
        x_hat, vq = model(x)
        loss = F.mse_loss(x_hat, x) + vq.loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.state_dict(), vq.codes


def test_deterministic_given_seed():
    sd_a, codes_a = _train_run(0)
    sd_b, codes_b = _train_run(0)
    assert int(sd_a["quantizer.n_restarts"]) > 0  # the random restart path was exercised
    assert torch.equal(codes_a, codes_b)
    assert all(torch.equal(sd_a[k], sd_b[k]) for k in sd_a)
    sd_c, _ = _train_run(1)
    assert not torch.equal(sd_a["quantizer.embedding"], sd_c["quantizer.embedding"])


@pytest.mark.parametrize("codebook", ["ema", "loss"])
def test_loss_decreases(codebook):
    torch.manual_seed(0)
    model = tiny(n_hiddens=16, n_residual_hiddens=8, embedding_dim=8, codebook=codebook)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, 32), torch.linspace(-1, 1, 16), indexing="ij")
    x = torch.stack(
        [torch.exp(-((yy - c) ** 2 + xx**2) / 0.2) for c in (-0.5, 0.0, 0.3, 0.6)]
    ).unsqueeze(1)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    recons = []
    for _ in range(30):
        x_hat, vq = model(x)
        recon = F.mse_loss(x_hat, x)
        loss = recon + vq.loss
        assert math.isfinite(loss.item())
        opt.zero_grad()
        loss.backward()
        opt.step()
        recons.append(recon.item())
    # the reconstruction term (the VQ term may grow while the latents change scale)
    assert np.mean(recons[-5:]) < 0.5 * np.mean(recons[:3])


# ---------------------------------------------------------------------------- numpy helpers


def test_encode_decode_equals_reconstruct(tmp_path):
    torch.manual_seed(0)
    model = tiny()
    model.train()
    model(torch.rand(4, 1, 16, 8))  # data init so the codes are varied
    mm = np.memmap(tmp_path / "imgs.dat", dtype=np.float32, mode="w+", shape=(5, 16, 8))
    mm[:] = np.random.default_rng(0).random((5, 16, 8), dtype=np.float32)
    mm.flush()

    codes = encode_images(model, mm, batch_size=2, progress=False)
    assert codes.shape == (5, 4, 2) and codes.dtype == np.int16
    assert codes.min() >= 0 and codes.max() < 16
    rec = reconstruct_images(model, mm, batch_size=2)
    dec = decode_codes(model, codes, batch_size=2, device="cpu")
    assert rec.shape == dec.shape == (5, 16, 8) and rec.dtype == dec.dtype == np.float32
    assert np.array_equal(dec, rec)
    assert rec.min() >= 0.0 and rec.max() <= 1.0
    assert model.training  # train mode restored
    with pytest.raises(ValueError, match="outside"):
        decode_codes(model, np.full((1, 4, 2), 99, np.int16))


def test_codebook_usage_known_histogram():
    codes = np.array([[[0, 0, 1, 1], [3, 3, 3, 3]]], dtype=np.int16)
    u = codebook_usage(codes, 5)
    assert u["counts"].tolist() == [2, 2, 0, 4, 0]
    assert u["codes_used"] == 3
    assert u["perplexity"] == pytest.approx(2**1.5)  # entropy 1.5 bits
    assert codebook_usage(np.arange(8), 8)["perplexity"] == pytest.approx(8.0)
    assert codebook_usage(np.zeros(10, np.int64), 8)["perplexity"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="outside"):
        codebook_usage(np.array([0, 8]), 8)
    with pytest.raises(ValueError, match="integers"):
        codebook_usage(np.array([0.5]), 8)
