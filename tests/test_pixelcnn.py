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


# ---- switches for global context: attention, sampling order, vertical dilation -------------


def _sampling_index(order, H, W):
    """(H, W) image-layout grid of each position's index in the sampling order."""
    idx = torch.arange(H * W)
    return idx.view(H, W) if order == "lr" else idx.view(W, H).t()


@pytest.mark.parametrize(
    "H, W, kw",
    [
        (6, 5, {"attn_layers": 1}),
        (6, 5, {"attn_layers": 2, "attn_heads": 2, "attn_dim": 8}),
        (5, 6, {"order": "ap"}),
        (6, 5, {"order": "ap", "positional": True, "n_conditions": 3}),
        (11, 4, {"v_dilation": 4, "n_layers": 3}),
        (4, 11, {"v_dilation": 4, "n_layers": 3, "order": "ap"}),
        (6, 5, {"order": "ap", "v_dilation": 2, "attn_layers": 1, "positional": True}),
        (7, 4, {"v_dilation": 2, "attn_layers": 2, "n_conditions": 3, "kernel_size": 5}),
    ],
)
def test_switches_keep_causality_exact(H, W, kw):
    """No position sees itself or anything after it in sampling order; attention sees every
    earlier position (but one); "ap" is the plain model on the transposed grid; dilation reaches
    receptive_field() rows up (in sampling order), contiguously, and no further."""
    m = _model(**{"n_layers": 3, **kw})
    for block in m.attn:  # make the attention's output and position terms matter
        torch.nn.init.normal_(block.out.weight, std=0.5)
        torch.nn.init.normal_(block.pos.weight, std=0.5)
    order = kw.get("order", "lr")
    g = torch.Generator().manual_seed(1)
    codes = torch.randint(0, m.n_codes, (2, H, W), generator=g)
    cond = m.check_cond(None if not kw.get("n_conditions") else [1, 2], 2)
    x = m.embed(codes).detach().requires_grad_(True)
    logits = m.forward_embedded(x, cond)
    assert logits.shape == (2, m.n_codes, H, W)
    proj = torch.randn(m.n_codes, generator=g, dtype=logits.dtype)
    index = _sampling_index(order, H, W)
    R = m.receptive_field()
    for r in range(H):
        for c in range(W):
            (grad,) = torch.autograd.grad(logits[0, :, r, c] @ proj, x, retain_graph=True)
            seen = grad[0].abs().sum(-1) != 0
            assert not grad[1].any(), "samples in a batch must not influence each other"
            p = int(index[r, c])
            assert not seen[index >= p].any(), f"({r},{c}) sees itself or a later position"
            si = m.to_internal(seen[None])[0]  # internal layout: rows in sampling order
            ri, ci = (c, r) if order == "ap" else (r, c)
            if m.attn_layers:
                # every earlier code, except the previous line's last one when it lies beyond
                # the convolutions' reach: no h before (r, c) carries it yet (see AttentionBlock)
                expected = m.to_internal((index < p)[None])[0].clone()
                Wi = si.shape[1]
                if ri >= 1 and Wi - 1 - ci > m.n_layers * (m.kernel_size // 2):
                    expected[ri - 1, Wi - 1] = False
                assert torch.equal(si, expected), f"({r},{c}): got {si.int().tolist()}"
                continue
            if m.v_dilation == 1:
                expected = _expected_dependence(*si.shape, ri, ci, R)
                assert torch.equal(si, expected), f"({r},{c}): got {si.int().tolist()}"
            else:
                rows = si.any(1).nonzero().flatten().tolist()
                want = list(range(max(0, ri - R), ri + (ci > 0)))
                assert rows == want, f"({r},{c}): rows seen {rows}, expected {want}"
                assert si[max(0, ri - R) : ri, ci].all(), "dilated reach must be contiguous above"


def test_receptive_field_with_dilation_and_attention_placement():
    m = GatedPixelCNN(8, n_channels=8, n_layers=8, kernel_size=5, v_dilation=8, attn_layers=2)
    assert [layer.dilation for layer in m.layers] == [1, 2, 4, 8, 1, 2, 4, 8]
    assert m.receptive_field() == 1 + 2 * 30  # the demo prior's 64-row grid is (almost) covered
    assert m.attn_after == {3: 0, 7: 1}  # spread evenly, the last after the last gated layer
    assert GatedPixelCNN(8, n_layers=8, attn_layers=1).attn_after == {7: 0}
    assert GatedPixelCNN(8, n_channels=8, n_layers=8, kernel_size=5).receptive_field() == 17


@pytest.mark.parametrize(
    "kw", [{"order": "ap"}, {"attn_layers": 1, "positional": True}, {"order": "ap", "v_dilation": 2}]
)
def test_nll_matches_forward_with_switches(kw):
    torch.manual_seed(0)
    m = GatedPixelCNN(16, n_channels=8, n_layers=2, kernel_size=3, n_conditions=5, **kw)
    codes = torch.randint(0, 16, (3, 6, 4))
    cond = torch.tensor([0, 4, 2])
    ref = F.cross_entropy(m(codes, cond), codes, reduction="none")
    assert m.nll(codes, cond).item() == pytest.approx(ref.mean().item(), rel=1e-6)
    # per code, flat in image-layout raster order whatever the sampling order
    assert torch.allclose(m.nll(codes, cond, reduction="none"), ref.reshape(-1), rtol=1e-5, atol=1e-6)


def test_ap_order_is_the_lr_model_on_the_transposed_grid():
    torch.manual_seed(0)
    ap = GatedPixelCNN(9, n_channels=8, n_layers=2, kernel_size=3, positional=True, order="ap")
    lr = GatedPixelCNN(9, n_channels=8, n_layers=2, kernel_size=3, positional=True)
    lr.load_state_dict(ap.state_dict())
    codes = torch.randint(0, 9, (2, 6, 4))
    assert torch.allclose(ap(codes), lr(codes.transpose(1, 2)).transpose(2, 3))
    assert ap.internal_shape((64, 32)) == (32, 64) and lr.internal_shape((64, 32)) == (64, 32)


@pytest.mark.parametrize("pool", [1, 2])
def test_attention_trains_under_cpu_autocast(pool):
    torch.manual_seed(0)
    m = GatedPixelCNN(16, n_channels=8, n_layers=2, kernel_size=3, attn_layers=1, v_dilation=2, attn_pool=pool)
    codes = torch.randint(0, 16, (2, 8, 4))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = m.nll(codes)
    loss.backward()
    assert torch.isfinite(loss) and m.attn[0].qkv.weight.grad is not None


@pytest.mark.parametrize("n_channels", [24, 32])
def test_dilated_layers_have_finite_gradients_under_cpu_bf16(n_channels):
    # torch 2.14's CPU bf16 convolution gave NaN weight gradients for a dilated vertical
    # step on channels-last input at 24 channels (the ci profile's codes, batch 8, 64x32
    # grids): the first update of `train --n_channels 24` stopped with "non-finite loss"
    torch.manual_seed(0)
    m = GatedPixelCNN(32, n_channels=n_channels, n_layers=3, kernel_size=3, n_conditions=12, positional=True,
                      v_dilation=4, mirror=True)  # fmt: skip
    codes, cond = torch.randint(0, 32, (8, 64, 32)), torch.randint(0, 12, (8,))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = m.nll(codes, cond)
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in m.parameters() if p.grad is not None)


