"""The two-level prior (hipgen_utils.hierarchy + GatedPixelCNN(top_codes=...)): the top coder
is blockwise and learns, the total bits decompose into top + bottom-given-top, the bottom is
causal given the top, sampling is exact (fast == naive) with and without a completion
prefix, and training/checkpoints/resume handle the extra level."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from hipgen_utils.config import ConfigError, PixelCNNConfig
from hipgen_utils.hierarchy import TopCoder, train_top_coder
from hipgen_utils.pixelcnn import GatedPixelCNN
from hipgen_utils.sampling import keep_first, kept_lines, kept_mask, sample, sample_naive

K = 12


def _prior(**kw) -> GatedPixelCNN:
    torch.manual_seed(0)
    args = dict(n_channels=8, n_layers=3, kernel_size=3, n_conditions=4, positional=True,
                top_codes=6, top_factor=2, top_channels=8, top_layers=2)  # fmt: skip
    args.update(kw)
    return GatedPixelCNN(K, **args).eval()


def test_top_coder_is_blockwise_and_checks_the_factor():
    coder = TopCoder(K, 5, factor=2).eval()
    g = torch.Generator().manual_seed(0)
    codes = torch.randint(0, K, (4, 8, 6), generator=g)
    # a random latent map would quantise to few codes: spread the codebook over the data
    with torch.no_grad():
        flat = coder.latent(codes).permute(0, 2, 3, 1).reshape(-1, coder.quantizer.embedding_dim)
        coder.quantizer.embedding.copy_(flat[torch.randperm(len(flat), generator=g)[:5]])
    top = coder.encode(codes)
    assert top.shape == (4, 4, 3) and top.dtype == torch.long and len(top.unique()) > 1
    changed = codes.clone()
    changed[:, 2:4, 4:6] = (changed[:, 2:4, 4:6] + 1) % K  # one block: top (1, 2)
    new = coder.encode(changed)
    keep = torch.ones(4, 3, dtype=torch.bool)
    keep[1, 2] = False
    assert torch.equal(new[:, keep], top[:, keep]), "a top code may only depend on its own block"
    with pytest.raises(ValueError, match="top_factor=2 must divide the code grid 7x6"):
        coder.encode(torch.zeros(1, 7, 6, dtype=torch.long))


def test_top_coder_learns_block_layouts():
    # grids made of 2x2 blocks, each block one of 4 patterns: the coder must recover them
    g = np.random.default_rng(0)
    patterns = g.integers(0, K, size=(4, 2, 2))
    layout = g.integers(0, 4, size=(256, 4, 3))
    codes = patterns[layout].transpose(0, 1, 3, 2, 4).reshape(256, 8, 6)
    torch.manual_seed(0)
    coder = TopCoder(K, 8, factor=2, hidden=32, embed_dim=8)
    hist = train_top_coder(coder, codes, n_updates=150, batch_size=32, learning_rate=5e-3, progress=False)
    assert not coder.training and not any(p.requires_grad for p in coder.parameters())
    _, stats = coder.loss(torch.as_tensor(codes[:64]))
    assert stats["accuracy"] > 0.95, hist
    assert hist["accuracy"][0] < hist["accuracy"][-1]


@pytest.mark.parametrize("order", ["lr", "ap"])
def test_total_bits_are_top_plus_bottom_given_top(order):
    m = _prior(order=order)
    codes = torch.randint(0, K, (3, 8, 6), generator=torch.Generator().manual_seed(1))
    cond = torch.tensor([0, 3, 1])
    top = m.top_coder.encode(codes)
    bottom = F.cross_entropy(m(codes, cond), codes, reduction="sum")
    top_nats = m.top_prior.nll(top, cond, reduction="sum")
    total = m.nll(codes, cond, reduction="sum")
    assert total.item() == pytest.approx((bottom + top_nats).item(), rel=1e-5)
    assert m.nll(codes, cond).item() == pytest.approx(total.item() / codes.numel(), rel=1e-5)
    per = m.nll(codes, cond, reduction="none")
    assert per.shape == (codes.numel(),) and per.sum().item() == pytest.approx(total.item(), rel=1e-5)


@pytest.mark.parametrize("order", ["lr", "ap"])
def test_bottom_is_causal_given_the_top_and_the_top_matters(order):
    m = _prior(order=order)
    codes = torch.randint(0, K, (1, 8, 6), generator=torch.Generator().manual_seed(2))
    cond = m.check_cond([1], 1)
    top = m.top_coder.encode(codes)
    x = m.embed(codes).detach().requires_grad_(True)
    logits = m.forward_embedded(x, cond, top)
    idx = torch.arange(48).view(8, 6) if order == "lr" else torch.arange(48).view(6, 8).t()
    for r, c in [(0, 0), (3, 2), (7, 5)]:
        (grad,) = torch.autograd.grad(logits[0, :, r, c].sum(), x, retain_graph=True)
        seen = grad[0].abs().sum(-1) != 0
        assert not seen[idx >= idx[r, c]].any(), f"({r},{c}) sees itself or a later code"
    other = (top + 1) % m.top_codes
    assert not torch.allclose(m.forward_embedded(x, cond, other), logits), "the top codes must condition the bottom"
    with pytest.raises(ValueError, match="has a top level: pass its top codes"):
        m.forward_embedded(x, cond)
    with pytest.raises(ValueError, match="this prior has no top level"):
        _prior(top_codes=0).forward_embedded(x, cond, top)


@pytest.mark.parametrize("kw", [{}, {"order": "ap"}, {"v_dilation": 2, "attn_layers": 1}])
def test_fast_equals_naive_and_completion_keeps_the_prefix(kw):
    m = _prior(**kw)
    args = dict(seed=3, condition=[0, 3, 1], shape=(8, 6), temperature=1.3)
    fast = sample(m, 3, **args)
    assert torch.equal(fast, sample_naive(m, 3, **args))
    assert len(fast.unique()) > 3
    grid = torch.randint(0, K, (3, 8, 6), generator=torch.Generator().manual_seed(0))
    for fraction in (0.5, 0.4):  # whole top blocks kept, and a kept part ending inside a block
        prefix = keep_first(m, grid, fraction)
        done = sample(m, 3, prefix=prefix, **args)
        assert torch.equal(done, sample_naive(m, 3, prefix=prefix, **args))
        mask = torch.from_numpy(kept_mask(m, (8, 6), kept_lines(m, (8, 6), fraction)))
        assert torch.equal(done[:, mask], grid[:, mask]) and not torch.equal(done, grid)
    # lead lines at temperature 1: for the top grid too (a top line leads when its block starts
    # in the lead), the same in both samplers
    lead = dict(args, temperature=0.4, lead_lines=3)
    assert torch.equal(sample(m, 3, **lead), sample_naive(m, 3, **lead))


def test_completion_uses_the_kept_half_top_codes(monkeypatch):
    # the top grid handed to the bottom sampler starts with the kept half's own top codes
    import hipgen_utils.sampling as S

    m = _prior()
    grid = torch.randint(0, K, (2, 8, 6), generator=torch.Generator().manual_seed(4))
    seen = {}
    real = S._fast_rows

    def spy(prior, codes, u, cond, start, *a, top=None, **k):
        if top is not None:
            seen["top"] = top.clone()
        return real(prior, codes, u, cond, start, *a, top=top, **k)

    monkeypatch.setattr(S, "_fast_rows", spy)
    sample(m, 2, seed=0, condition=1, shape=(8, 6), prefix=keep_first(m, grid, 0.5))
    want = m.top_coder.encode(grid)[:, :2]
    assert torch.equal(seen["top"][:, :2], want)


def test_config_and_training(tmp_path):
    from hipgen_utils.run import load_prior
    from hipgen_utils.training import train_pixelcnn

    with pytest.raises(ConfigError, match="top_codes=1"):
        PixelCNNConfig(top_codes=1)
    g = np.random.default_rng(0)
    codes = {
        "codes_train": g.integers(0, K, (24, 8, 4)).astype(np.int16),
        "slice_train": g.integers(0, 3, 24),
        "codes_validate": g.integers(0, K, (4, 8, 4)).astype(np.int16),
        "slice_validate": g.integers(0, 3, 4),
    }
    cfg = PixelCNNConfig(n_channels=8, n_layers=2, kernel_size=3, batch_size=8, epochs=2, top_codes=4,
                         top_factor=2, top_channels=8, top_layers=2, top_updates=20, device="cpu")  # fmt: skip
    prior, hist = train_pixelcnn(cfg, codes, K, tmp_path, vqvae_id="v", progress=False)
    assert hist["top_coder_seconds"][0] > 0 and len(hist["val_bits"]) == 2
    coder_state = {k: v.clone() for k, v in prior.top_coder.state_dict().items()}
    loaded, _ = load_prior(tmp_path, vqvae_id="v")
    assert loaded.top_codes == 4 and torch.equal(loaded.top_coder.encode(torch.as_tensor(codes["codes_train"][:2]).long()),
                                                  prior.top_coder.encode(torch.as_tensor(codes["codes_train"][:2]).long()))  # fmt: skip
    # resuming a longer run keeps the trained coder (it is frozen with the checkpoint)
    prior2, hist2 = train_pixelcnn(
        PixelCNNConfig(**{**cfg.__dict__, "epochs": 3}), codes, K, tmp_path, vqvae_id="v", resume=True, progress=False
    )
    assert len(hist2["val_bits"]) == 3
    for k, v in prior2.top_coder.state_dict().items():
        assert torch.equal(v, coder_state[k]), f"the top coder changed on resume: {k}"
    bad = PixelCNNConfig(**{**cfg.__dict__, "top_factor": 3})
    with pytest.raises(ConfigError, match="top_factor=3 must divide the code grid 8x4"):
        train_pixelcnn(bad, codes, K, tmp_path / "other", vqvae_id="v", progress=False)
