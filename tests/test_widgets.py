"""Tests for hipgen_utils.widgets.SamplerPanel with a fake prior, sampler and decoder."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from hipgen_utils.widgets import SamplerPanel  # noqa: E402

SHAPE = (8, 4)  # code grid (h, w); decoded images are (4h, 4w) = (32, 16)
K = 10


class FakePrior:
    def __init__(self, n_conditions=0):
        self.n_codes = K
        self.n_conditions = n_conditions


class FakeSampler:
    """Records each call's arguments and returns random codes (the prefix rows kept)."""

    def __init__(self, fail=False):
        self.calls = []
        self.fail = fail

    def __call__(self, prior, n, **kw):
        self.calls.append(dict(n=n, **kw))
        if self.fail:
            raise RuntimeError("sampler exploded")
        g = torch.Generator().manual_seed(kw["seed"])
        codes = torch.randint(0, prior.n_codes, (n, *kw["shape"]), generator=g)
        if kw.get("prefix") is not None:
            codes[:, : kw["prefix"].shape[1]] = kw["prefix"]
        return codes


def fake_decode(codes):
    """codes (N, h, w) -> (N, 4h, 4w) float32 in [0, 1]."""
    c = torch.as_tensor(codes).float() / (K - 1)
    return c.repeat_interleave(4, 1).repeat_interleave(4, 2).numpy()


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def make_panel(conditional=False, fail=False, with_images=True):
    rng = np.random.default_rng(0)
    test_codes = rng.integers(0, K, (3, *SHAPE))
    sampler = FakeSampler(fail)
    panel = SamplerPanel(
        FakePrior(n_conditions=6 if conditional else 0),
        fake_decode,
        test_codes=test_codes,
        test_images=fake_decode(test_codes) if with_images else None,
        test_slices=[5, 2, 4] if conditional else None,
        shape=SHAPE,
        max_samples=6,
        sample_fn=sampler,
    )
    return panel, sampler, test_codes


def test_render_sets_images_and_counts():
    panel, sampler, _ = make_panel()
    out = panel.render()
    assert out.shape == (4, 32, 16) and out.dtype == np.float32
    assert panel.last_images is out and panel.n_renders == 1 and panel.error is None
    call = sampler.calls[-1]
    assert call["n"] == 4 and call["temperature"] == 1.0 and call["top_k"] is None
    assert call["condition"] is None and call["shape"] == SHAPE and call["device"] is None  # the prior's own device
    assert panel.last_figure.axes  # a figure was drawn
    assert panel.widget.children  # the container to display


@pytest.mark.parametrize(
    "name, value, key, expected",
    [
        ("temperature", 0.7, "temperature", 0.7),
        ("top_k", 5, "top_k", 5),
        ("seed", 42, "seed", 42),
        ("n", 2, "n", 2),
    ],
)
def test_each_slider_triggers_one_render_with_its_value(name, value, key, expected):
    panel, sampler, _ = make_panel()
    getattr(panel, name).value = value
    assert panel.n_renders == 1 and len(sampler.calls) == 1 and panel.error is None
    assert sampler.calls[0][key] == pytest.approx(expected)
    if name == "n":
        assert panel.last_images.shape == (2, 32, 16)


def test_starting_seed_and_number_of_samples_reach_the_first_render():
    sampler = FakeSampler()
    panel = SamplerPanel(FakePrior(), fake_decode, shape=SHAPE, max_samples=6, sample_fn=sampler, seed=5, n_samples=2)
    panel.render()
    assert (panel.seed.value, panel.n.value) == (5, 2) and panel.n_renders == 1
    assert sampler.calls[0]["seed"] == 5 and sampler.calls[0]["n"] == 2


def test_top_k_zero_means_off():
    panel, sampler, _ = make_panel()
    panel.top_k.value = 3
    panel.top_k.value = 0
    assert sampler.calls[-1]["top_k"] is None and panel.n_renders == 2


def test_slice_slider_conditions_samples_when_conditional():
    panel, sampler, _ = make_panel(conditional=True)
    assert not panel.slice.disabled and panel.slice.max == 5
    panel.slice.value = 1
    assert panel.n_renders == 1 and sampler.calls[0]["condition"] == 1


