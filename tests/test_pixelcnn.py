"""Gated PixelCNN: exact causality (no blind spot), shapes on non-square grids, conditioning."""

import math

import pytest
import torch
import torch.nn.functional as F

from hipgen_utils.config import PixelCNNConfig, get_profile
from hipgen_utils.pixelcnn import GatedPixelCNN

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def bits_per_code(logits, codes):
    """Mean cross-entropy in bits of (B, K, H, W) logits for (B, H, W) codes."""
    return F.cross_entropy(logits, codes.long()) / math.log(2.0)


# a plain gated PixelCNN: the shipped model's switches off (each test turns on what it tests)
PLAIN = {"n_conditions": 0, "positional": False, "v_dilation": 1, "mirror": False, "tables": False}


def _model(seed=0, dtype=torch.float64, **kw):
    torch.manual_seed(seed)
    kw = {"n_codes": 5, "n_channels": 16, "n_layers": 2, "kernel_size": 3, **PLAIN, **kw}
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
        m.bias_sources(None)


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


def test_the_defaults_are_the_shipped_model_and_profiles_differ_only_in_size_and_budget():
    from dataclasses import asdict

    shipped = GatedPixelCNN()
    assert (shipped.n_codes, shipped.n_channels, shipped.n_layers, shipped.kernel_size) == (512, 128, 15, 5)
    assert shipped.n_conditions == 60 and shipped.positional and shipped.v_dilation == 8
    assert shipped.mirror and shipped.tables is not None and shipped.n_neighbours == 7
    built = GatedPixelCNN.from_config(PixelCNNConfig(), 512)
    assert {k: v.shape for k, v in built.state_dict().items()} == {k: v.shape for k, v in shipped.state_dict().items()}
    size_and_budget = {"n_channels", "n_layers", "kernel_size", "n_slices", "n_updates", "max_seconds", "batch_size",
                       "learning_rate", "log_interval", "val_grids"}  # fmt: skip
    default = asdict(PixelCNNConfig())
    for name in ("full", "demo", "ci"):
        cfg = asdict(get_profile(name).pixelcnn)
        other = {k for k in cfg if cfg[k] != default[k]} - size_and_budget
        assert not other, f"profile {name} changes {other} of the shipped prior"
    # the ci prior's 3 layers read the same dilations (1, 2, 4) as the cycle up to 8 gives
    ci = GatedPixelCNN.from_config(get_profile("ci").pixelcnn, 32)
    assert [layer.dilation for layer in ci.layers] == [1, 2, 4]


def test_learns_a_deterministic_pattern():
    # codes[r, c] = (r + 2c) mod K: predictable from the left neighbour, except at c == 0,
    # where it is predictable from the row above. A working prior drives bits/code far down.
    torch.manual_seed(0)
    K, H, W = 4, 4, 6
    m = GatedPixelCNN(K, n_channels=16, n_layers=2, kernel_size=3, **PLAIN)
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
    m = GatedPixelCNN(16, n_channels=8, n_layers=2, kernel_size=3, **{**PLAIN, "n_conditions": n_conditions,
                      "positional": True})  # fmt: skip
    codes = torch.randint(0, 16, (3, 6, 4))
    cond = torch.tensor([0, 4, 2]) if n_conditions else None
    ref = F.cross_entropy(m(codes, cond), codes, reduction="none")
    assert m.nll(codes, cond).item() == pytest.approx(ref.mean().item(), rel=1e-6)
    assert m.nll(codes, cond, reduction="sum").item() == pytest.approx(ref.sum().item(), rel=1e-6)
    with pytest.raises(ValueError, match="valid codes are 0..15"):
        m.nll(codes + 16, cond)


# ---- the shipped switches: vertical dilation, mirror context, code tables -------------------


