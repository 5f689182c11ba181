"""The `hipgen` command end to end on a tiny HipMRI-layout folder, and its one-line errors."""

import json

import nibabel as nib
import numpy as np
import pytest

from hipgen_utils.cli import main
from hipgen_utils.config import get_profile


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_info_json(trained, capsys):
    root, _ = trained
    code, out, _ = run(capsys, "info", "--data_dir", root, "--json")
    info = json.loads(out)
    assert code == 0 and info["splits"]["train"]["n_files"] == 4
    assert info["splits"]["test"]["shapes"] == {"256x128": 4} and info["splits"]["test"]["labels"] == [0, 1, 2, 3, 4, 5]


def test_train_wrote_checkpoints_and_codes(trained):
    _, run_dir = trained
    assert {"vqvae.pt", "codes.npz", "pixelcnn.pt"} <= {p.name for p in run_dir.iterdir()}


def test_evaluate_json_has_every_metric(trained, capsys):
    root, run_dir = trained
    code, out, _ = run(
        capsys,
        "evaluate",
        "--run_dir",
        run_dir,
        "--data_dir",
        root,
        "--json",
        "--n_samples",
        "4",
        "--device",
        "cpu",
    )
    assert code == 0
    lines = out.strip().splitlines()
    assert len(lines) == 1, "evaluate --json must print exactly one line"
    r = json.loads(lines[0])
    for key in ("ssim_mean", "ssim_median", "ssim_min", "frac_ssim_gt_0_6", "psnr_mean", "perplexity",
                "codes_used", "n_images", "pixelcnn_bits_per_code_test", "unigram_bits_per_code",
                "nn_ssim_median", "frac_near_copies", "fid_samples", "fid_test_vs_train", "fid_unigram",
                "completion_ssim", "completion_ssim_reconstruction", "completion_ssim_unigram",
                "completion_ssim_mirror", "completion_dice", "completion_dice_per_class",
                "completion_dice_mirror", "anatomy_gap", "fid_seg_samples", "fid_seg_test_vs_train",
                "fid_seg_unigram", "segmenter_test_dice", "trusted_classes"):  # fmt: skip
        assert key in r, key
    assert r["n_images"] == 4 and 0 <= r["frac_ssim_gt_0_6"] <= 1 and -1 <= r["ssim_mean"] <= 1
    # samples and completions at the profile's sampling temperature ($HIPGEN_PROFILE, else demo)
    assert r["temperature"] == get_profile().sample.temperature and r["lead_lines"] == 8
    assert r["top_k"] == get_profile().sample.top_k


def test_evaluate_sweeps_the_anatomy_over_temperatures(trained, capsys):
    root, run_dir = trained
    code, out, _ = run(capsys, "evaluate", "--run_dir", run_dir, "--data_dir", root, "--n_samples", "4",
                       "--device", "cpu", "--temperatures", "0.5", "1.5")  # fmt: skip
    assert code == 0
    table = out[out.index("the judge's anatomy against temperature") :].splitlines()
    assert table[1].split()[:2] == ["temperature", "anatomy_gap"] and "empty_samples" in table[1]
    assert [row.split()[0] for row in table[3:5]] == ["0.5", "1.5"] and len(table) == 5
    assert "empty_samples" in out[: out.index("the judge's")]  # the judged temperature's own count
    # a number per set prints on its line; per-class tables are left to --json
    refs = next(line for line in out.splitlines() if line.startswith("empty_references"))
    assert "train 0." in refs and "unigram " in refs
    assert "see --json" in out and "empty_references" not in out[out.index("(per-class tables") :]


def test_evaluate_without_a_prior_says_what_it_skipped(trained, capsys, tmp_path):
    root, run_dir = trained
    for name in ("vqvae.pt", "codes.npz"):
        (tmp_path / name).write_bytes((run_dir / name).read_bytes())
    code, out, err = run(capsys, "evaluate", "--run_dir", tmp_path, "--data_dir", root, "--device", "cpu", "--json")
    r = json.loads(out.strip())
    assert code == 0 and "ssim_mean" in r and "pixelcnn_bits_per_code_test" not in r
    assert "pixelcnn.pt not found" in err and "05_train_pixelcnn" in err


def test_evaluate_seed_seeds_the_judge(trained, capsys, monkeypatch):
    from hipgen_utils import evaluate

    seen = []
    monkeypatch.setattr(evaluate, "judge_prior", lambda *a, **k: (seen.append(a[5].seed), ({}, {}))[1])
    root, run_dir = trained
    for seed in ("0", "3"):
        code, _, _ = run(capsys, "evaluate", "--run_dir", run_dir, "--data_dir", root, "--n_samples", "2",
                         "--device", "cpu", "--seed", seed, "--json")  # fmt: skip
        assert code == 0
    assert seen == [0, 3]


