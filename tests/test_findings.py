"""What a run shows (hipgen_utils.findings): sentences from the run's own numbers, which
change their verdict when the numbers do."""

import json

import numpy as np

from hipgen_utils import findings as F


def test_vqvae_verdicts_follow_the_history():
    good = {"step": [100, 200, 300], "seconds": [1, 2, 3], "val_ssim": [0.5, 0.8, 0.9], "codes_used": [400, 450, 480],
            "perplexity": [300, 350, 380]}  # fmt: skip
    lines = F.vqvae(good, 512)
    assert "from 0.500 to 0.900 (above the 0.6 line)" in lines[0] and "healthy codebook" in lines[1]
    assert "still rising" in lines[2]
    bad = {**good, "val_ssim": [0.3, 0.4, 0.4], "codes_used": [30, 20, 10]}
    lines = F.vqvae(bad, 512)
    assert "below the 0.6 line" in lines[0] and "collapsed" in lines[1] and "flat" in lines[2]


def test_ssim_names_where_the_worst_slices_sit():
    per = np.r_[np.full(18, 0.9), 0.2, 0.3]
    slices = np.r_[np.arange(18), 50, 51]
    lines = F.ssim({"ssim_mean": float(per.mean())}, per, slices)
    assert "90% at or above 0.6" in lines[0]
    assert "median slice position of 50, all test slices at 10" in lines[1]


def test_prior_says_learned_or_not_and_overfitting():
    hist = {"step": [10, 20], "epoch": [1, 2], "seconds": [5, 10], "train_bits": [4, 3.0], "val_bits": [4.1, 3.1]}
    lines = F.prior(hist, 8.0, 4.0, 8.0)
    assert "0.50x" in lines[1] and "has learned structure" in lines[1] and "no sign of overfitting" in lines[2]
    over = {**hist, "train_bits": [4, 2.0], "val_bits": [3.0, 3.5]}
    lines = F.prior(over, 8.0, 7.5, 8.0)
    assert "knows little" in lines[1] and "overfitting" in lines[2] and "lowest at update 10" in lines[3]


def test_samples_lines_say_whether_any_temperature_copies():
    report = {"nn_ssim_median": 0.46, "frac_near_copies": 0.0}
    none = F.samples(report, [{"temperature": 0.5, "frac_near_copies": 0.0}, {"temperature": 1.0, "frac_near_copies": 0.0}])
    assert none[-1] == "no near-copies at any of the temperatures 0.5-1"
    some = F.samples(report, [{"temperature": 0.5, "frac_near_copies": 0.02}, {"temperature": 1.0, "frac_near_copies": 0.0}])
    assert some[-1].endswith("peaks at 2.0% (T = 0.5)")


def test_judged_sorts_numbers_into_right_and_wrong():
    report = {"completion_dice": 0.86, "completion_dice_mirror": 0.85, "bone_pairs_ratio": 0.98,
              "bone_pair_area_ratio_by_level": 0.8, "bone_cortex_gap": 0.3, "anatomy_gap": 0.05,
              "spread_ratio_seg": float("nan"), "empty_samples": 0.0}  # fmt: skip
    right, wrong = F.judged(report)
    assert any("Dice 0.860 against the mirror's 0.850" in r for r in right)
    assert any("both femoral heads" in r for r in right) and any("always draws a body" in r for r in right)
    assert any("as big as real ones" in w for w in wrong) and any("cortex" in w for w in wrong)
    assert not any("varies" in x for x in right + wrong)  # NaN: not judged
    worse = {**report, "completion_dice": 0.80}
    assert any("completes" in w for w in F.judged(worse)[1])
    assert F.anatomy({"completion_ssim": 0.4})[0].startswith("completion SSIM 0.400")


def test_course_reads_what_the_notebooks_wrote(tmp_path):
    assert F.course(tmp_path) == ["nothing to sum up yet: run notebooks 01-07 first"]
    (tmp_path / "ssim_test.json").write_text(json.dumps({"ssim_mean": 0.93}))
    (tmp_path / "sample_quality.json").write_text(json.dumps({"frac_near_copies": 0.0}))
    (tmp_path / "anatomy.json").write_text(json.dumps({"anatomy_gap": 0.2, "completion_dice": 0.9,
                                                       "completion_dice_mirror": 0.8}))  # fmt: skip
    lines = F.course(tmp_path, {"val_bits": [4.0, 3.2]})
    assert lines[0].endswith("test SSIM 0.930") and "3.200 validation bits" in lines[1]
    assert any(x.startswith("gets right: completes") for x in lines)
    assert any(x.startswith("still gets wrong:") and "anatomy_gap 0.2" in x for x in lines)


def test_data_and_codes_lines(tmp_path):
    info = {"root": str(tmp_path), "splits": {"train": {"shapes": {"256x128": 3, "256x144": 1, "256x128x1": 2}}}}
    splits = {"train": type("S", (), {"labels": None, "__len__": lambda self: 4})()}
    lines = F.data(info, splits)
    assert str(tmp_path) in lines[0] and "'256x144': 1}" in lines[1] and "256x128x1" not in lines[1] and "SSIM only" in lines[2]
    grids = {f"codes_{s}": np.zeros((2, 64, 32), np.int16) for s in ("train", "validate", "test")}
    grids["n_embeddings"] = 512
    lines = F.codes(grids, {"codes_used": 100, "perplexity": 50.0}, 0.0)
    assert "6 slices became 64x32 grids" in lines[0] and "exactly" in lines[2]
    assert "differs" in F.codes(grids, {"codes_used": 1, "perplexity": 1.0}, 0.5)[2]