def test_bad_switch_values():
    for kw, needle in (
        ({"order": "rl"}, "order='rl'"),
        ({"v_dilation": 3}, "power of 2"),
        ({"v_dilation": 0}, "v_dilation=0"),
        ({"attn_layers": 3, "n_layers": 2}, "attn_layers=3"),
        ({"attn_layers": 1, "attn_dim": 10, "attn_heads": 4}, "attn_dim=10"),
    ):
        with pytest.raises(ValueError, match=needle):
            GatedPixelCNN(8, **{"n_layers": 2, **kw})


def test_old_configs_and_checkpoints_load_as_todays_model():
    """A checkpoint config written before the switches existed builds today's model: the same
    parameters (the weights load strictly), order "lr", no dilation, no attention."""
    from dataclasses import asdict

    from hipgen_utils.config import from_dict

    cfg = get_profile("ci").pixelcnn
    new = {"order", "v_dilation", "attn_layers", "attn_heads", "attn_dim", "attn_pool", "max_seconds", "mirror", "tables"}
    old = {k: v for k, v in asdict(cfg).items() if k not in new}
    loaded = from_dict(PixelCNNConfig, old)
    assert (loaded.order, loaded.v_dilation, loaded.attn_layers, loaded.max_seconds) == ("lr", 1, 0, 0.0)
    assert loaded.mirror is False and loaded.tables is False
    torch.manual_seed(0)
    before = GatedPixelCNN(32, n_channels=cfg.n_channels, n_layers=cfg.n_layers, kernel_size=cfg.kernel_size,
                           n_conditions=cfg.n_slices, positional=cfg.positional)  # fmt: skip
    m = GatedPixelCNN.from_config(loaded, 32)
    m.load_state_dict(before.state_dict())  # strict: no new parameters
    assert m.order == "lr" and m.attn_layers == 0 and not m.mirror and m.tables is None
    assert m.receptive_field() == before.receptive_field()
    codes = torch.randint(0, 32, (2, 5, 4))
    assert torch.equal(m(codes, 1), before(codes, 1))


