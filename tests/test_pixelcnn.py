"""Gated PixelCNN: exact causality (no blind spot), shapes on non-square grids, conditioning."""

import math

import pytest
import torch
import torch.nn.functional as F

from hipgen_utils.config import PixelCNNConfig, get_profile
from hipgen_utils.pixelcnn import GatedPixelCNN, bits_per_code

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _model(seed=0, dtype=torch.float64, **kw):
    torch.manual_seed(seed)
    kw = {"n_codes": 5, "n_channels": 16, "n_layers": 2, "kernel_size": 3, **kw}
    return GatedPixelCNN(**kw).to(dtype).eval()


def _expected_dependence(H, W, r, c, R):
    """Positions that logits[r, c] must depend on: the receptive field before (r, c).

    Rows r-1 .. r-R at columns within R-1 either side (above-right included: no blind
    spot), and columns c-R .. c-1 of row r. Everything else (the position itself, later
    positions, earlier positions out of reach) must have exactly zero influence.
    """
    dep = torch.zeros(H, W, dtype=torch.bool)
    for rr in range(H):
        for cc in range(W):
            dr, dc = r - rr, cc - c
            dep[rr, cc] = (dr == 0 and 1 <= -dc <= R) or (1 <= dr <= R and abs(dc) <= R - 1)
    return dep