def test_predict_png_and_nifti(trained, capsys, tmp_path):
    _, run_dir = trained
    code, out, err = run(
        capsys,
        "predict",
        "--run_dir",
        run_dir,
        "--n",
        "2",
        "--out",
        tmp_path / "s.png",
        "--device",
        "cpu",
    )
    assert code == 0, err
    assert (tmp_path / "s.png").stat().st_size > 1000
    code, _, err = run(capsys, "predict", "--run_dir", run_dir, "--n", "2", "--slice", "1", "--format", "nii",
                       "--out", tmp_path / "nii", "--device", "cpu")  # fmt: skip
    assert code == 0, err
    files = sorted((tmp_path / "nii").glob("*.nii.gz"))
    assert len(files) == 2
    img = np.asarray(nib.load(files[0]).dataobj)
    assert img.shape == (256, 128) and 0 <= img.min() and img.max() <= 1


def test_predict_lead_lines_draws_them_at_temperature_1(trained, capsys, tmp_path):
    _, run_dir = trained

    def predicted(name, *flags):
        code, _, err = run(capsys, "predict", "--run_dir", run_dir, "--n", "2", "--format", "nii", "--out",
                           tmp_path / name, "--device", "cpu", *flags)  # fmt: skip
        assert code == 0, err
        return np.stack([np.asarray(nib.load(f).dataobj) for f in sorted((tmp_path / name).glob("*.nii.gz"))])

    t1 = predicted("t1", "--temperature", "1", "--lead_lines", "0")
    assert np.array_equal(predicted("all_lead", "--temperature", "0.3", "--lead_lines", "999"), t1)
    assert not np.array_equal(predicted("cold", "--temperature", "0.3", "--lead_lines", "0"), t1)


@pytest.mark.parametrize(
    "argv, message",
    [
        (
            ["predict", "--run_dir", "{run}", "--slice", "99", "--out", "x.png"],
            "--slice 99 out of range",
        ),
        (["predict", "--run_dir", "{run}", "--temperature", "0", "--out", "x.png"], "temperature"),
        (["evaluate", "--run_dir", "{run}", "--temperature", "nan", "--json"], "--temperature nan must be"),
        (["evaluate", "--run_dir", "{run}", "--temperatures", "0.5", "-1"], "--temperature -1.0 must be"),
        (["evaluate", "--run_dir", "{run}", "--temperatures", "0.5", "--no_anatomy"], "drop --no_anatomy"),
        (["predict", "--run_dir", "{run}", "--lead_lines", "-2", "--out", "x.png"], "--lead_lines -2 must be >= 0"),
        (["evaluate", "--run_dir", "{run}", "--lead_lines", "-1", "--json"], "--lead_lines -1 must be >= 0"),
        (["evaluate", "--run_dir", "{run}", "--top_k", "-1", "--json"], "--top_k -1 must be >= 0"),
        (["predict", "--run_dir", "{tmp}", "--out", "x.png"], "run notebooks/02_train_vqvae"),
        (["evaluate", "--run_dir", "{tmp}/nope", "--json"], "does not exist"),
        (["info", "--data_dir", "{tmp}"], "keras_slices_train"),
        (
            [
                "train",
                "--mode",
                "vq_vae",
                "--run_dir",
                "{run}",
                "--data_dir",
                "{root}",
                "--resume",
                "--profile",
                "ci",
                "--n_hiddens",
                "32",
            ],
            "n_hiddens: 16 -> 32",
        ),  # fmt: skip
        (
            ["train", "--mode", "vq_vae", "--run_dir", "{tmp}", "--tables", "false"],
            "--tables does not apply",
        ),
        (
            ["train", "--mode", "pixelcnn", "--run_dir", "{tmp}", "--epochs", "3"],
            "--epochs 3: budgets are counted in updates",
        ),
        (
            ["train", "--mode", "vq_vae", "--run_dir", "{tmp}", "--batch_size", "big"],
            "batch_size='big'",
        ),
    ],
)
def test_errors_are_one_line(trained, capsys, tmp_path, argv, message):
    root, run_dir = trained
    argv = [a.format(run=run_dir, tmp=tmp_path, root=root) for a in argv]
    code, _, err = run(capsys, *argv)
    assert code == 2
    # progress bars may come first; the error itself is one line, with no traceback
    last = err.strip().splitlines()[-1]
    assert last.startswith("hipgen ") and message in last and "Traceback" not in err, err


def test_phantom_command(capsys, tmp_path):
    code, out, err = run(capsys, "phantom", "--out", tmp_path / "ph", "--case_weeks", "2", "1", "1",
                         "--n_slices", "3", "--quiet")  # fmt: skip
    assert code == 0, err
    assert len(list((tmp_path / "ph" / "keras_slices_train").glob("case_*.nii.gz"))) == 6
    code, out, err = run(capsys, "phantom", "--out", tmp_path / "ph2", "--case_weeks", "1", "--workers", "0")
    assert code != 0 and "--workers 0" in err and "Traceback" not in err
