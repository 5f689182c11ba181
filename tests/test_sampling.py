"""Sampling: the fast sampler equals the naive one, seeding, top-k, prefixes, errors."""

import numpy as np
import pytest
import torch

from hipgen_utils.pixelcnn import GatedPixelCNN
from hipgen_utils.sampling import keep_first, kept_lines, kept_mask, sample, sample_naive

K = 7


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _model(n_conditions=0, seed=0, kernel_size=3, n_layers=3, positional=False, **switches):
    """A small prior, plain unless `switches` turn on dilation, mirror context or code tables."""
    torch.manual_seed(seed)
    switches = {"v_dilation": 1, "mirror": False, "tables": False, **switches}
    m = GatedPixelCNN(
        K, n_channels=12, n_layers=n_layers, kernel_size=kernel_size, n_conditions=n_conditions,
        positional=positional, **switches,
    )  # fmt: skip
    if positional:
        for layer in m.layers:  # make the positional biases matter
            torch.nn.init.normal_(layer.pos.weight, std=0.5)
    if n_conditions:
        for layer in m.layers:  # make the conditioning matter
            torch.nn.init.normal_(layer.cond.weight, std=0.5)
    # float64 so that fast and naive logits agree to ~1e-15 and no draw can flip
    return m.double().eval()


@pytest.mark.parametrize(
    "n_conditions, condition, shape, kwargs",
    [
        (0, None, (6, 5), {"temperature": 0.7}),
        (0, None, (4, 7), {"temperature": 1.6, "top_k": 3}),
        (4, [0, 3, 1], (6, 5), {"top_k": 4}),
        (4, 2, (5, 6), {"temperature": 1.3}),
        (4, [0, 3, 1], (6, 5), {"positional": True}),
        (0, None, (7, 4), {"positional": True, "temperature": 0.8}),
    ],
)
def test_fast_equals_naive(n_conditions, condition, shape, kwargs):
    kwargs = dict(kwargs)
    m = _model(n_conditions, positional=kwargs.pop("positional", False))
    fast = sample(m, 3, seed=5, condition=condition, shape=shape, **kwargs)
    naive = sample_naive(m, 3, seed=5, condition=condition, shape=shape, **kwargs)
    assert torch.equal(fast, naive)
    assert len(torch.unique(fast)) > 2  # really sampled, not a constant grid


def test_fast_equals_naive_kernel5_and_rows_limit():
    m = _model(kernel_size=5, n_layers=2)
    fast = sample(m, 2, seed=1, shape=(5, 6))
    assert torch.equal(fast, sample_naive(m, 2, seed=1, shape=(5, 6)))
    part = sample_naive(m, 2, seed=1, shape=(5, 6), rows=2)
    assert torch.equal(part[:, :2], fast[:, :2]) and not part[:, 2:].any()


def test_output_dtype_shape_range_and_device():
    m = _model()
    out = sample(m, 4, shape=(3, 8), device="cpu")
    assert out.dtype == torch.int64 and out.shape == (4, 3, 8) and out.device.type == "cpu"
    assert out.min() >= 0 and out.max() < K


def test_seeding():
    m = _model()
    a = sample(m, 2, seed=3, shape=(4, 5))
    assert torch.equal(a, sample(m, 2, seed=3, shape=(4, 5)))
    assert not torch.equal(a, sample(m, 2, seed=4, shape=(4, 5)))
    # sample i does not depend on how many are drawn (uniforms are drawn sample by sample)
    assert torch.equal(a[:1], sample(m, 1, seed=3, shape=(4, 5)))


@pytest.mark.parametrize("n_conditions, condition", [(0, None), (4, [1, 2])])
def test_top_k_1_is_greedy_argmax(n_conditions, condition):
    m = _model(n_conditions)
    codes = sample(m, 2, top_k=1, temperature=1.7, seed=9, condition=condition, shape=(5, 6))
    # teacher-forced check: every code is the argmax of the logits given the codes before it
    with torch.no_grad():
        assert torch.equal(m(codes, condition).argmax(1), codes)
    # and a different seed makes no difference
    assert torch.equal(codes, sample(m, 2, top_k=1, seed=10, condition=condition, shape=(5, 6)))