@pytest.mark.parametrize("order", ["lr", "ap"])
def test_pooled_attention_is_causal_and_reaches_past_the_convolutions(order):
    H, W = (8, 4) if order == "lr" else (4, 8)
    m = _model(n_layers=3, attn_layers=1, attn_pool=2, order=order, positional=True)
    torch.nn.init.normal_(m.attn[0].out.weight, std=0.5)
    torch.nn.init.normal_(m.attn[0].pos.weight, std=0.5)
    codes = torch.randint(0, m.n_codes, (1, H, W), generator=torch.Generator().manual_seed(1))
    x = m.embed(codes).detach().requires_grad_(True)
    logits = m.forward_embedded(x)
    index = _sampling_index(order, H, W)
    for r in range(H):
        for c in range(W):
            (grad,) = torch.autograd.grad(logits[0, :, r, c].sum(), x, retain_graph=True)
            seen = grad[0].abs().sum(-1) != 0
            assert not seen[index >= index[r, c]].any(), f"({r},{c}) sees itself or a later position"
    # the last line's first position: the first code is 7 lines up, beyond the convolutions'
    # 4 rows; only the completed 2x2 blocks' means carry it
    first = (H - 1, 0) if order == "lr" else (0, W - 1)
    (grad,) = torch.autograd.grad(logits[0, :, first[0], first[1]].sum(), x)
    assert grad[0, 0, 0].abs().sum() > 0
    assert m.receptive_field() == 4
    with pytest.raises(ValueError, match="pool=2 needs grid sides that divide by 2"):
        m(torch.zeros(1, 5, 4, dtype=torch.long))


def test_pooled_attention_slots():
    from hipgen_utils.pixelcnn import AttentionBlock

    slot, count = AttentionBlock(4, 4, 1, 24, pool=2).slots(4, 4)
    # blocks in raster order (slot 1..4, slot 0 = null); a block is attended once complete
    assert slot.view(4, 4).tolist() == [[1, 1, 2, 2], [1, 1, 2, 2], [3, 3, 4, 4], [3, 3, 4, 4]]
    assert count.view(4, 4).tolist() == [[1, 1, 1, 1], [1, 2, 2, 3], [3, 3, 3, 3], [3, 4, 4, 5]]
    slot, count = AttentionBlock(4, 4, 1, 24).slots(2, 3)
    assert slot.tolist() == list(range(6)) and count.tolist() == list(range(1, 7))


