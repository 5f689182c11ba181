"""The anatomy judge (hipgen_utils.judge) and its segmenter (hipgen_utils.segmenter).

Pure-function tests on phantom labels, plus the whole judge on the tiny trained run
(conftest `trained`): completion with the true codes equals the reconstruction's score, a
missing label folder gives one line, a segmenter trained on other classes is retrained."""

import shutil

import numpy as np
import pytest
import torch

from hipgen_utils import judge, judge_stats, segmenter
from hipgen_utils.config import JudgeConfig
from hipgen_utils.phantom import phantom_slice, sample_case, sample_week

BONES = 2


def phantom_labels(case_seed: int, slices) -> np.ndarray:
    rng = np.random.default_rng(case_seed)
    case = sample_case(rng)
    week = sample_week(rng, case)
    return np.stack([phantom_slice(case, week, s, 60)[1] for s in slices])


@pytest.fixture(scope="module")
def real_sets():
    slices = list(range(8, 52, 3))  # bones (femoral heads, pelvis) at most of these levels
    return {name: phantom_labels(seed, slices) for name, seed in (("test", 1), ("train", 2), ("samples", 3))}


def blob_labels(n, shape=(256, 128), seed=0) -> np.ndarray:
    """'Unigram-like' label images: a body ellipse filled with random blobs of every class."""
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    out = []
    for _ in range(n):
        body = ((yy - 128) / 110) ** 2 + ((xx - 64) / 55) ** 2 < 1
        noise = gaussian_filter(rng.standard_normal(shape), 3)
        lab = np.digitize(noise, np.quantile(noise, [0.55, 0.8, 0.9, 0.95])).astype(np.uint8) + 1
        out.append(np.where(body, lab, 0).astype(np.uint8))
    return np.stack(out)


def test_symmetry_of_a_mirrored_mask_is_one_and_of_a_one_sided_mask_near_zero():
    m = np.zeros((256, 128), bool)
    m[30:60, 40:70] = True  # a "femoral head" on the left
    both = m | m[::-1]
    assert judge_stats.symmetry(both) == pytest.approx(1.0)
    body = np.zeros_like(m)
    body[20:236, 10:118] = True  # midline at row 127.5
    assert judge_stats.symmetry(m, judge_stats.body_midline(body)) < 0.05
    assert np.isnan(judge_stats.symmetry(np.zeros_like(m)))


def test_mirror_about_an_off_centre_midline():
    a = np.zeros((10, 3), int)
    a[2] = 1
    out = judge_stats.mirror_lr(a, centre=4.0)  # row 2 -> row 6
    assert out[6].all() and out.sum() == 3


def test_components_ignore_specks():
    m = np.zeros((64, 64), bool)
    m[5:15, 5:15] = True
    m[40:50, 40:50] = True
    m[30, 30] = True  # a speck
    assert judge_stats.n_components(m) == 2


def test_anatomy_gap_is_near_zero_for_real_slices_and_near_one_for_unigram_like(real_sets):
    classes = [1, BONES, 3]
    stats = {k: judge_stats.anatomy_stats(v, classes) for k, v in real_sets.items()}
    stats["unigram"] = judge_stats.anatomy_stats(blob_labels(len(real_sets["test"]), seed=0), classes)
    gap_real, terms = judge_stats.anatomy_gap(stats, classes)
    assert gap_real < 0.2, terms
    # samples drawn like the ceiling (another draw of blobs) score about 1
    stats["samples"] = judge_stats.anatomy_stats(blob_labels(len(real_sets["test"]), seed=1), classes)
    gap_uni, terms = judge_stats.anatomy_gap(stats, classes)
    assert gap_uni > 0.7, terms
    # and one-sided bones (the right femur missing) move the bone terms
    one_sided = real_sets["samples"].copy()
    one_sided[:, 128:][one_sided[:, 128:] == BONES] = 1
    stats["samples"] = judge_stats.anatomy_stats(one_sided, classes)
    _, terms = judge_stats.anatomy_gap(stats, classes)
    assert terms[f"{BONES}/symmetry"]["term"] > 0.5