def test_distribution_at_first_position_matches_temperature_and_top_k():
    # the first position's distribution is softmax(logits / T) restricted to the top k
    m = _model()
    with torch.no_grad():
        logits = m(torch.zeros(1, 1, 1, dtype=torch.long))[0, :, 0, 0]
    T, k, n = 0.8, 3, 4000
    z = logits / T
    keep = z.topk(k).indices
    p = torch.zeros(K, dtype=torch.float64)
    p[keep] = torch.softmax(z[keep], 0)
    counts = torch.bincount(
        sample(m, n, temperature=T, top_k=k, shape=(1, 1)).flatten(), minlength=K
    )
    freq = counts.double() / n
    assert counts[p == 0].sum() == 0  # codes outside the top k never appear
    sigma = (p * (1 - p) / n).sqrt()
    assert ((freq - p).abs() <= 5 * sigma + 1e-12).all(), (freq, p)


def test_prefix_rows_are_kept_and_the_rest_is_sampled():
    m = _model(4)
    g = torch.Generator().manual_seed(0)
    prefix = torch.randint(0, K, (1, 2, 5), generator=g)
    out = sample(m, 3, seed=2, condition=1, prefix=prefix, shape=(6, 5))
    assert torch.equal(out[:, :2], prefix.expand(3, -1, -1))
    assert torch.equal(out, sample_naive(m, 3, seed=2, condition=1, prefix=prefix, shape=(6, 5)))
    # greedy completion continues from the prefix: argmax given the prefix, rows 2..
    greedy = sample(m, 1, top_k=1, condition=1, prefix=prefix, shape=(6, 5))
    with torch.no_grad():
        assert torch.equal(m(greedy, 1).argmax(1)[:, 2:], greedy[:, 2:])
    # per-sample prefixes, given as a numpy array; a full-height prefix samples nothing
    per = torch.randint(0, K, (3, 6, 5), generator=g)
    assert torch.equal(sample(m, 3, condition=[0, 1, 2], prefix=per.numpy(), shape=(6, 5)), per)


def test_thread_count_is_restored():
    torch.set_num_threads(2)  # the autouse fixture restores the original count afterwards
    sample(_model(), 1, shape=(2, 3))
    assert torch.get_num_threads() == 2


def test_mode_is_restored_and_model_untouched():
    m = _model().train()
    before = {k: v.clone() for k, v in m.state_dict().items()}
    sample(m, 1, shape=(2, 3))
    assert m.training and all(mod.training for mod in m.modules())
    m.eval()
    sample_naive(m, 1, shape=(2, 3))
    assert not m.training
    assert all(torch.equal(before[k], v) for k, v in m.state_dict().items())


def test_bad_arguments_raise_one_line_value_errors():
    m, mc = _model(), _model(4)
    cases = [
        (m, {"temperature": 0}, "temperature=0"),
        (m, {"temperature": -1.0}, "temperature=-1.0"),
        (m, {"temperature": float("nan")}, "temperature=nan"),
        (m, {"temperature": float("inf")}, "temperature=inf"),
        (m, {"top_k": -1}, "top_k=-1"),
        (m, {"top_k": K + 1}, f"top_k={K + 1}.*1..{K}"),
        (m, {"top_k": 2.5}, "top_k=2.5"),
        (m, {"condition": 1}, "unconditional"),
        (mc, {}, "0..3"),
        (mc, {"condition": 4}, "cond=4.*0..3"),
        (mc, {"condition": [0, 1]}, "3 ints"),
        (m, {"prefix": torch.zeros(1, 2, 4, dtype=torch.long)}, r"prefix has shape \(1, 2, 4\)"),
        (m, {"prefix": torch.full((1, 1, 5), K)}, f"0..{K - 1}"),
        (m, {"prefix": torch.zeros(1, 1, 5)}, "int tensor"),
        (m, {"shape": (0, 5)}, "shape"),
        (m, {"device": "auto"}, "device='auto'"),
    ]
    for model, kwargs, needle in cases:
        kwargs = {"shape": (3, 5), **kwargs}
        for fn in (sample, sample_naive):
            with pytest.raises(ValueError, match=needle) as e:
                fn(model, 3, **kwargs)
            assert "\n" not in str(e.value)
    with pytest.raises(ValueError, match="n=0"):
        sample(m, 0)
    m.train()
    with pytest.raises(ValueError):
        sample(m, 1, condition=3, shape=(2, 2))
    assert m.training  # restored even when sampling fails