@pytest.mark.parametrize(
    "H, W, kw",
    [
        (11, 4, {"v_dilation": 4, "n_layers": 3}),
        (7, 4, {"v_dilation": 2, "n_conditions": 3, "kernel_size": 5}),
        (9, 4, {"v_dilation": 8, "n_layers": 4, "positional": True}),
    ],
)
def test_dilation_keeps_causality_exact(H, W, kw):
    """No position sees itself or anything after it in raster order; dilation reaches
    receptive_field() rows up, contiguously, and no further."""
    m = _model(**{"n_layers": 3, **kw})
    g = torch.Generator().manual_seed(1)
    codes = torch.randint(0, m.n_codes, (2, H, W), generator=g)
    cond = m.check_cond(None if not kw.get("n_conditions") else [1, 2], 2)
    x = m.embed(codes).detach().requires_grad_(True)
    logits = m.forward_embedded(x, cond)
    assert logits.shape == (2, m.n_codes, H, W)
    proj = torch.randn(m.n_codes, generator=g, dtype=logits.dtype)
    index = torch.arange(H * W).view(H, W)
    R = m.receptive_field()
    for r in range(H):
        for c in range(W):
            (grad,) = torch.autograd.grad(logits[0, :, r, c] @ proj, x, retain_graph=True)
            seen = grad[0].abs().sum(-1) != 0
            assert not grad[1].any(), "samples in a batch must not influence each other"
            assert not seen[index >= int(index[r, c])].any(), f"({r},{c}) sees itself or a later position"
            rows = seen.any(1).nonzero().flatten().tolist()
            want = list(range(max(0, r - R), r + (c > 0)))
            assert rows == want, f"({r},{c}): rows seen {rows}, expected {want}"
            assert seen[max(0, r - R) : r, c].all(), "dilated reach must be contiguous above"


def test_receptive_field_with_dilation():
    m = GatedPixelCNN(8, n_channels=8, n_layers=8, kernel_size=5, **{**PLAIN, "v_dilation": 8})
    assert [layer.dilation for layer in m.layers] == [1, 2, 4, 8, 1, 2, 4, 8]
    assert m.receptive_field() == 1 + 2 * 30  # the demo prior's 64-row grid is (almost) covered
    assert GatedPixelCNN(8, n_channels=8, n_layers=8, kernel_size=5, **PLAIN).receptive_field() == 17


@pytest.mark.parametrize("kw", [{"v_dilation": 2}, {"v_dilation": 4, "mirror": True, "tables": True, "positional": True}])
def test_nll_matches_forward_with_switches(kw):
    torch.manual_seed(0)
    m = GatedPixelCNN(16, n_channels=8, n_layers=2, kernel_size=3, **{**PLAIN, "n_conditions": 5, **kw})
    if m.tables is not None:
        torch.nn.init.normal_(m.tables.weight)
    codes = torch.randint(0, 16, (3, 6, 4))
    cond = torch.tensor([0, 4, 2])
    ref = F.cross_entropy(m(codes, cond), codes, reduction="none")
    assert m.nll(codes, cond).item() == pytest.approx(ref.mean().item(), rel=1e-6)
    assert torch.allclose(m.nll(codes, cond, reduction="none"), ref.reshape(-1), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("n_channels", [24, 32])
def test_dilated_layers_have_finite_gradients_under_cpu_bf16(n_channels):
    # torch 2.14's CPU bf16 convolution gave NaN weight gradients for a dilated vertical
    # step on channels-last input at 24 channels (the ci profile's codes, batch 8, 64x32
    # grids): the first update of `train --n_channels 24` stopped with "non-finite loss"
    torch.manual_seed(0)
    m = GatedPixelCNN(32, n_channels=n_channels, n_layers=3, kernel_size=3, n_conditions=12, v_dilation=4,
                      tables=False)  # fmt: skip
    codes, cond = torch.randint(0, 32, (8, 64, 32)), torch.randint(0, 12, (8,))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = m.nll(codes, cond)
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in m.parameters() if p.grad is not None)


def test_bad_switch_values():
    for kw, needle in (({"v_dilation": 3}, "power of 2"), ({"v_dilation": 0}, "v_dilation=0")):
        with pytest.raises(ValueError, match=needle):
            GatedPixelCNN(8, **{"n_layers": 2, **kw})