def disc(shape, centre, radius) -> np.ndarray:
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return (yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 <= radius**2


def test_round_pairs_count_mirrored_round_components_only():
    shape, mid = (256, 128), 127.5
    left, right = disc(shape, (50, 64), 13), disc(shape, (205, 64), 13)  # femoral heads at +-77.5
    assert judge_stats.round_pairs(left | right, mid) == 1
    assert judge_stats.round_pairs(left, mid) == 0  # one-sided
    assert judge_stats.round_pairs(left | disc(shape, (205, 90), 13), mid) == 0  # partner 26 px off in AP
    assert judge_stats.round_pairs(left | disc(shape, (205, 64), 6), mid) == 0  # areas 4.7x apart
    bars = np.zeros(shape, bool)
    bars[30:70, 60:66] = bars[185:225, 60:66] = True  # mirrored, but elongated (pubic-rami-like)
    assert judge_stats.round_pairs(bars, mid) == 0
    ragged = (left | right) & (np.random.default_rng(0).random(shape) > 0.3)  # blobs full of holes
    assert judge_stats.round_pairs(ragged, mid) == 0
    assert judge_stats.round_pairs(np.zeros(shape, bool), mid) == 0 and judge_stats.round_pairs(left | right, None) == 0


def test_paired_areas_are_the_sizes_of_the_paired_components_only():
    shape, mid = (256, 128), 127.5
    left, right = disc(shape, (50, 64), 13), disc(shape, (205, 64), 11)
    assert judge_stats.paired_areas(left | right, mid) == [float(left.sum()), float(right.sum())]
    assert judge_stats.paired_areas(left | right | disc(shape, (128, 20), 12), mid) == [float(left.sum()), float(right.sum())]
    assert judge_stats.paired_areas(left, mid) == [] and judge_stats.paired_areas(left | right, None) == []


def test_bone_pair_area_ratio_sees_femoral_heads_drawn_too_small():
    """At the femoral heads' levels, heads drawn on both sides but smaller (the bone mask
    eroded 2 px) still count as pairs in most slices; `bone_pair_area_ratio` falls well below
    1, while another real case scores near 1."""
    from scipy.ndimage import binary_erosion

    classes, slices = [1, BONES, 3], list(range(0, 14, 2))
    sets = {"test": phantom_labels(1, slices), "train": phantom_labels(2, slices),
            "samples": phantom_labels(3, slices), "unigram": blob_labels(len(slices))}  # fmt: skip
    stats = {k: judge_stats.anatomy_stats(v, classes) for k, v in sets.items()}
    real = judge_stats.bone_pairs(judge_stats.anatomy_table(stats, classes), classes)
    assert 0.85 < real["bone_pair_area_ratio"] < 1.15
    assert np.isnan(real["bone_pair_area"]["unigram"])  # no pair of round bones among the blobs
    small = sets["samples"].copy()
    for lab in small:
        bone = lab == BONES
        lab[bone & ~binary_erosion(bone, iterations=2)] = 1
    shrunk_stats = dict(stats, samples=judge_stats.anatomy_stats(small, classes))
    shrunk = judge_stats.bone_pairs(judge_stats.anatomy_table(shrunk_stats, classes), classes)
    assert shrunk["bone_pairs_ratio"] >= 0.5 and shrunk["bone_pair_area_ratio"] < 0.8
    assert shrunk["bone_pair_area"]["test"] == real["bone_pair_area"]["test"]
    row = judge_stats.sweep_row(1.0, shrunk_stats, classes, [0, *classes])
    assert row["bone_pair_area_ratio"] == pytest.approx(shrunk["bone_pair_area_ratio"]) and "bone_pair_area" not in row
    no_right = sets["samples"].copy()
    no_right[:, 128:][no_right[:, 128:] == BONES] = 1
    one_sided = dict(stats, samples=judge_stats.anatomy_stats(no_right, classes))
    assert np.isnan(judge_stats.bone_pairs(judge_stats.anatomy_table(one_sided, classes), classes)["bone_pair_area_ratio"])


def test_level_matched_area_ratio_separates_smaller_heads_from_missing_levels():
    """Samples that draw every pair as big as the test slices at its level, but miss the
    levels whose pairs are large, lower the pooled median ratio (to 0.75) and not the
    level-matched one; heads drawn smaller at every level lower both."""
    counts = [4, 4, 8, 4]
    slices = np.repeat([0, 10, 20, 30], counts)
    test = np.repeat([0.010, 0.012, 0.020, np.nan], counts)  # larger heads at slice 20, none at 30
    missing = test.copy()
    missing[slices == 20] = [0.02] + [np.nan] * 7  # one pair of the eight drawn there
    assert judge_stats.level_matched_area_ratio(missing, test, slices) == pytest.approx(1.0)
    assert np.nanmedian(missing) / np.nanmedian(test) == pytest.approx(0.75)
    assert judge_stats.level_matched_area_ratio(0.7 * test, test, slices) == pytest.approx(0.7)
    # weighted by the test slices' pairs: a level drawn at half size with 1 of 4 test pairs
    uneven = test.copy()
    uneven[slices == 0] = [0.010, np.nan, np.nan, np.nan]
    half = np.where(slices == 0, 0.005, uneven)
    assert judge_stats.level_matched_area_ratio(half, uneven, slices) == pytest.approx((1 * 0.5 + 4 + 8) / 13)
    assert np.isnan(judge_stats.level_matched_area_ratio(np.full(20, np.nan), test, slices))
    assert np.isnan(judge_stats.level_matched_area_ratio(np.where(slices == 30, 0.01, np.nan), test, slices))
    with pytest.raises(ValueError, match="3 samples at 20 positions"):
        judge_stats.level_matched_area_ratio(test[:3], test, slices)
    # another set at its own positions (a real reference): binned by the test positions,
    # whatever its order and length; positions outside the test slices' range count nowhere
    order = np.random.default_rng(0).permutation(len(slices))
    other = np.concatenate([0.9 * test[order], [5.0, 5.0]])
    at = np.concatenate([slices[order], [-7, 99]])
    assert judge_stats.level_matched_area_ratio(other, test, slices, sample_slices=at) == pytest.approx(0.9)
    # (read at the test slices' own positions instead, the shuffled sizes land in the wrong bins)
    assert abs(judge_stats.level_matched_area_ratio(other[:-2], test, slices) - 0.9) > 0.05
    with pytest.raises(ValueError, match="22 samples at 20 positions"):
        judge_stats.level_matched_area_ratio(other, test, slices, sample_slices=slices)


def test_bone_pairs_rate_finds_femoral_heads_at_their_levels_and_fails_without_them(real_sets):
    classes = [1, BONES, 3]
    test = real_sets["test"]
    stats = judge_stats.anatomy_stats(test, classes)
    assert stats[BONES]["pairs"].max() == 1 and 0 < (stats[BONES]["pairs"] > 0).mean() < 1
    no_right = test.copy()  # the right femoral head (and every bone right of the midline) gone
    no_right[:, 128:][no_right[:, 128:] == BONES] = 1
    sets = {"test": test, "train": real_sets["train"], "samples": no_right, "unigram": blob_labels(len(test))}
    table = judge_stats.anatomy_table({k: judge_stats.anatomy_stats(v, classes) for k, v in sets.items()}, classes)
    out = judge_stats.bone_pairs(table, classes)
    assert out["bone_pairs_ratio"] == 0.0 and out["bone_pairs"]["test"] > 0
    sets["samples"] = real_sets["samples"]  # another real case: about as many pairs as the test slices
    table = judge_stats.anatomy_table({k: judge_stats.anatomy_stats(v, classes) for k, v in sets.items()}, classes)
    assert 0.5 < judge_stats.bone_pairs(table, classes)["bone_pairs_ratio"] < 2
    assert judge_stats.bone_pairs(table, [1, 3]) == {}  # bones not trusted: no number


def phantom_images(case_seed: int, slices) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(case_seed)
    case = sample_case(rng)
    week = sample_week(rng, case)
    pairs = [phantom_slice(case, week, s, 60) for s in slices]
    return np.stack([p[0] for p in pairs]).astype(np.float32), np.stack([p[1] for p in pairs])


def test_cortex_contrast_sees_the_dark_rim_of_real_bone_and_not_a_blurred_blob():
    from scipy.ndimage import gaussian_filter

    images, labels = phantom_images(1, [4, 20, 40])
    real = [judge_stats.cortex_contrast(i, lab == BONES) for i, lab in zip(images, labels)]
    assert min(real) > 0.3, real  # marrow (0.6) inside a cortex (0.03)
    blurred = [judge_stats.cortex_contrast(gaussian_filter(i, 2.5), lab == BONES) for i, lab in zip(images, labels)]
    assert max(b - r for b, r in zip(blurred, real)) < -0.1, (real, blurred)
    m = disc((256, 128), (60, 64), 12)
    flat = np.where(m, 0.6, 0.27)  # a uniform blob in muscle: no cortex
    assert abs(judge_stats.cortex_contrast(flat, m)) < 1e-9
    ring = np.where(m & ~disc((256, 128), (60, 64), 10), 0.03, flat)  # the same blob with a dark rim
    assert judge_stats.cortex_contrast(ring, m) > 0.5
    assert np.isnan(judge_stats.cortex_contrast(flat, np.zeros_like(m)))  # no bone
    assert np.isnan(judge_stats.cortex_contrast(flat, disc((256, 128), (60, 64), 3)))  # too small for a core


def test_bone_cortex_gap_is_near_zero_for_real_slices_and_high_for_blurred_bones():
    """The numbers the eye agrees with: another patient's slices score as real, the same
    slices with the cortex blurred away score far off, whatever their labels say."""
    from scipy.ndimage import gaussian_filter

    slices = list(range(0, 52, 3))
    sets = {name: phantom_images(seed, slices) for name, seed in (("test", 1), ("train", 2), ("samples", 3))}
    smeared = np.stack([gaussian_filter(i, 4) for i in sets["samples"][0]])
    sets["unigram"] = smeared, blob_labels(len(slices))  # the ceiling: blobs on smeared images
    classes = [1, BONES, 3]
    stats = {k: judge_stats.anatomy_stats(lab, classes, 0, img) for k, (img, lab) in sets.items()}
    real = judge_stats.bone_cortex(stats, classes)
    assert real["bone_cortex_gap"] < 0.25, real
    assert real["bone_cortex"]["unigram"] < real["bone_cortex"]["test"] - 0.1
    blurred = [gaussian_filter(i, 2) for i in sets["samples"][0]]  # bones with their labels, no cortex
    stats["samples"] = judge_stats.anatomy_stats(sets["samples"][1], classes, 0, blurred)
    worse = judge_stats.bone_cortex(stats, classes)
    assert worse["bone_cortex_gap"] > 0.5, worse
    # the mask statistics cannot tell: the labels are the same
    same = judge_stats.anatomy_gap(dict(stats, samples=judge_stats.anatomy_stats(sets["samples"][1], classes)), classes)[0]
    assert np.isfinite(same) and judge_stats.anatomy_gap(stats, classes)[0] == pytest.approx(same)
    no_bones = np.where(sets["samples"][1] == BONES, 1, sets["samples"][1])  # samples that never draw bone
    gone = judge_stats.bone_cortex(dict(stats, samples=judge_stats.anatomy_stats(no_bones, classes, 0, blurred)), classes)
    assert np.isnan(gone["bone_cortex"]["samples"]) and gone["bone_cortex_gap"] > 1  # past the ceiling, not "real"
    table = judge_stats.anatomy_table(stats, classes)
    assert table["samples"][str(BONES)]["cortex_median"] == pytest.approx(worse["bone_cortex"]["samples"])
    assert "cortex_median" not in table["samples"]["1"]  # bones only
    assert judge_stats.bone_cortex(stats, [1, 3]) == {}  # bones not trusted: no number
    no_images = {k: judge_stats.anatomy_stats(lab, classes) for k, (_, lab) in sets.items()}
    assert judge_stats.bone_cortex(no_images, classes) == {} and "cortex" not in no_images["test"][BONES]
    row = judge_stats.sweep_row(0.7, stats, classes, [0, *classes])
    assert row["bone_cortex_gap"] == pytest.approx(worse["bone_cortex_gap"])
    with pytest.raises(ValueError, match="2 images for"):
        judge_stats.anatomy_stats(sets["test"][1], classes, 0, sets["test"][0][:2])


def test_empty_fraction_counts_samples_without_a_body(real_sets):
    """A sample with no body drawn (or a sliver of one) is counted; real slices, and real
    slices with one organ or bone missing, are not."""
    test, samples = real_sets["test"], real_sets["samples"].copy()
    assert judge_stats.empty_fraction(samples, test) == 0.0 and judge_stats.empty_fraction(test, test) == 0.0
    no_bones = np.where(samples == BONES, 1, samples)  # a body without bones is still a body
    assert judge_stats.empty_fraction(no_bones, test) == 0.0
    samples[0] = 0  # blank
    samples[1, :, 20:] = 0  # a sliver: the first 20 of 128 columns only
    assert judge_stats.empty_fraction(samples, test) == pytest.approx(2 / len(samples))
    assert judge_stats.foreground_area(np.zeros((3, 4, 4)))[0] == 0.0


def test_sweep_row_reads_the_bones_of_the_samples_only(real_sets):
    classes = [1, BONES, 3]
    stats = {k: judge_stats.anatomy_stats(v, classes) for k, v in real_sets.items()}
    stats["unigram"] = judge_stats.anatomy_stats(blob_labels(len(real_sets["test"])), classes)
    real = judge_stats.sweep_row(1.0, stats, classes, [0, *classes])
    one_sided = real_sets["samples"].copy()
    one_sided[:, 128:][one_sided[:, 128:] == BONES] = 1
    worse = judge_stats.sweep_row(0.5, dict(stats, samples=judge_stats.anatomy_stats(one_sided, classes)), classes, [0, *classes])
    assert real["temperature"] == 1.0 and 0.5 < real["bone_pairs_ratio"] < 2 and worse["bone_pairs_ratio"] == 0
    assert worse["bone_symmetry"] < 0.1 < 0.8 < real["bone_symmetry"] and worse["anatomy_gap"] > real["anatomy_gap"]
    assert real["bone_symmetry_test"] == worse["bone_symmetry_test"]


def test_dice_per_class_in_a_region():
    t = np.zeros((1, 8, 8), np.uint8)
    t[0, :, :4] = 2
    p = t.copy()
    p[0, 4:] = 0  # wrong in the lower half only
    region = np.zeros((8, 8), bool)
    region[:4] = True
    assert segmenter.dice_per_class(p, t, [2], region)[2] == pytest.approx(1.0)
    assert segmenter.dice_per_class(p, t, [2])[2] == pytest.approx(2 * 16 / (16 + 32))
    assert np.isnan(segmenter.dice_per_class(p, t, [3])[3])  # absent everywhere


def test_mirror_completion_reflects_the_kept_half():
    img = np.zeros((8, 4), np.float32)
    img[1] = 1.0
    completed = np.zeros((8, 4), bool)
    completed[4:] = True
    out = judge_stats.mirror_completion(img, completed)
    assert out[6].all() and out[1].all() and out.sum() == 8


def test_unet_shapes_and_features():
    net = segmenter.UNet(6, base=4, levels=3)
    x = torch.rand(2, 1, 64, 32)
    assert net(x).shape == (2, 6, 64, 32)
    f = segmenter.bottleneck_features(net, np.random.rand(3, 64, 32).astype(np.float32))
    assert f.shape == (3, 32 * 8)


# ----------------------------------------------------------------------------- on a trained run

CI_JUDGE = JudgeConfig(seg_base_channels=4, seg_patch=32, seg_batch_size=4, seg_n_updates=3,
                       n_completion=3, completion_seeds=2, n_anatomy=4, seg_bf16=False)  # fmt: skip


def test_matched_train_keeps_positions_and_avoids_the_excluded():
    slices = np.repeat(np.arange(5), 4)  # 4 train slices at each of 5 positions
    a = judge_stats._matched_train(slices, [0, 1, 4, 4], seed=0)
    b = judge_stats._matched_train(slices, [0, 1, 4, 4], seed=1, exclude=a)
    assert slices[a].tolist() == slices[b].tolist() == [0, 1, 4, 4]
    assert not set(a) & set(b)
    # a position whose slices are all excluded falls back to that position's slices
    c = judge_stats._matched_train(slices, [2], seed=0, exclude=np.flatnonzero(slices == 2))
    assert slices[c].tolist() == [2]


def test_anatomy_sets_sit_at_the_test_positions_in_their_order():
    test_slices = np.array([5, 6, 7, 0, 1, 2, 5, 6, 7, 0, 1, 2])  # case-weeks one after another
    train_slices = np.tile(np.arange(8), 6)
    t_idx, tr_idx = judge_stats.anatomy_index(test_slices, train_slices, 8, seed=0)
    assert len(t_idx) == len(tr_idx) == 8 and len(set(t_idx)) == 8
    assert train_slices[tr_idx].tolist() == test_slices[t_idx].tolist()
    assert judge_stats.anatomy_index(test_slices, train_slices, 8, seed=0)[1].tolist() == tr_idx.tolist()  # seeded


def test_judge_report_keys_and_true_codes_score_like_the_reconstruction(trained_parts, monkeypatch, tmp_path):
    prior, vq, codes, splits, _ = trained_parts
    # every class trusted (the tiny segmenter reaches no Dice a real run would trust), so
    # that the bones' numbers are computed too
    real_ensure = segmenter.ensure_segmenter

    def trusted_segmenter(*args, **kwargs):
        model, ckpt = real_ensure(*args, **kwargs)
        return model, {**ckpt, "test_dice": {c: 1.0 for c in ckpt["classes"]}}

    monkeypatch.setattr(judge, "ensure_segmenter", trusted_segmenter)
    summary, arrays = judge.judge_prior(prior, vq, codes, splits, tmp_path, CI_JUDGE, temperatures=(0.5, 1.0))
    monkeypatch.undo()
    assert [r["temperature"] for r in summary["temperature_sweep"]] == [0.5, 1.0]
    same = summary["temperature_sweep"][1]["anatomy_gap"]  # T = 1 reuses the samples scored above
    assert same == summary["anatomy_gap"] or (np.isnan(same) and np.isnan(summary["anatomy_gap"]))
    for key in ("completion_ssim", "completion_ssim_reconstruction", "completion_ssim_unigram",
                "completion_ssim_mirror", "completion_dice", "completion_dice_reconstruction",
                "completion_dice_unigram", "completion_dice_mirror", "anatomy_gap", "fid_seg_samples",
                "fid_seg_test_vs_train", "fid_seg_unigram", "segmenter_test_dice", "trusted_classes",
                "empty_samples", "empty_references", "fid_seg_train_samples", "fid_seg_train_floor",
                "fid_seg_train_unigram", "spread_ratio_seg"):  # fmt: skip
        assert key in summary, key
    assert summary["n_train_reference_seg"] == summary["n_anatomy"]  # equal sets: floor, samples, ceiling
    assert summary["lead_lines"] == 0  # the default: every line at the temperature
    assert all(0 <= r["empty_samples"] <= 1 for r in summary["temperature_sweep"])
    assert summary["temperature_sweep"][1]["empty_samples"] == summary["empty_samples"]
    assert summary["completion_kept_half"] == "left"
    assert BONES in summary["trusted_classes"]  # so the bones' numbers are there, the cortex with the decoder's best
    assert {"test", "samples", "train", "unigram", "reconstruction"} <= set(summary["bone_cortex"])
    assert "bone_cortex_gap" in summary and "bone_cortex_gap" in summary["temperature_sweep"][0]
    assert "bone_pairs_ratio" in summary
    assert {"test", "samples", "train", "reconstruction"} <= set(summary["bone_pair_area"])
    assert len(arrays["bone_pair_area_reconstruction"]) == summary["n_anatomy"]
    assert "bone_pair_area_ratio_by_level" in summary
    assert set(summary["bone_pair_area_ratio_by_level_references"]) == {"train", "reconstruction"}
    # every set at the same positions, in the same order (the figure of pairs by position reads them so)
    assert np.asarray(splits["train"].slice)[arrays["train_index"]].tolist() == arrays["slices"].tolist()
    assert len(arrays["sets"]["train"]) == len(arrays["sets"]["samples"]) == len(arrays["slices"])
    assert "bone_pair_area_ratio_by_level" in summary["temperature_sweep"][0]
    same = summary["temperature_sweep"][1]["bone_pair_area_ratio_by_level"]
    assert same == summary["bone_pair_area_ratio_by_level"] or (np.isnan(same) and np.isnan(summary["bone_pair_area_ratio_by_level"]))
    assert (tmp_path / segmenter.SEGMENTER_FILE).is_file()
    assert len(arrays["completion_prior"]) == 2 * summary["completion_n_slices"]

    # a "prior" that completes with the true codes scores exactly what the reconstruction does
    from hipgen_utils.codes import decode_codes

    true = codes["codes_test"][arrays["completion_index"]].astype(np.int64)

    def true_completion(prior, vqvae, n, **kw):
        if kw.get("prefix") is None:  # the anatomy part's unconditional samples
            return None, decode_codes(vqvae, codes["codes_test"][:n].astype(np.int64))
        return true, decode_codes(vqvae, true)

    monkeypatch.setattr(judge, "generate", true_completion)
    cheat, _ = judge.judge_prior(prior, vq, codes, splits, tmp_path, CI_JUDGE)
    assert cheat["completion_ssim"] == pytest.approx(cheat["completion_ssim_reconstruction"])
    if np.isfinite(cheat["completion_dice_reconstruction"]):
        assert cheat["completion_dice"] == pytest.approx(cheat["completion_dice_reconstruction"])


def test_judge_samples_and_completes_among_the_top_k(trained_parts, tmp_path):
    """top_k reaches every draw of the judge: with k = 1 (the likeliest code everywhere) the
    two completion seeds draw the same completions, where without it they differ."""
    prior, vq, codes, splits, _ = trained_parts
    greedy, arrays = judge.judge_prior(prior, vq, codes, splits, tmp_path, CI_JUDGE, top_k=1)
    n = greedy["completion_n_slices"]
    assert greedy["top_k"] == 1 and np.array_equal(arrays["completion_prior"][:n], arrays["completion_prior"][n:])
    free, arrays = judge.judge_prior(prior, vq, codes, splits, tmp_path, CI_JUDGE)
    assert free["top_k"] == 0 and not np.array_equal(arrays["completion_prior"][:n], arrays["completion_prior"][n:])


def test_missing_labels_print_one_line_and_the_rest_runs(trained_parts, tmp_path, capsys):
    from dataclasses import replace

    prior, vq, codes, splits, _ = trained_parts
    no_labels = {k: replace(v, labels=None) for k, v in splits.items()}
    summary, _ = judge.judge_prior(prior, vq, codes, no_labels, tmp_path, CI_JUDGE)
    out = capsys.readouterr().out.strip().splitlines()
    assert any(line.startswith("anatomy check skipped: no label folders") for line in out)
    assert "completion_ssim" in summary and "anatomy_gap" not in summary


def test_segmenter_is_cached_and_retrained_when_the_classes_change(trained_parts, tmp_path):
    from dataclasses import replace

    _, _, _, splits, _ = trained_parts
    first = segmenter.ensure_segmenter(splits, CI_JUDGE, tmp_path, progress=False)
    stamp = (tmp_path / segmenter.SEGMENTER_FILE).stat().st_mtime_ns
    again = segmenter.ensure_segmenter(splits, CI_JUDGE, tmp_path, progress=False)
    assert (tmp_path / segmenter.SEGMENTER_FILE).stat().st_mtime_ns == stamp
    assert again[1]["classes"] == first[1]["classes"]
    # other segmenter settings: retrained
    from dataclasses import replace as dc_replace

    _, ckpt = segmenter.ensure_segmenter(splits, dc_replace(CI_JUDGE, seg_n_updates=2), tmp_path, progress=False)
    assert ckpt["updates"] == 2
    # labels with another class set: retrained, and the new classes are stored
    train = splits["train"]
    relabelled = np.where(np.asarray(train.labels) > 0, 7, 0).astype(np.uint8)
    other = {"train": replace(train, labels=relabelled),
             "test": replace(splits["test"], labels=np.where(np.asarray(splits["test"].labels) > 0, 7, 0).astype(np.uint8))}  # fmt: skip
    _, ckpt = segmenter.ensure_segmenter(other, CI_JUDGE, tmp_path, progress=False)
    assert ckpt["classes"] == [0, 7]
    shutil.rmtree(tmp_path)


def test_segmenter_learns_the_phantom():
    """A small segmenter, seconds of training on 16 phantom slices, labels held-out slices:
    the body and the bones are found (the demo's 600 updates reach Dice 0.98 / 0.95 / 0.91 on
    body / bones / bladder; see the README)."""
    from types import SimpleNamespace

    rng = np.random.default_rng(0)
    images, labels = [], []
    for case_seed in (11, 12, 13):
        crng = np.random.default_rng(case_seed)
        case = sample_case(crng)
        week = sample_week(crng, case)
        for s in range(6, 54, 6):
            img, lab = phantom_slice(case, week, s, 60, rng=rng)
            images.append(img / max(float(img.max()), 1e-6))
            labels.append(lab)
    images, labels = np.stack(images).astype(np.float32), np.stack(labels)
    train = SimpleNamespace(images=images[:16], labels=labels[:16], split="train", paths=[])
    cfg = JudgeConfig(seg_base_channels=8, seg_patch=96, seg_batch_size=8, seg_n_updates=120,
                      seg_learning_rate=5e-3)  # fmt: skip
    model, info = segmenter.train_segmenter(train, cfg, progress=False)
    pred = segmenter.segment(model, images[16:], info["classes"])
    dice = segmenter.dice_per_class(pred, labels[16:], info["classes"])
    assert dice[1] > 0.9 and dice[BONES] > 0.5, dice