# ---- the shipped switches: dilated vertical stack, mirror context, code tables --------------

SWITCHES = [
    {"v_dilation": 4},
    {"v_dilation": 2, "positional": True, "kernel_size": 5, "n_layers": 2},
    {"v_dilation": 8, "mirror": True, "tables": True, "positional": True, "n_layers": 4},
]


@pytest.mark.parametrize("switches", SWITCHES)
def test_fast_equals_naive_with_switches(switches):
    m = _model(4, **switches)
    if m.tables is not None:
        torch.nn.init.normal_(m.tables.weight, std=1.0)
    kw = dict(seed=5, condition=[0, 3, 1], shape=(7, 5), temperature=1.2)
    fast = sample(m, 3, **kw)
    assert torch.equal(fast, sample_naive(m, 3, **kw))
    assert len(torch.unique(fast)) > 2
    # completion: the prefix (the first rows) is kept, the rest equals naive
    grid = torch.randint(0, K, (3, 7, 5), generator=torch.Generator().manual_seed(0))
    prefix = keep_first(grid, 0.4)
    done = sample(m, 3, prefix=prefix, **kw)
    assert torch.equal(done, sample_naive(m, 3, prefix=prefix, **kw))
    mask = torch.from_numpy(kept_mask((7, 5), kept_lines((7, 5), 0.4)))
    assert torch.equal(done[:, mask], grid[:, mask]) and not torch.equal(done, grid)


def test_keep_first_and_kept_mask():
    codes = np.arange(2 * 64 * 32).reshape(2, 64, 32)
    assert kept_lines((64, 32)) == 32 and kept_lines((64, 32), 0.25) == 16 and kept_lines((64, 32), 1.0) == 64
    assert keep_first(codes).shape == (2, 32, 32) and keep_first(torch.as_tensor(codes), k=3).shape == (2, 3, 32)
    mask = kept_mask((64, 32), 32)
    assert mask.dtype == bool and mask.shape == (64, 32) and mask[:32].all() and not mask[32:].any()
    prefix = keep_first(codes, 0.5)  # the mask marks exactly the prefix's codes
    assert np.array_equal(np.sort(prefix.reshape(2, -1), 1), np.sort(codes[:, mask], 1))
    for bad in (dict(fraction=1.5), dict(fraction=True), dict(k=65), dict(k=-1)):
        with pytest.raises(ValueError):
            keep_first(codes, **bad)
    with pytest.raises(ValueError, match="k=65"):
        kept_mask((64, 32), 65)


def test_prefix_shape_is_checked_in_one_line():
    m = _model(0)
    assert sample(m, 1, prefix=torch.zeros(1, 2, 5, dtype=torch.long), shape=(4, 5)).shape == (1, 4, 5)
    with pytest.raises(ValueError, match=r"expected \(1 or 1, k <= 4, 5\)") as e:
        sample(m, 1, prefix=torch.zeros(1, 4, 2, dtype=torch.long), shape=(4, 5))
    assert "\n" not in str(e.value)


def test_slice_conditions_draw_only_positions_the_prior_was_trained_on():
    from hipgen_utils.pipeline import slice_conditions

    m = _model(4)
    cond = slice_conditions(m, 200, np.array([1, 3, 7, 59, -1]), seed=0)  # 7, 59, -1: never trained on
    assert set(cond.tolist()) == {1, 3}
    assert set(slice_conditions(m, 200, np.array([40, 50]), seed=0).tolist()) == {0, 1, 2, 3}
    assert set(slice_conditions(m, 200, None, seed=0).tolist()) == {0, 1, 2, 3}
    assert slice_conditions(_model(0), 5, np.array([1, 2])) is None