def test_checkpoints_written_before_load_as_the_model_they_were():
    """A checkpoint config from before a switch existed builds the model of its time (the
    weights load strictly), an epoch budget becomes the updates its history ran, the removed
    variants' fields are dropped when off and refused in one line when on."""
    from dataclasses import asdict

    from hipgen_utils.config import ConfigError, checkpoint_config, from_dict

    cfg = get_profile("ci").pixelcnn
    first = {k: v for k, v in asdict(cfg).items()
             if k not in {"positional", "v_dilation", "mirror", "tables", "max_seconds", "n_updates"}}  # fmt: skip
    first.update(epochs=5, dropout=0.0)  # the first prior's config: an epoch budget, dropout off
    history = {"epoch": [1.0, 2.0, 5.0], "step": [3, 6, 15]}  # 3 updates per epoch
    loaded = checkpoint_config(PixelCNNConfig, {"config": first, "history": history})
    assert (loaded.positional, loaded.v_dilation, loaded.mirror, loaded.tables) == (False, 1, False, False)
    assert loaded.n_updates == 15 and loaded.max_seconds == 0.0
    torch.manual_seed(0)
    before = GatedPixelCNN(32, n_channels=cfg.n_channels, n_layers=cfg.n_layers, kernel_size=cfg.kernel_size,
                           **{**PLAIN, "n_conditions": cfg.n_slices})  # fmt: skip
    m = GatedPixelCNN.from_config(loaded, 32)
    m.load_state_dict(before.state_dict())  # strict: the same parameters
    codes = torch.randint(0, 32, (2, 5, 4))
    assert torch.equal(m(codes, 1), before(codes, 1))
    # the last shipped config (78c3881): every removed variant off, the switches on
    last = {**asdict(get_profile("demo").pixelcnn), "epochs": 16, "order": "lr", "attn_layers": 0, "attn_heads": 2,
            "attn_dim": 0, "attn_pool": 1, "top_codes": 0, "top_factor": 4, "top_channels": 64, "top_layers": 6,
            "top_dilation": 2, "top_updates": 600, "table_decay": 0.0, "dropout": 0.0}  # fmt: skip
    del last["n_updates"]
    again = checkpoint_config(PixelCNNConfig, {"config": last, "history": {"epoch": [16.0], "step": [2880]}})
    assert again == get_profile("demo").pixelcnn
    for key, value in (("attn_layers", 2), ("top_codes", 64), ("order", "ap"), ("dropout", 0.1), ("table_decay", 1.0)):
        with pytest.raises(ConfigError, match=f"{key}=.*removed from hipgen.*78c3881") as e:
            from_dict(PixelCNNConfig, {**last, key: value})
        assert "\n" not in str(e.value)


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
    index = torch.arange(H * W).view(H, W)
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


def test_mirror_switch_from_config():
    cfg = PixelCNNConfig(n_channels=8, n_layers=2, kernel_size=3, mirror=True)
    m = GatedPixelCNN.from_config(cfg, 16)
    assert m.mirror and m.mirror_cond is not None and all(layer.mirror is not None for layer in m.layers)
    plain = GatedPixelCNN.from_config(PixelCNNConfig(n_channels=8, n_layers=2, kernel_size=3, mirror=False), 16)
    assert not plain.mirror and plain.mirror_map(torch.zeros(1, 4, 4, 8)) is None
    with pytest.raises(ValueError, match="no mirror context"):
        plain.bias_sources(None, (4, 4), torch.zeros(1, 4, 4, 8))


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


def test_code_tables_start_as_the_plain_prior_and_load_from_config():
    plain = _model(seed=3)
    tabled = _model(seed=3, tables=True)
    codes = torch.randint(0, 5, (2, 5, 4), generator=torch.Generator().manual_seed(1))
    assert torch.allclose(plain(codes), tabled(codes)), "zero tables must add nothing"
    m = GatedPixelCNN.from_config(PixelCNNConfig(n_channels=8, n_layers=2, kernel_size=3, tables=True, mirror=True), 16)
    assert m.tables is not None and m.n_neighbours == 7 and m.tables.weight.shape == (7 * 17, 16)
    off = PixelCNNConfig(n_channels=8, n_layers=2, kernel_size=3, tables=False)
    assert GatedPixelCNN.from_config(off, 16).tables is None


@pytest.mark.parametrize("dilation", [1, 4])
def test_vertical_step_on_the_gathered_rows_equals_the_dilated_window(dilation):
    """The fast sampler gathers only the k//2+1 rows a dilated kernel reads (`spaced=True`);
    that gives the same output row as the whole window, and a different one when the rows
    between them are what it is given instead."""
    from hipgen_utils.pixelcnn import GatedLayer

    torch.manual_seed(0)
    layer = GatedLayer(8, 5, 0, dilation=dilation)
    window = torch.randn(3, layer.v_extent + 1, 6, 8)  # one output row
    v, link = layer.vertical(window)
    rows = window[:, ::dilation]  # rows 0, d, 2d: what the kernel reads
    assert rows.shape[1] == 3
    v2, link2 = layer.vertical(rows.contiguous(), spaced=True)
    assert torch.allclose(v, v2, atol=1e-6) and torch.allclose(link, link2, atol=1e-5)
    if dilation > 1:
        wrong, _ = layer.vertical(window[:, :3].contiguous(), spaced=True)
        assert not torch.allclose(v, wrong, atol=1e-3)