@pytest.mark.parametrize(
    "H, W, kernel_size, n_layers, n_conditions, positional",
    [(7, 5, 3, 2, 0, False), (5, 8, 3, 2, 3, False), (5, 8, 5, 1, 0, False), (7, 5, 5, 2, 0, False),
     (7, 5, 3, 2, 3, True)],  # fmt: skip
)
def test_causality_is_exact_and_has_no_blind_spot(H, W, kernel_size, n_layers, n_conditions, positional):
    m = _model(kernel_size=kernel_size, n_layers=n_layers, n_conditions=n_conditions, positional=positional)
    R = m.receptive_field()
    assert R == 1 + n_layers * (kernel_size // 2)
    g = torch.Generator().manual_seed(1)
    codes = torch.randint(0, m.n_codes, (2, H, W), generator=g)
    cond = m.check_cond(None if n_conditions == 0 else [1, 2], 2)
    x = m.embed(codes).detach().requires_grad_(True)  # (2, H, W, C)
    logits = m.forward_embedded(x, cond)
    assert logits.shape == (2, m.n_codes, H, W)
    proj = torch.randn(m.n_codes, generator=g, dtype=logits.dtype)  # avoid accidental cancellation
    raster = torch.arange(H * W).view(H, W)
    for r in range(H):
        for c in range(W):
            (grad,) = torch.autograd.grad(logits[0, :, r, c] @ proj, x, retain_graph=True)
            seen = grad[0].abs().sum(-1) != 0  # (H, W): positions of sample 0 that influence (r, c)
            assert not grad[1].any(), "samples in a batch must not influence each other"
            # the position itself and everything after it in raster order: exactly zero
            assert not seen[raster >= r * W + c].any(), f"({r},{c}) sees itself or a later position"
            # above-right: the blind spot of plain masked convolutions
            if r >= 1 and c + 1 < W:
                assert seen[r - 1, c + 1], f"({r},{c}) does not see above-right"
            # earlier positions: nonzero exactly on the receptive field
            expected = _expected_dependence(H, W, r, c, R)
            assert torch.equal(seen, expected), (
                f"({r},{c}): got {seen.int().tolist()}, expected {expected.int().tolist()}"
            )


@pytest.mark.parametrize("H, W", [(64, 32), (32, 64), (3, 7)])
def test_forward_shapes_non_square(H, W):
    m = _model(dtype=torch.float32, n_channels=8, n_codes=11)
    codes = torch.randint(0, 11, (2, H, W))
    logits = m(codes)
    assert logits.shape == (2, 11, H, W) and logits.dtype == torch.float32
    assert torch.isfinite(logits).all()
    loss = bits_per_code(logits, codes)
    assert loss.ndim == 0 and loss.item() > 0


def test_first_position_depends_only_on_condition():
    m = _model(n_conditions=4)
    a = torch.randint(0, 5, (1, 4, 6))
    b = torch.randint(0, 5, (1, 4, 6))
    la, lb = m(a, cond=2), m(b, cond=2)
    assert not torch.equal(a, b) and torch.equal(la[..., 0, 0], lb[..., 0, 0])
    assert not torch.equal(la[..., 0, 0], m(a, cond=1)[..., 0, 0])


def test_positional_biases_depend_on_position_not_codes():
    m = _model(positional=True)
    for layer in m.layers:  # make the positional biases matter
        torch.nn.init.normal_(layer.pos.weight, std=0.5)
    codes = torch.zeros(1, 12, 12, dtype=torch.long)  # the same code everywhere
    logits = m(codes)
    # identical inputs and receptive fields clear of the borders: only position can differ
    assert not torch.allclose(logits[0, :, 6, 5], logits[0, :, 7, 6])
    plain = _model(positional=False)(codes)
    assert torch.allclose(plain[0, :, 6, 5], plain[0, :, 7, 6])
    with pytest.raises(ValueError, match="needs the grid shape"):
        m.cond_biases(None)


def test_dropout_only_in_training():
    torch.manual_seed(0)
    m = GatedPixelCNN(5, n_channels=8, n_layers=2, kernel_size=3, dropout=0.5)
    codes = torch.randint(0, 5, (2, 4, 6))
    m.train()
    assert not torch.equal(m(codes), m(codes))
    m.eval()
    assert torch.equal(m(codes), m(codes))


def test_conditioning_changes_logits_and_accepts_int_or_tensor():
    m = _model(n_conditions=4)
    torch.nn.init.normal_(m.layers[0].cond.weight)  # make sure the bias is not tiny
    codes = torch.randint(0, 5, (2, 4, 6))
    l0, l3 = m(codes, cond=0), m(codes, cond=3)
    assert not torch.allclose(l0, l3)
    assert torch.equal(m(codes, cond=torch.tensor([0, 0])), l0)
    assert torch.equal(m(codes, cond=[0, 3])[1], l3[1])


def test_cond_errors_are_one_line_and_name_the_value():
    cond_model, plain = _model(n_conditions=4), _model()
    codes = torch.zeros(2, 3, 3, dtype=torch.long)
    cases = [
        (cond_model, None, "0..3"),
        (plain, 1, "unconditional"),
        (cond_model, 4, "cond=4"),
        (cond_model, [0, -1], "cond=-1"),
        (cond_model, [0, 1, 2], "2 ints"),
        (cond_model, 1.5, "integers"),
    ]
    for model, cond, needle in cases:
        with pytest.raises(ValueError, match=needle) as e:
            model(codes, cond=cond)
        assert "\n" not in str(e.value)
    with pytest.raises(ValueError, match="0..3"):
        cond_model(codes, cond=7)


def test_bad_codes_and_bad_hyperparameters():
    m = _model()
    with pytest.raises(ValueError, match="span 0..5"):
        m(torch.tensor([[[0, 5]]]))
    with pytest.raises(ValueError, match="integer codes"):
        m(torch.zeros(1, 2, 2))
    with pytest.raises(ValueError, match="integer codes"):
        m(torch.zeros(2, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="kernel_size=4"):
        GatedPixelCNN(8, kernel_size=4)
    with pytest.raises(ValueError, match="n_layers=0"):
        GatedPixelCNN(8, n_layers=0)
    with pytest.raises(ValueError, match="do not match"):
        bits_per_code(torch.zeros(1, 4, 2, 3), torch.zeros(1, 3, 2, dtype=torch.long))


def test_from_config():
    cfg = get_profile("ci").pixelcnn
    m = GatedPixelCNN.from_config(cfg, n_codes=32)
    assert (m.n_codes, m.n_channels, m.n_layers, m.kernel_size) == (
        32,
        cfg.n_channels,
        cfg.n_layers,
        cfg.kernel_size,
    )
    assert m.n_conditions == cfg.n_slices and cfg.conditional
    m = GatedPixelCNN.from_config(PixelCNNConfig(n_channels=8, n_layers=1, conditional=False), 16)
    assert m.n_conditions == 0 and m.layers[0].cond is None


def test_bits_per_code():
    K = 8
    codes = torch.randint(0, K, (3, 4, 5))
    assert bits_per_code(torch.zeros(3, K, 4, 5), codes).item() == pytest.approx(math.log2(K))
    logits = torch.randn(3, K, 4, 5)
    expected = F.cross_entropy(logits, codes).item() / math.log(2)
    assert bits_per_code(logits, codes).item() == pytest.approx(expected)


def test_learns_a_deterministic_pattern():
    # codes[r, c] = (r + 2c) mod K: predictable from the left neighbour, except at c == 0,
    # where it is predictable from the row above. A working prior drives bits/code far down.
    torch.manual_seed(0)
    K, H, W = 4, 4, 6
    m = GatedPixelCNN(K, n_channels=16, n_layers=2, kernel_size=3)
    r, c = torch.meshgrid(torch.arange(H), torch.arange(W), indexing="ij")
    codes = torch.stack([(r + 2 * c + s) % K for s in range(K)])  # 4 shifted copies
    opt = torch.optim.Adam(m.parameters(), lr=2e-2)
    start = bits_per_code(m(codes), codes).item()
    for _ in range(30):
        loss = bits_per_code(m(codes), codes)
        opt.zero_grad()
        loss.backward()
        opt.step()
    # only the very first position is unpredictable: (1/24) * 2 bits ~ 0.08 bits/code
    assert start > 1.5 and loss.item() < 0.2


@pytest.mark.parametrize("n_conditions", [0, 5])
def test_nll_matches_cross_entropy_of_forward(n_conditions):
    torch.manual_seed(0)
    m = GatedPixelCNN(16, n_channels=8, n_layers=2, kernel_size=3, n_conditions=n_conditions,
                      positional=True)  # fmt: skip
    codes = torch.randint(0, 16, (3, 6, 4))
    cond = torch.tensor([0, 4, 2]) if n_conditions else None
    ref = F.cross_entropy(m(codes, cond), codes, reduction="none")
    assert m.nll(codes, cond).item() == pytest.approx(ref.mean().item(), rel=1e-6)
    assert m.nll(codes, cond, reduction="sum").item() == pytest.approx(ref.sum().item(), rel=1e-6)
    with pytest.raises(ValueError, match="valid codes are 0..15"):
        m.nll(codes + 16, cond)