@pytest.mark.parametrize("H", [8, 7])
def test_fast_equals_naive_with_mirror_context(H):
    """The fast sampler computes the mirror map once the first half is drawn (or from a prefix
    that holds it); it must draw exactly the naive sampler's codes, with and without a prefix."""
    m = _model(3, mirror=True, v_dilation=2, positional=True)
    for layer in m.layers:  # make the mirror biases decide the draws
        torch.nn.init.normal_(layer.mirror.weight, std=3.0)
    torch.nn.init.normal_(m.mirror_out.weight, std=3.0)  # and the mirror's skip term
    kw = dict(seed=3, condition=[2, 0, 1], shape=(H, 5))
    fast = sample(m, 3, **kw)
    assert torch.equal(fast, sample_naive(m, 3, **kw)) and len(torch.unique(fast)) > 2
    grid = torch.randint(0, K, (3, H, 5), generator=torch.Generator().manual_seed(0))
    for k in (2, (H + 1) // 2, H - 1):  # before, at and after the first mirrored row
        prefix = keep_first(grid, k=k)
        done = sample(m, 3, prefix=prefix, **kw)
        assert torch.equal(done[:, :k], grid[:, :k])
        assert torch.equal(done, sample_naive(m, 3, prefix=prefix, **kw))


def test_fast_sampler_builds_gate_biases_one_row_at_a_time():
    """Whole-grid biases cost n x H x W x 4C per layer (60 MiB per sample for the `full`
    prior, 15 GiB for 256 samples): the fast sampler must only ever build one row's."""
    m = _model(3, positional=True, mirror=True, v_dilation=2)
    rows = []
    for layer in m.layers:  # the maps from the position features and the mirror map to biases
        for linear in (layer.pos, layer.mirror):
            linear.register_forward_hook(lambda mod, args, out: rows.append(args[0].shape[-3]))
    sample(m, 4, seed=0, condition=[0, 1, 2, 0], shape=(6, 5))
    assert rows and set(rows) == {1}, set(rows)


@pytest.mark.parametrize("switches", [{"tables": True}, {"tables": True, "mirror": True, "v_dilation": 2}])
def test_fast_equals_naive_with_code_tables(switches):
    """The fast sampler adds the tables' terms position by position from the codes drawn so
    far; it must draw exactly the naive sampler's codes, with and without a prefix."""
    m = _model(3, positional=True, **switches)
    torch.nn.init.normal_(m.tables.weight, std=3.0)  # make the tables decide the draws
    kw = dict(seed=2, condition=[2, 0, 1], shape=(7, 5))
    fast = sample(m, 3, **kw)
    assert torch.equal(fast, sample_naive(m, 3, **kw)) and len(torch.unique(fast)) > 2
    grid = torch.randint(0, K, (3, 7, 5), generator=torch.Generator().manual_seed(0))
    for k in (2, 4):
        prefix = keep_first(grid, k=k)
        done = sample(m, 3, prefix=prefix, **kw)
        assert torch.equal(done[:, :k], grid[:, :k])
        assert torch.equal(done, sample_naive(m, 3, prefix=prefix, **kw))


@pytest.mark.parametrize("switches", [{}, {"tables": True, "mirror": True, "v_dilation": 2}])
def test_lead_lines_are_drawn_at_temperature_1(switches):
    m = _model(4, **switches)
    kw = dict(seed=3, condition=[0, 2, 3, 1], shape=(8, 6))

    def lines(g, k):
        return g[:, :k]

    def rest(g, k):
        return g[:, k:]

    t1, cold = sample(m, 4, temperature=1.0, **kw), sample(m, 4, temperature=0.3, **kw)
    lead = sample(m, 4, temperature=0.3, lead_lines=3, **kw)
    # the same uniforms: the lead lines are the T = 1 sample's, the rest is drawn colder
    assert torch.equal(lines(lead, 3), lines(t1, 3)) and not torch.equal(lines(cold, 3), lines(t1, 3))
    assert not torch.equal(rest(lead, 3), rest(t1, 3))
    assert torch.equal(lead, sample_naive(m, 4, temperature=0.3, lead_lines=3, **kw))
    assert torch.equal(sample(m, 4, temperature=0.3, lead_lines=0, **kw), cold)  # 0 = off
    assert torch.equal(sample(m, 4, temperature=0.3, lead_lines=99, **kw), t1)  # all lines at 1
    # a prefix's lines are kept; lead lines after it are still drawn at 1
    pre = keep_first(t1, k=2)
    done = sample(m, 4, temperature=0.3, lead_lines=3, prefix=pre, **kw)
    assert torch.equal(lines(done, 3), lines(t1, 3))


@pytest.mark.parametrize("bad", [-1, 1.5, True, "2"])
def test_lead_lines_must_be_a_count(bad):
    with pytest.raises(ValueError, match="lead_lines=.* must be an integer >= 0"):
        sample(_model(), 1, shape=(3, 3), lead_lines=bad)
