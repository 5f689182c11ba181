"""Tests for hipgen_utils.plotting on small synthetic inputs (Agg backend, fast)."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from hipgen_utils import plotting as P  # noqa: E402

H, W = 32, 16  # small (H, W) slices, same orientation as the real (256, 128)


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def imgs(n, seed=0):
    return np.random.default_rng(seed).random((n, H, W), dtype=np.float32)


def n_images(fig):
    return sum(len(ax.images) for ax in fig.axes)


def titles(fig):
    return [ax.get_title() for ax in fig.axes]


# ----------------------------------------------------------------------------- basics


def test_show_slice_transposes_to_landscape_anterior_on_top():
    img = imgs(1)[0]
    fig, ax = plt.subplots()
    im = P.show_slice(ax, img, title="t")
    arr = ax.images[0].get_array()
    assert arr.shape == (W, H)
    np.testing.assert_array_equal(np.asarray(arr), img.T)
    assert im.origin == "upper" and im.get_clim() == (0.0, 1.0)
    assert ax.get_title() == "t"


def test_show_slice_rejects_a_stack():
    fig, ax = plt.subplots()
    with pytest.raises(ValueError, match="one \\(H, W\\) slice"):
        P.show_slice(ax, imgs(3))


def test_save_figure_makes_parents_and_writes_png(tmp_path):
    fig = P.plot_montage(imgs(2))
    out = P.save_figure(fig, tmp_path / "a" / "b" / "m.png")
    assert out == tmp_path / "a" / "b" / "m.png"
    data = out.read_bytes()
    assert len(data) > 1000 and data[:8] == b"\x89PNG\r\n\x1a\n"


def test_montage_grid_titles_and_spare_axes_hidden():
    fig = P.plot_montage(imgs(5), titles=list("abcde"), ncols=4, suptitle="S")
    assert isinstance(fig, Figure)
    assert len(fig.axes) == 8 and n_images(fig) == 5
    assert titles(fig)[:5] == list("abcde")
    assert not any(ax.axison for ax in fig.axes[5:])
    assert fig.get_suptitle() == "S"
    with pytest.raises(ValueError, match="3 titles for 5 images"):
        P.plot_montage(imgs(5), titles=list("abc"))


def test_montage_accepts_list_of_different_shapes_and_channel_dim():
    fig = P.plot_montage([np.zeros((H, W)), np.zeros((H, W + 4))])
    assert [ax.images[0].get_array().shape for ax in fig.axes[:2]] == [(W, H), (W + 4, H)]
    fig = P.plot_montage(imgs(3)[:, None])  # (N, 1, H, W) as a model returns it
    assert n_images(fig) == 3


def test_strip_picks_evenly_spaced_slices_in_order():
    rng = np.random.default_rng(0)
    pos = rng.permutation(20)  # shuffled slice order must be sorted for display
    stack = np.stack([np.full((H, W), p / 20, np.float32) for p in pos])
    fig = P.plot_strip(stack, pos, n=5)
    shown = [int(t.split()[1]) for t in titles(fig) if t]
    assert shown == [0, 5, 10, 14, 19]
    for ax, p in zip(fig.axes, shown):  # the image drawn is the one at that position
        assert np.allclose(ax.images[0].get_array(), p / 20)
    with pytest.raises(ValueError, match="slice_idx has 3 entries"):
        P.plot_strip(stack, pos[:3])


# ----------------------------------------------------------------------------- data


def test_intensity_histograms_two_log_panels():
    rng = np.random.default_rng(0)
    fig = P.plot_intensity_histograms(
        [rng.gamma(2, 300, 500), rng.gamma(2, 5, (10, 10))], ["a", "b"], rng.random(500)
    )
    assert len(fig.axes) == 2
    assert all(ax.get_yscale() == "log" for ax in fig.axes)
    assert len(fig.axes[0].get_legend().get_texts()) == 2
    assert fig.axes[1].get_xlim() == (0.0, 1.0)
    with pytest.raises(ValueError, match="2 raw arrays but 1 labels"):
        P.plot_intensity_histograms([np.ones(3), np.ones(3)], ["a"], np.ones(3))


def test_shape_census_highlights_unexpected_shapes():
    census = {"train": {"256x128": 100, (256, 144): 3}, "test": {"256x128": 10}}
    fig = P.plot_shape_census(census)
    (ax,) = fig.axes
    bars = ax.patches
    assert len(bars) == 4  # 2 shapes x 2 splits
    heights = sorted(b.get_height() for b in bars)
    assert heights == [0, 3, 10, 100]
    hatched = [b for b in bars if b.get_hatch()]
    assert sorted(b.get_height() for b in hatched) == [0, 3]  # only the 256x144 bars
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["256x128 (expected)", "256x144 (unexpected)"]
    with pytest.raises(ValueError, match="census is empty"):
        P.plot_shape_census({})


def test_label_overlays_transposed_translucent_with_legend():
    im = imgs(3)
    lab = np.zeros((3, H, W), np.uint8)
    lab[:, 2:6, 1:3] = 5
    lab[:, 10:20, :] = 1
    fig = P.plot_label_overlays(im, lab, titles=["x", "y", "z"], ncols=2)
    axes = [ax for ax in fig.axes if ax.images]
    assert len(axes) == 3 and all(len(ax.images) == 2 for ax in axes)
    rgba = axes[0].images[1].get_array()
    assert rgba.shape == (W, H, 4)
    assert rgba[0, 0, 3] == 0  # background transparent
    assert 0 < rgba[1, 2, 3] < 1  # prostate (transposed position) translucent
    np.testing.assert_allclose(rgba[1, 2, :3], matplotlib.colors.to_rgb(P.LABEL_COLOURS[5]))
    legend_text = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend_text == list(P.LABEL_NAMES[1:])
    with pytest.raises(ValueError, match="labels must be ints in 0..5"):
        P.plot_label_overlays(im, lab + 3)


def test_class_area_vs_slice_plots_mean_area_per_position():
    lab = np.zeros((4, H, W), np.uint8)
    lab[0, :2, :2] = 3  # 4 px bladder at slice 1
    lab[1, :4, :2] = 3  # 8 px bladder at slice 1
    lab[2, :1, :1] = 3  # 1 px bladder at slice 2
    lab[3, :, :] = 1
    fig = P.plot_class_area_vs_slice(lab, [1, 1, 2, 0], n_slices=4)
    (ax,) = fig.axes
    lines = {ln.get_label(): ln for ln in ax.get_lines()}
    assert set(lines) == set(P.LABEL_NAMES[1:])
    np.testing.assert_allclose(lines["bladder"].get_ydata(), [np.nan, 6.0, 1.0, np.nan])
    np.testing.assert_allclose(lines["body"].get_ydata(), [H * W, np.nan, np.nan, np.nan])
    assert ax.get_yscale() == "log"
    with pytest.raises(ValueError, match="outside 0..3"):
        P.plot_class_area_vs_slice(lab, [0, 1, 2, 4], n_slices=4)


# ----------------------------------------------------------------------------- VQ-VAE


def history(n=4):
    s = np.linspace(1, 0.1, n)
    h = {"step": list(range(0, 10 * n, 10))}
    for split in ("train", "val"):
        for p in ("recon", "embedding", "total"):
            h[f"{split}_{p}"] = list(s)
    h["val_ssim"] = [0.2, 0.5, None, 0.7][:n]
    h["codes_used"] = [5, 10, 20, 30][:n]
    h["perplexity"] = [3.0, 6.0, 12.0, 18.0][:n]
    return h


def test_history_five_panels_with_ssim_line():
    fig = P.plot_history(history(), ssim_line=0.6)
    assert len(fig.axes) == 5
    assert [ax.get_yscale() for ax in fig.axes[:3]] == ["log"] * 3
    ssim_ax = fig.axes[3]
    assert any(np.allclose(ln.get_ydata(), 0.6) for ln in ssim_ax.get_lines())
    ssim_line = ssim_ax.get_lines()[0]
    assert list(ssim_line.get_ydata()) == [0.2, 0.5, 0.7]  # the None step is skipped
    assert all(ax.get_title() and ax.get_xlabel() and ax.get_legend() for ax in fig.axes)


def test_history_reports_missing_and_misaligned_keys():
    h = history()
    del h["perplexity"]
    with pytest.raises(ValueError, match="missing \\['perplexity'\\]"):
        P.plot_history(h)
    h = history()
    h["val_recon"] = h["val_recon"][:2]
    with pytest.raises(ValueError, match="history\\['val_recon'\\] has 2 entries"):
        P.plot_history(h)


def test_reconstructions_rows_error_map_and_ssim_titles():
    a, b = imgs(5, 0), imgs(5, 1)
    fig = P.plot_reconstructions(a, b, n=3, ssim=[0.1, 0.2, 0.3, 0.4, 0.5])
    assert n_images(fig) == 9
    assert len(fig.axes) == 10  # 9 panels + colorbar
    assert any("SSIM 0.300" in t for t in titles(fig))
    err_ax = [ax for ax in fig.axes if ax.get_title().startswith("|error|")][0]
    np.testing.assert_allclose(err_ax.images[0].get_array(), np.abs(a[0] - b[0]).T, atol=1e-6)
    with pytest.raises(ValueError, match="does not match"):
        P.plot_reconstructions(a, b[:, :8])


def test_ssim_histogram_labels_mean_median_and_target():
    s = np.array([0.2, 0.5, 0.7, 0.9])
    fig = P.plot_ssim_histogram(s, line=0.6)
    texts = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert "mean 0.575" in texts and "median 0.600" in texts
    assert any(t.startswith("target 0.6 (50%") for t in texts)


def test_ssim_vs_slice_median_per_position():
    s = np.array([0.1, 0.3, 0.5, 0.9, 0.8])
    fig = P.plot_ssim_vs_slice(s, [0, 0, 0, 3, 3])
    med = [ln for ln in fig.axes[0].get_lines() if "median" in ln.get_label()][0]
    assert list(med.get_xdata()) == [0, 3]
    np.testing.assert_allclose(med.get_ydata(), [0.3, 0.85])


def test_best_worst_orders_by_ssim():
    a, b = imgs(6, 0), imgs(6, 1)
    s = np.array([0.5, 0.9, 0.1, 0.7, 0.3, 0.2])
    fig = P.plot_best_worst(a, b, s, k=2)
    assert n_images(fig) == 12
    t = titles(fig)
    assert "best 1: image 1" in t and "best 2: image 3" in t
    assert "worst 1: image 2" in t and "worst 2: image 5" in t
    assert "recon  SSIM 0.900" in t


def test_codebook_usage_annotates_used_and_perplexity():
    counts = np.array([10, 10, 10, 10, 0, 0, 0, 0])
    assert P.perplexity(counts) == pytest.approx(4.0)
    fig = P.plot_codebook_usage(counts)
    assert len(fig.axes) == 2
    assert "4/8 used" in fig.get_suptitle() and "perplexity 4.0" in fig.get_suptitle()
    with pytest.raises(ValueError, match="all zero"):
        P.plot_codebook_usage(np.zeros(4))


def test_code_maps_pairs_and_consistent_colours():
    rng = np.random.default_rng(0)
    codes = rng.integers(0, 12, (3, H // 4, W // 4))
    fig = P.plot_code_maps(imgs(3), codes, n=2, n_codes=12)
    assert len(fig.axes) == 4 and n_images(fig) == 4
    code_im = fig.axes[1].images[0]
    assert code_im.get_array().shape == (W // 4, H // 4)
    assert code_im.cmap.N == 12 and code_im.get_clim() == (-0.5, 11.5)
    # fixed seed: the same code gets the same colour every time
    assert np.allclose(P.code_colormap(12).colors, P.code_colormap(12).colors)


def test_prior_history_has_unigram_line():
    fig = P.plot_prior_history({"epoch": [1, 2], "train_bits": [5, 4], "val_bits": [5.5, 4.5]}, 6.2)
    (ax,) = fig.axes
    base = [ln for ln in ax.get_lines() if "unigram" in ln.get_label()]
    assert len(base) == 1 and np.allclose(base[0].get_ydata(), 6.2)
    with pytest.raises(ValueError, match="missing \\['val_bits'\\]"):
        P.plot_prior_history({"epoch": [1], "train_bits": [5]}, 6.2)


def test_temperature_sweep_plot_shows_copying_not_the_hog_distance():
    rows = [
        {"temperature": t, "fid_samples": 0.05, "fid_test_vs_train": 0.06, "fid_unigram": 0.3,
         "nn_ssim_median": s, "frac_near_copies": 0.0}
        for t, s in ((0.8, 0.45), (1.0, 0.41))
    ]  # fmt: skip
    fig = P.plot_temperature_sweep(rows)
    (ax,) = fig.axes
    lines = {ln.get_label(): ln for ln in ax.get_lines()}
    assert np.allclose(lines["median nearest-neighbour SSIM"].get_ydata(), [0.45, 0.41])
    assert not any("Fréchet" in lab or "floor" in lab for lab in lines)
    with pytest.raises(ValueError, match="no rows"):
        P.plot_temperature_sweep([])
    with pytest.raises(ValueError, match="lack \\['frac_near_copies'"):
        P.plot_temperature_sweep([{k: v for k, v in rows[0].items() if k != "frac_near_copies"}])


def test_samples_montage():
    fig = P.plot_samples(imgs(3), ncols=2)
    assert n_images(fig) == 3 and "3 samples" in fig.get_suptitle()


def test_completion_greys_out_after_kept_rows():
    a, b = imgs(2)
    fig = P.plot_completion(a, 3, b, code_rows=8)  # 4 image rows per code row
    assert len(fig.axes) == 3 and n_images(fig) == 3
    kept_ax = fig.axes[1]
    (span,) = [p for p in kept_ax.patches if p.get_label() == "discarded"]
    x0 = span.get_x() if hasattr(span, "get_x") else span.get_xy()[0][0]
    assert x0 == pytest.approx(12 - 0.5)  # image[12:, :] discarded, shown as x >= 12
    for ax in fig.axes:
        assert any(np.allclose(ln.get_xdata(), 11.5) for ln in ax.get_lines())
    full = P.plot_completion(a, 8, b, code_rows=8)  # everything kept: nothing greyed
    assert not [p for p in full.axes[1].patches if p.get_label() == "discarded"]
    with pytest.raises(ValueError, match="must divide the image height"):
        P.plot_completion(a, 3, b, code_rows=7)
    with pytest.raises(ValueError, match="kept_rows=9 must be in 0..8"):
        P.plot_completion(a, 9, b, code_rows=8)


def test_bone_pairs_plot_rates_per_slice_bin():
    from hipgen_utils import judge_plots

    slices = np.array([0, 1, 10, 11])
    fig = judge_plots.plot_bone_pairs({"test": [1, 1, 0, 0], "samples": [0, 2, 0, 0]}, slices, n_bins=2)
    (ax,) = fig.axes
    lines = {ln.get_label(): ln for ln in ax.get_lines()}
    assert np.allclose(lines["test (50% of slices)"].get_ydata(), [1.0, 0.0])
    assert np.allclose(lines["samples (25% of slices)"].get_ydata(), [0.5, 0.0])
    sizes = {"test": [0.02, 0.018, np.nan, np.nan], "samples": [np.nan, 0.012, np.nan, np.nan], "unigram": [np.nan] * 4}
    fig = judge_plots.plot_bone_pairs({"test": [1, 1, 0, 0]}, slices, n_bins=2, sizes=sizes, pixels=1000)
    ticks = [t.get_text() for t in fig.axes[1].get_xticklabels()]
    assert ticks == ["test\n(median 19)", "samples\n(median 12)"]  # the set without a pair has no box
    fig = judge_plots.plot_bone_pairs({"test": [0] * 4}, slices, sizes={"test": [np.nan] * 4})
    assert "no pair" in fig.axes[1].texts[0].get_text()


def test_bone_cortex_plot():
    from hipgen_utils import judge_plots

    values = {"test": np.array([0.4, 0.44, np.nan]), "samples": np.array([0.3, 0.32]), "unigram": np.array([np.nan])}
    fig = judge_plots.plot_bone_cortex(values, gap=0.48)
    labels = [p.get_label() for p in fig.axes[0].patches]
    assert labels == ["test (median 0.42, n=2)", "samples (median 0.31, n=2)"]  # no bone at all: not drawn
    assert "bone_cortex_gap = 0.48" in fig.axes[0].get_title()
    judge_plots.plot_bone_cortex({"test": np.array([np.nan])})  # nothing to draw: an empty plot, no error


def test_temperature_anatomy_plot():
    from hipgen_utils import judge_plots

    rows = [{"temperature": t, "anatomy_gap": g, "bone_pairs_ratio": p, "bone_symmetry": 0.76, "bone_symmetry_test": 0.95}
            for t, g, p in ((0.7, 0.06, 0.6), (1.0, 0.09, 0.25))]  # fmt: skip
    fig = judge_plots.plot_temperature_anatomy(rows)
    a1, a2 = fig.axes
    assert np.allclose(a1.get_lines()[0].get_ydata(), [0.06, 0.09])
    assert not any("cortex" in ln.get_label() for ln in a1.get_lines())  # not measured: not drawn
    assert "top-" not in a1.get_title() and "top-8" in judge_plots.plot_temperature_anatomy(rows, 8).axes[0].get_title()
    with_cortex = judge_plots.plot_temperature_anatomy([dict(r, bone_cortex_gap=c) for r, c in zip(rows, (0.4, 0.5))])
    cortex = [ln for ln in with_cortex.axes[0].get_lines() if ln.get_label().startswith("bone_cortex_gap")]
    assert len(cortex) == 1 and np.allclose(cortex[0].get_ydata(), [0.4, 0.5])
    lines = {ln.get_label(): ln for ln in a2.get_lines()}
    assert np.allclose(lines["slices with both femoral heads"].get_ydata(), [0.6, 0.25])
    assert np.allclose(lines["bone left-right symmetry"].get_ydata(), 0.8)
    assert not any("size" in label for label in lines)  # not measured: not drawn
    sized = judge_plots.plot_temperature_anatomy([dict(r, bone_pair_area_ratio=v) for r, v in zip(rows, (0.8, 0.9))])
    size = [ln for ln in sized.axes[1].get_lines() if ln.get_label().startswith("their size")]
    assert len(size) == 1 and np.allclose(size[0].get_ydata(), [0.8, 0.9])
    both = judge_plots.plot_temperature_anatomy(
        [dict(r, bone_pair_area_ratio=v, bone_pair_area_ratio_by_level=w) for r, v, w in zip(rows, (0.8, 0.9), (0.85, 0.95))]
    )
    level = [ln for ln in both.axes[1].get_lines() if ln.get_label() == "their size, level by level"]
    assert len(level) == 1 and np.allclose(level[0].get_ydata(), [0.85, 0.95])
    with pytest.raises(ValueError, match="no rows"):
        judge_plots.plot_temperature_anatomy([])