def test_slice_slider_disabled_for_unconditional_prior():
    panel, _, _ = make_panel(conditional=False)
    assert panel.slice.disabled and panel.slice.layout.display == "none"


def test_completion_passes_prefix_rows_and_test_slice():
    panel, sampler, test_codes = make_panel(conditional=True)
    panel.mode.value = "completion"
    assert panel.n_renders == 1
    panel.image_index.value = 2
    panel.keep_rows.value = 3
    assert panel.n_renders == 3 and len(sampler.calls) == 3
    call = sampler.calls[-1]
    assert call["n"] == 1 and call["condition"] == 4  # test_slices[2]
    assert call["prefix"].dtype == torch.long
    np.testing.assert_array_equal(call["prefix"].numpy(), test_codes[2:3, :3])
    assert panel.last_images.shape == (1, 32, 16)
    # the completion keeps the original's first 3 code rows = first 12 image rows
    np.testing.assert_allclose(panel.last_images[0, :12], fake_decode(test_codes[2:3])[0, :12])
    # sliders of the other mode are disabled and do not re-render
    assert panel.n.disabled and panel.slice.disabled and not panel.keep_rows.disabled
    panel.n.value = 5
    assert panel.n_renders == 3


def test_completion_without_test_images_decodes_the_test_codes():
    panel, sampler, test_codes = make_panel(with_images=False)
    panel.mode.value = "completion"
    assert panel.n_renders == 1 and sampler.calls[0]["condition"] is None


def test_lead_lines_reach_the_sampler_only_when_set():
    sampler = FakeSampler()
    panel = SamplerPanel(FakePrior(), fake_decode, shape=SHAPE, sample_fn=sampler, lead_lines=3)
    panel.render()
    assert sampler.calls[-1]["lead_lines"] == 3
    plain = FakeSampler()
    SamplerPanel(FakePrior(), fake_decode, shape=SHAPE, sample_fn=plain).render()
    assert "lead_lines" not in plain.calls[-1]  # a sample_fn without the keyword still works


def test_top_k_starts_at_the_given_value_and_reaches_the_sampler():
    sampler = FakeSampler()
    panel = SamplerPanel(FakePrior(), fake_decode, shape=SHAPE, sample_fn=sampler, top_k=8)
    panel.render()
    assert panel.top_k.value == 8 and sampler.calls[-1]["top_k"] == 8
    panel.top_k.value = 0  # off: every code
    assert sampler.calls[-1]["top_k"] is None


def test_completion_mode_unavailable_without_test_codes():
    panel = SamplerPanel(FakePrior(), fake_decode, shape=SHAPE, sample_fn=FakeSampler())
    assert list(panel.mode.options) == ["samples"] and panel.mode.disabled


def test_failing_sampler_raises_and_records_error():
    panel, _, _ = make_panel(fail=True)
    with pytest.raises(RuntimeError, match="sampler exploded"):
        panel.temperature.value = 0.5
    assert isinstance(panel.error, RuntimeError) and panel.n_renders == 0
    with pytest.raises(RuntimeError, match="sampler exploded"):
        panel.render()


def test_error_clears_after_a_successful_render():
    panel, sampler, _ = make_panel()
    sampler.fail = True
    with pytest.raises(RuntimeError):
        panel.seed.value = 1
    sampler.fail = False
    panel.seed.value = 2
    assert panel.error is None and panel.n_renders == 1


def test_bad_construction_gives_clear_errors():
    with pytest.raises(ValueError, match="pass test_slices"):
        SamplerPanel(
            FakePrior(3),
            fake_decode,
            test_codes=np.zeros((2, *SHAPE), int),
            shape=SHAPE,
            sample_fn=FakeSampler(),
        )
    with pytest.raises(ValueError, match=r"test_codes should be \(M, 8, 4\)"):
        SamplerPanel(
            FakePrior(),
            fake_decode,
            test_codes=np.zeros((2, 4, 4), int),
            shape=SHAPE,
            sample_fn=FakeSampler(),
        )
    with pytest.raises(TypeError, match="n_codes"):
        SamplerPanel(object(), fake_decode, shape=SHAPE, sample_fn=FakeSampler())