@pytest.mark.parametrize("H, W, kw", [(8, 3, {}), (9, 4, {"v_dilation": 2, "n_conditions": 3, "positional": True})])
def test_mirror_context_is_causal_and_reaches_the_mirror_rows(H, W, kw):
    """With mirror context the second half of the rows sees the first half's codes around its
    mirror position directly (even beyond the convolutions' reach), and still nothing at or
    after itself; the first half is the plain model."""
    m = _model(n_layers=1, mirror=True, **kw)
    for layer in m.layers:  # make the mirror biases matter
        torch.nn.init.normal_(layer.mirror.weight, std=0.5)
    g = torch.Generator().manual_seed(1)
    codes = torch.randint(0, m.n_codes, (2, H, W), generator=g)
    cond = m.check_cond(None if not kw.get("n_conditions") else [1, 2], 2)
    x = m.embed(codes).detach().requires_grad_(True)
    logits = m.forward_embedded(x, cond)
    proj = torch.randn(m.n_codes, generator=g, dtype=logits.dtype)
    index = _sampling_index("lr", H, W)
    first = (H + 1) // 2
    for r in range(H):
        for c in range(W):
            (grad,) = torch.autograd.grad(logits[0, :, r, c] @ proj, x, retain_graph=True)
            seen = grad[0].abs().sum(-1) != 0
            assert not grad[1].any(), "samples in a batch must not influence each other"
            assert not seen[index >= index[r, c]].any(), f"({r},{c}) sees itself or a later position"
            mirror_row = H - 1 - r
            if r >= first:
                near = seen[mirror_row, max(0, c - 1) : c + 2]  # the mirror kernel's 3 columns
                assert near.all(), f"({r},{c}) must see its mirror row {mirror_row} at columns c-1..c+1"
            elif m.v_dilation == 1:  # the first half: exactly the plain model's receptive field
                expected = _expected_dependence(H, W, r, c, m.receptive_field())
                assert torch.equal(seen, expected), f"({r},{c}): got {seen.int().tolist()}"
    with pytest.raises(ValueError, match="mirror=True needs order='lr'"):
        GatedPixelCNN(8, n_layers=2, mirror=True, order="ap")


def test_mirror_switch_from_config_and_checkpoint_without_it():
    cfg = PixelCNNConfig(n_channels=8, n_layers=2, kernel_size=3, mirror=True)
    m = GatedPixelCNN.from_config(cfg, 16)
    assert m.mirror and m.mirror_cond is not None and all(layer.mirror is not None for layer in m.layers)
    plain = GatedPixelCNN.from_config(PixelCNNConfig(n_channels=8, n_layers=2, kernel_size=3), 16)
    assert not plain.mirror and plain.mirror_map(torch.zeros(1, 4, 4, 8)) is None
    with pytest.raises(ValueError, match="no mirror context"):
        plain.cond_biases(None, (4, 4), None, torch.zeros(1, 4, 4, 8))
    from hipgen_utils.config import ConfigError

    with pytest.raises(ConfigError, match="mirror=True needs order='lr'"):
        PixelCNNConfig(mirror=True, order="ap")


@pytest.mark.parametrize("H, W, mirror", [(6, 4, False), (7, 3, True), (8, 4, True)])
def test_code_tables_read_exactly_the_neighbours_codes(H, W, mirror):
    """tables=True adds logit terms looked up from the codes to the left, above, above-left
    and above-right and (mirror context) at (H-1-r+d, c), d = -1..1, in the second half where
    that row is in the first half. With the convolutions' output zeroed, changing one code
    must move exactly those positions' logits -- never its own or an earlier one's -- and
    the sampler's row-by-row lookup (`table_row`) must add up to the same terms."""
    m = _model(n_layers=1, mirror=mirror, tables=True)
    torch.nn.init.normal_(m.tables.weight)
    torch.nn.init.zeros_(m.out2.weight), torch.nn.init.zeros_(m.out2.bias)  # tables alone
    g = torch.Generator().manual_seed(0)
    codes = torch.randint(0, m.n_codes, (1, H, W), generator=g)
    base = m(codes)
    first = (H + 1) // 2
    for r in range(H):
        for c in range(W):
            other = codes.clone()
            other[0, r, c] = (codes[0, r, c] + 1) % m.n_codes
            moved = (m(other) - base).abs().sum(1)[0] > 0
            expected = torch.zeros(H, W, dtype=torch.bool)
            for rr, cc in ((r, c + 1), (r + 1, c), (r + 1, c + 1), (r + 1, c - 1)):  # it is their left/up/..
                if rr < H and 0 <= cc < W:
                    expected[rr, cc] = True
            for d in (-1, 0, 1) if mirror and r < first else ():  # rows whose mirror row r+d.. is r
                reader = H - 1 - r + d  # row `reader` reads row H-1-reader+d = r
                if first <= reader < H:
                    expected[reader, c] = True
            assert torch.equal(moved, expected), f"code ({r},{c}) moved {moved.int().tolist()}"
    terms = m.table_logits(m.table_index(codes))
    for r in range(H):  # the sampler's split: upper/mirror terms per row + the left code's row
        for c in range(W):
            left = codes[:, r, c - 1] if c else torch.full((1,), m.n_codes)
            row = m.table_row(codes, r)[:, c] + m.tables.weight[left]
            assert torch.allclose(row, terms[:, r, c])
    with pytest.raises(ValueError, match="pass the codes"):
        m.forward_embedded(m.embed(codes))
    with pytest.raises(ValueError, match="no code tables"):
        _model().forward_embedded(_model().embed(codes), codes=codes)