# --------------------------------------------------------------------------- in a kernel

_KERNEL_SETUP = """
import numpy as np, torch
from hipgen_utils.widgets import SamplerPanel

class Prior:
    n_codes, n_conditions = 10, 6

def sample(prior, n, *, temperature, top_k, seed, shape, device, condition=None, prefix=None):
    codes = torch.randint(0, 10, (n, *shape), generator=torch.Generator().manual_seed(seed))
    if prefix is not None:
        codes[:, : prefix.shape[1]] = prefix
    return codes

def decode(c):
    return torch.as_tensor(c).float().div(9).repeat_interleave(4, 1).repeat_interleave(4, 2).numpy()

test_codes = np.random.default_rng(0).integers(0, 10, (3, 8, 4))
"""

# notebook 06's two panel cells: build, render and show the panel; drive it from code
_PANEL_CELL = """
panel = SamplerPanel(Prior(), decode, test_codes=test_codes, test_slices=[1, 2, 3], shape=(8, 4),
                     max_samples=4, sample_fn=sample)
panel.render()
panel.widget
"""
_DRIVE_CELL = """
panel.seed.value = {i} + 1
panel.temperature.value = 0.5 + {i} / 40
panel.mode.value = "completion"
assert panel.error is None and panel.n_renders == 4, panel.n_renders
"""


def test_panel_cells_never_stall_under_nbclient(monkeypatch):
    """The panel cells, 20 times in a row, under nbclient as nbmake and `make demo` run them.

    nbclient mimics a front-end for Output widgets: when a kernel-side ``with out:`` asks it
    to capture, it sends comm messages on the shell socket while it awaits the cell's
    execute_reply there, and about one cell in four that reply was never noticed (a hang
    with no cell timeout). The panel must fill its Output widget from the kernel instead,
    so the runner never sends anything: counted here, not left to timing luck.
    """
    import nbformat
    from nbclient import NotebookClient
    from nbclient.output_widget import OutputWidget

    sent = []
    real_send = OutputWidget.send
    monkeypatch.setattr(OutputWidget, "send", lambda self, *a, **k: (sent.append(a), real_send(self, *a, **k)))
    cells = [nbformat.v4.new_code_cell(_KERNEL_SETUP)]
    for i in range(20):
        cells += [nbformat.v4.new_code_cell(_PANEL_CELL), nbformat.v4.new_code_cell(_DRIVE_CELL.format(i=i))]
    nb = nbformat.v4.new_notebook(cells=cells)
    # a stall fails this cell after 60 s instead of hanging the test run
    NotebookClient(nb, timeout=60, kernel_name="python3", store_widget_state=True).execute()
    assert sent == [], f"the notebook runner sent {len(sent)} comm messages back to the kernel"
    # what a reader of the executed notebook sees: each panel's Output widget holds one PNG
    outputs = [
        w["state"]["outputs"]
        for w in nb.metadata.widgets["application/vnd.jupyter.widget-state+json"]["state"].values()
        if w["model_name"] == "OutputModel"
    ]
    assert len(outputs) == 20
    assert all(len(o) == 1 and "image/png" in o[0]["data"] for o in outputs)


def test_render_failure_is_shown_in_the_panel():
    panel, sampler, _ = make_panel()
    sampler.fail = True
    with pytest.raises(RuntimeError):
        panel.seed.value = 3
    (out,) = panel.output.outputs
    assert out["name"] == "stderr" and "render failed: RuntimeError: sampler exploded" in out["text"]


def test_completion_shows_the_test_images_slice_on_the_slice_slider():
    panel, sampler, _ = make_panel(conditional=True)
    panel.mode.value = "completion"
    panel.image_index.value = 1
    assert panel.slice.value == 2 and panel.slice.disabled  # test_slices[1]
    assert sampler.calls[-1]["condition"] == 2
    assert "left" in panel.last_figure._suptitle.get_text()