def test_table_decay_shrinks_the_code_tables_alone():
    """table_decay > 0: AdamW decays the code tables (and nothing else) by lr * table_decay
    per update; 0 keeps plain Adam. A step with zero gradients shows it: only decay moves."""
    from hipgen_utils.config import ConfigError
    from hipgen_utils.training import prior_optimizer

    for decay in (0.0, 0.5):
        cfg = PixelCNNConfig(n_channels=8, n_layers=2, kernel_size=3, tables=True, table_decay=decay,
                             learning_rate=0.1)  # fmt: skip
        m = GatedPixelCNN.from_config(cfg, 5)
        torch.nn.init.ones_(m.tables.weight)
        params = list(m.parameters())
        before = [p.detach().clone() for p in params]
        opt = prior_optimizer(m, params, cfg)
        for p in params:
            p.grad = torch.zeros_like(p)
        opt.step()
        for p, b in zip(params, before):
            want = b * (1 - 0.1 * decay) if p is m.tables.weight else b
            assert torch.allclose(p, want), f"decay={decay}: a parameter of shape {tuple(p.shape)} moved wrongly"
    with pytest.raises(ConfigError, match="table_decay=0.5 needs tables=True"):
        PixelCNNConfig(table_decay=0.5)
    with pytest.raises(ConfigError, match="table_decay"):
        PixelCNNConfig(tables=True, table_decay=-1.0)


def test_code_tables_start_as_the_plain_prior_and_load_from_config():
    plain = _model(seed=3)
    tabled = _model(seed=3, tables=True)
    codes = torch.randint(0, 5, (2, 5, 4), generator=torch.Generator().manual_seed(1))
    assert torch.allclose(plain(codes), tabled(codes)), "zero tables must add nothing"
    m = GatedPixelCNN.from_config(PixelCNNConfig(n_channels=8, n_layers=2, kernel_size=3, tables=True, mirror=True), 16)
    assert m.tables is not None and m.n_neighbours == 7 and m.tables.weight.shape == (7 * 17, 16)
    assert GatedPixelCNN.from_config(PixelCNNConfig(n_channels=8, n_layers=2, kernel_size=3), 16).tables is None


@pytest.mark.parametrize("dilation", [1, 4])
def test_vertical_step_on_the_gathered_rows_equals_the_dilated_window(dilation):
    """The fast sampler gathers only the k//2+1 rows a dilated kernel reads (`spaced=True`);
    that gives the same output row as the whole window, and a different one when the rows
    between them are what it is given instead."""
    from hipgen_utils.pixelcnn import GatedLayer

    torch.manual_seed(0)
    layer = GatedLayer(8, 5, 0, 0.0, dilation=dilation)
    window = torch.randn(3, layer.v_extent + 1, 6, 8)  # one output row
    v, link = layer.vertical(window)
    rows = window[:, ::dilation]  # rows 0, d, 2d: what the kernel reads
    assert rows.shape[1] == 3
    v2, link2 = layer.vertical(rows.contiguous(), spaced=True)
    assert torch.allclose(v, v2, atol=1e-6) and torch.allclose(link, link2, atol=1e-5)
    if dilation > 1:
        wrong, _ = layer.vertical(window[:, :3].contiguous(), spaced=True)
        assert not torch.allclose(v, wrong, atol=1e-3)
