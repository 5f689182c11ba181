"""Faults a new user runs into (issue 10; issue 30: a full disk, a read-only folder, a
mistyped or copied run directory): every one is refused in one line with exit status 2,
or handled, and nothing trained is lost or left half-written.

Table-driven, through the CLI in-process (`hipgen_utils.cli.main`); the run-directory lock
and the overwrite refusal are also tested with real processes (a second concurrent train,
a SIGKILLed trainer). ci profile, tiny data: seconds each."""

from __future__ import annotations

import builtins
import errno
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TINY_PRIOR, TINY_VQ, smooth_image, write_nifti

from hipgen_utils import config as C
from hipgen_utils import data
from hipgen_utils.checkpoints import CheckpointError, load_checkpoint
from hipgen_utils.cli import MAX_PREDICT, main
from hipgen_utils.codes import load_codes
from hipgen_utils.rundir import LOCK_FILE
from hipgen_utils.training import train_vqvae


def cli(capsys, *argv):
    """(exit code, stdout, stderr) of `hipgen ARGV` run in this process."""
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code, err, message):
    assert code == 2, err
    last = err.strip().splitlines()[-1]  # progress bars may come first
    assert last.startswith("hipgen ") and message in last and "Traceback" not in err, err


@pytest.fixture
def run_copy(trained, tmp_path):
    """A private copy of the shared trained run (VQ-VAE 4 updates, prior 1 update)."""
    root, run = trained
    copy = tmp_path / "run"
    shutil.copytree(run, copy, ignore=shutil.ignore_patterns(LOCK_FILE, "replaced-*"))
    return root, copy


def vq_train(run, root, *extra):
    return ["train", "--mode", "vq_vae", "--run_dir", run, "--data_dir", root, *TINY_VQ, *extra]


def prior_train(run, *extra):
    return ["train", "--mode", "pixelcnn", "--run_dir", run, *TINY_PRIOR, *extra]


# ----------------------------------------------------------------- 1. overwrite


def test_training_again_refuses_to_overwrite_a_trained_run(run_copy, capsys):
    root, run = run_copy
    before = (run / "vqvae.pt").read_bytes()
    code, _, err = cli(capsys, *vq_train(run, root))
    assert_one_line_error(code, err, "already holds a trained VQ-VAE (4 updates); pass --resume to continue or --overwrite")
    code, _, err = cli(capsys, *prior_train(run))
    assert_one_line_error(code, err, "already holds a trained PixelCNN prior (1 updates); pass --resume")
    assert (run / "vqvae.pt").read_bytes() == before


def test_a_refused_vqvae_training_loads_no_data(run_copy, capsys, monkeypatch):
    root, run = run_copy

    def no_data(*a, **k):
        raise AssertionError("the data was loaded before the refusal")

    monkeypatch.setattr("hipgen_utils.pipeline.load_splits", no_data)
    code, _, err = cli(capsys, *vq_train(run, root))
    assert_one_line_error(code, err, "already holds a trained VQ-VAE (4 updates); pass --resume")


def test_overwrite_moves_the_run_and_everything_computed_from_it_aside(run_copy, capsys):
    root, run = run_copy
    (run / "sample_quality.json").write_text("{}")
    (run / "ssim_test.json").write_text("{}")
    (run / "segmenter.pt").write_bytes(b"trained on the data alone")
    code, out, err = cli(capsys, *vq_train(run, root, "--overwrite"))
    assert code == 0, err
    (aside,) = run.glob("replaced-*")
    assert {p.name for p in aside.iterdir()} == {"vqvae.pt", "codes.npz", "pixelcnn.pt", "sample_quality.json", "ssim_test.json"}
    assert [line for line in out.splitlines() if "moved" in line] == [
        f"--overwrite: moved codes.npz, pixelcnn.pt, sample_quality.json, ssim_test.json, vqvae.pt to {aside}"
    ]
    assert (run / "vqvae.pt").exists() and not (run / "pixelcnn.pt").exists() and not (run / "codes.npz").exists()
    assert (run / "segmenter.pt").exists()  # same data: the segmenter still fits


def test_an_unreadable_checkpoint_is_moved_aside_only_when_asked(run_copy, capsys):
    root, run = run_copy
    (run / "vqvae.pt").write_bytes(b"garbage")
    (run / "segmenter.pt").write_bytes(b"trained on the data alone")
    code, _, err = cli(capsys, *vq_train(run, root))
    assert_one_line_error(code, err, "holds an unreadable vqvae.pt; pass --overwrite to start again")
    code, _, err = cli(capsys, *vq_train(run, root, "--overwrite"))
    assert code == 0, err
    (aside,) = run.glob("replaced-*")  # data unknown: the segmenter goes too
    assert {p.name for p in aside.iterdir()} == {"vqvae.pt", "codes.npz", "pixelcnn.pt", "segmenter.pt"}


def test_prior_overwrite_moves_its_scores_and_keeps_the_vqvae(run_copy, capsys):
    _, run = run_copy
    (run / "temperature_sweep.json").write_text("[]")
    code, _, err = cli(capsys, *prior_train(run, "--overwrite"))
    assert code == 0, err
    (aside,) = run.glob("replaced-*")
    assert {p.name for p in aside.iterdir()} == {"pixelcnn.pt", "temperature_sweep.json"}
    assert (run / "pixelcnn.pt").exists() and (run / "codes.npz").exists()


def test_notebooks_reuse_a_finished_run_and_retrain_only_when_asked(tmp_path, capsys):
    """Notebook 02/05's rule: resume=not RETRAIN, overwrite=RETRAIN."""
    imgs = np.random.default_rng(0).random((8, 32, 16), dtype=np.float32)
    cfg = C.override(C.get_profile("ci").vqvae, n_updates=2, log_interval=2, batch_size=4, val_images=4, crop=0,
                     device="cpu")  # fmt: skip
    train_vqvae(cfg, imgs, imgs, tmp_path, resume=True, progress=False)
    first = load_checkpoint(tmp_path / "vqvae.pt")
    capsys.readouterr()
    t0 = time.perf_counter()
    _, hist = train_vqvae(cfg, imgs, imgs, tmp_path, resume=True, progress=False)  # make demo, second time
    assert "already trained for 2 updates; reusing it" in capsys.readouterr().out
    assert hist["step"] == [2.0] and time.perf_counter() - t0 < 10
    again = load_checkpoint(tmp_path / "vqvae.pt")["model"]
    assert all(torch.equal(again[k], v) for k, v in first["model"].items())
    train_vqvae(cfg, imgs, imgs, tmp_path, overwrite=True, progress=False)  # RETRAIN = True
    assert len(list(tmp_path.glob("replaced-*/vqvae.pt"))) == 1


# ----------------------------------------------------------------- 3. strict resume

CI_LR = C.get_profile("ci").vqvae.learning_rate
RESUME_CHANGES = [
    (["--learning_rate", "0.05"], f"learning_rate: {CI_LR} -> 0.05"),
    (["--batch_size", "2"], "batch_size: 4 -> 2"),
    (["--seed", "7"], "seed: 0 -> 7"),
    (["--lr_schedule", "constant"], "lr_schedule: 'cosine' -> 'constant'"),
    (["--norm", "minmax"], "norm: 'robust' -> 'minmax'"),
    (["--data_dir", "{other}"], "data_dir: '"),
    (["--n_updates", "2"], "n_updates: 4 -> 2 (can only grow)"),
    (["--learning_rate", "0.05", "--seed", "7"], f"learning_rate: {CI_LR} -> 0.05; seed: 0 -> 7"),
]


@pytest.mark.parametrize("change, message", RESUME_CHANGES, ids=lambda v: " ".join(v) if isinstance(v, list) else None)
def test_resume_with_changed_settings_is_refused(run_copy, make_hipmri, capsys, change, message):
    root, run = run_copy
    other = make_hipmri("other", n_case_weeks={"train": 1, "validate": 1}, n_slices=4) if "{other}" in change else None
    before = (run / "vqvae.pt").read_bytes()
    argv = vq_train(run, root, "--resume", *[a.format(other=other) for a in change])
    code, _, err = cli(capsys, *argv)
    assert_one_line_error(code, err, message)
    assert "--resume with settings that differ" in err and (run / "vqvae.pt").read_bytes() == before


@pytest.mark.parametrize("change, message", [
    (["--batch_size", "2"], "batch_size: 4 -> 2"),
    (["--learning_rate", "0.5"], f"learning_rate: {C.get_profile('ci').pixelcnn.learning_rate} -> 0.5"),
    (["--n_updates", "0"], "n_updates=0 must be >= 1"),
])  # fmt: skip
def test_prior_resume_with_changed_settings_is_refused(run_copy, capsys, change, message):
    _, run = run_copy
    code, _, err = cli(capsys, *prior_train(run, "--resume", *change))
    assert_one_line_error(code, err, message)


def test_prior_resume_on_codes_from_other_data_is_refused(run_copy, make_hipmri, capsys):
    _, run = run_copy
    other = make_hipmri("other", n_case_weeks={"train": 1, "validate": 1, "test": 1}, n_slices=4)
    (run / "codes.npz").unlink()
    code, _, err = cli(capsys, *prior_train(run, "--resume", "--data_dir", other))
    assert_one_line_error(code, err, "codes.npz: other slices than the checkpoint was trained on")


def test_resume_may_extend_the_run_and_records_it(run_copy, capsys):
    root, run = run_copy
    code, out, err = cli(capsys, *vq_train(run, root, "--resume", "--n_updates", "6"))
    assert code == 0, err
    assert "extending the run, n_updates 4 -> 6 at update 4 (recorded in the history)" in out
    ckpt = load_checkpoint(run / "vqvae.pt")
    assert ckpt["step"] == 6 and ckpt["history"]["extended"] == ["n_updates 4 -> 6 at update 4"]
    # the VQ-VAE changed, so the old prior is moved aside, the codes re-extracted
    code, out, err = cli(capsys, *prior_train(run, "--resume", "--n_updates", "2"))
    assert code == 0, err
    assert "pixelcnn.pt was trained on another VQ-VAE's codes: moved pixelcnn.pt" in out
    assert "extracting codes" in out


def test_prior_resume_extends_the_update_budget_in_order(run_copy, capsys):
    _, run = run_copy
    code, out, err = cli(capsys, *prior_train(run, "--resume", "--n_updates", "3"))
    assert code == 0, err
    assert "extending the run, n_updates 1 -> 3" in out
    assert load_checkpoint(run / "pixelcnn.pt")["history"]["step"] == [1.0, 2.0, 3.0]


# ----------------------------------------------------------------- 4, 6, 7: one-line refusals

REFUSED = [
    # 4. sample counts outside the documented range, refused before any model is loaded
    (["predict", "--run_dir", "{tmp}/nothing", "--n", "-3", "--out", "{tmp}/x.png"], f"--n -3 is out of range; use 1..{MAX_PREDICT}"),
    (["predict", "--run_dir", "{tmp}/nothing", "--n", "0", "--out", "{tmp}/x.png"], "--n 0 is out of range"),
    (["predict", "--run_dir", "{tmp}/nothing", "--n", "100000", "--out", "{tmp}/x.png"], "--n 100000 is out of range"),
    (["predict", "--run_dir", "{tmp}/nothing", "--top_k", "-1", "--out", "{tmp}/x.png"], "--top_k -1 must be >= 0"),
    (["predict", "--run_dir", "{tmp}/nothing", "--temperature", "nan", "--out", "{tmp}/x.png"], "--temperature nan"),
    (["predict", "--run_dir", "{tmp}/nothing", "--device", "foo", "--out", "{tmp}/x.png"], "device='foo' is not a device"),
    (["evaluate", "--run_dir", "{tmp}/nothing", "--n_samples", "0"], "--n_samples 0 is out of range"),
    # 6. config validation (the dataclasses), for every command that builds a config
    (["train", "--mode", "vq_vae", "--run_dir", "{tmp}/r", "--log_interval", "0"], "log_interval=0 must be >= 1"),
    (["train", "--mode", "vq_vae", "--run_dir", "{tmp}/r", "--batch_size", "0"], "batch_size=0 must be >= 1"),
    (["train", "--mode", "vq_vae", "--run_dir", "{tmp}/r", "--n_updates", "-5"], "n_updates=-5 must be >= 1"),
    (["train", "--mode", "vq_vae", "--run_dir", "{tmp}/r", "--device", "foo"], "device='foo' is not a device"),
    (["train", "--mode", "vq_vae", "--run_dir", "{tmp}/r", "--learning_rate", "0"], "learning_rate=0.0 must be > 0"),
    (["train", "--mode", "vq_vae", "--run_dir", "{tmp}/r", "--crop", "30"], "crop=30 must be a multiple of 4"),
    (["train", "--mode", "vq_vae", "--run_dir", "{tmp}/r", "--height", "250"], "height=250 must be a multiple of 4"),
    (["train", "--mode", "pixelcnn", "--run_dir", "{tmp}/r", "--kernel_size", "4"], "kernel_size=4 must be an odd number"),
    (["train", "--mode", "pixelcnn", "--run_dir", "{tmp}/r", "--v_dilation", "3"], "v_dilation=3 must be a power of 2"),
    (["train", "--mode", "vq_vae", "--run_dir", "{tmp}/r", "--resume", "--overwrite"], "exclude each other"),
    # 7. --format nii into a file
    (["predict", "--run_dir", "{tmp}/nothing", "--format", "nii", "--out", "{file}"], "is a file; --format nii writes"),
    (["predict", "--run_dir", "{tmp}/nothing", "--out", "{tmp}"], "is a folder; give a file name"),
]


@pytest.mark.parametrize("argv, message", REFUSED, ids=[" ".join(a[:1] + a[-2:]) for a, _ in REFUSED])
def test_bad_arguments_are_one_line_before_any_work(tmp_path, capsys, argv, message):
    file = tmp_path / "existing.nii.gz"
    file.write_bytes(b"x")
    code, _, err = cli(capsys, *[a.format(tmp=tmp_path, file=file) for a in argv])
    assert_one_line_error(code, err, message)
    assert not (tmp_path / "r" / "vqvae.pt").exists()


def test_notebook_parameters_are_validated_in_the_same_place():
    with pytest.raises(C.ConfigError, match="batch_size=0 must be >= 1"):
        C.apply_given(C.get_profile("ci").vqvae, batch_size=0)
    with pytest.raises(C.ConfigError, match="device='foo'"):
        C.apply_given(C.get_profile("ci").pixelcnn, device="foo")


def test_png_out_without_extension_says_where_it_wrote(trained, capsys, tmp_path):
    _, run = trained
    code, out, err = cli(capsys, "predict", "--run_dir", run, "--n", "2", "--out", tmp_path / "grid", "--device", "cpu")
    assert code == 0, err
    assert out.strip().splitlines()[-1] == f"wrote {tmp_path / 'grid.png'} (.png added to --out {tmp_path / 'grid'})"
    assert (tmp_path / "grid.png").stat().st_size > 1000 and not (tmp_path / "grid").exists()


def test_nii_into_a_folder_of_older_samples_needs_overwrite(trained, capsys, tmp_path):
    _, run = trained
    argv = ["predict", "--run_dir", run, "--format", "nii", "--out", tmp_path / "nii", "--device", "cpu"]
    assert cli(capsys, *argv, "--n", "3")[0] == 0
    code, _, err = cli(capsys, *argv, "--n", "2")
    assert_one_line_error(code, err, "already holds 3 samples; pass --overwrite to replace them")
    code, out, err = cli(capsys, *argv, "--n", "2", "--overwrite")
    assert code == 0 and "removed 3 earlier samples" in out, err
    assert sorted(p.name for p in (tmp_path / "nii").iterdir()) == ["sample_000.nii.gz", "sample_001.nii.gz"]


# ----------------------------------------------------------------- 5. broken codes.npz


@pytest.mark.parametrize("damage", ["truncated", "random bytes", "no grids"])
def test_broken_codes_file_is_named_and_rebuilt_by_train(run_copy, capsys, damage):
    root, run = run_copy
    path = run / "codes.npz"
    if damage == "truncated":
        path.write_bytes(path.read_bytes()[:300])
    elif damage == "random bytes":
        path.write_bytes(np.random.default_rng(0).bytes(2000))
    else:
        np.savez(path, vqvae_id=np.array("x"), n_embeddings=np.array(4))
    with pytest.raises(CheckpointError, match="codes.npz: not a readable codes file .*04_extract_codes"):
        load_codes(run)
    code, _, err = cli(capsys, "evaluate", "--run_dir", run, "--data_dir", root, "--json", "--n_samples", "4", "--device", "cpu")
    assert_one_line_error(code, err, f"{path}: not a readable codes file")
    assert "allow_pickle" not in err
    code, out, err = cli(capsys, *prior_train(run, "--resume"))  # safe to rebuild: a function of the VQ-VAE
    assert code == 0 and "from another VQ-VAE or unreadable: extracting codes" in out, err
    assert load_codes(run)["codes_train"].shape[0] == 4


# ----------------------------------------------------------------- 8. failures never cached


def test_a_file_that_failed_to_read_is_read_again_once_fixed(make_hipmri):
    """The cache key (name, size, mtime) does not change when permissions are fixed or a copy
    completes; emulated here with same-size garbage and the original mtime (works as root)."""
    root = make_hipmri(n_case_weeks={"train": 1}, n_slices=3, with_labels=False)
    victim = sorted((root / "keras_slices_train").iterdir())[1]
    good, st = victim.read_bytes(), victim.stat()
    victim.write_bytes(b"\0" * len(good))
    os.utime(victim, ns=(st.st_atime_ns, st.st_mtime_ns))
    with pytest.warns(UserWarning, match="skipped 1 of 3"):
        assert len(data.load_split(root, "train", skip_bad=True, progress=False)) == 2
    victim.write_bytes(good)
    os.utime(victim, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert len(data.load_split(root, "train", skip_bad=True, progress=False)) == 3
    assert len(data.load_split(root, "train", progress=False)) == 3


# ----------------------------------------------------------------- 9. orphan temp files


def test_temp_files_of_a_killed_run_are_removed_on_the_next_start(run_copy, capsys):
    root, run = run_copy
    for name in ("vqvae.pt.k2j3h4.tmp", "pixelcnn.pt.abc.tmp", "codes.npz.x1.tmp.npz"):
        (run / name).write_bytes(b"half a checkpoint")
    code, _, err = cli(capsys, *vq_train(run, root, "--resume"))
    assert code == 0, err
    assert "removed 3 temp file(s) left by a killed run" in err
    names = {p.name for p in run.iterdir() if p.is_file()}
    assert {LOCK_FILE, "codes.npz", "pixelcnn.pt", "vqvae.pt"} <= names
    assert not [n for n in names if ".tmp" in n], names


# ----------------------------------------------------------------- 10. odd shapes said


def test_odd_slice_shapes_are_one_warning_line_during_training(make_hipmri, capsys, tmp_path):
    root = make_hipmri(n_case_weeks={"train": 2, "validate": 1}, n_slices=2, with_labels=False)
    rng = np.random.default_rng(1)
    write_nifti(root / "keras_slices_train/case_050_week_0_slice_0.nii.gz", smooth_image(rng, (100, 100)))
    write_nifti(root / "keras_slices_train/case_050_week_0_slice_1.nii.gz", smooth_image(rng, (512, 256)))
    code, _, err = cli(capsys, *vq_train(tmp_path / "run", root, "--n_updates", "2"))
    assert code == 0, err
    warned = [line for line in err.splitlines() if "warning" in line]
    assert warned == [
        "hipgen: warning: keras_slices_train: 2 of 6 slices are not 256x128 on disk "
        "(1 of 100x100, 1 of 512x256) and were resized to it"
    ]


# ----------------------------------------------------------------- 2. the lock, real processes


def _spawn(argv):
    return subprocess.Popen([sys.executable, "-m", "hipgen_utils", *map(str, argv)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip


def _hipgen(argv, timeout=300):
    return subprocess.run([sys.executable, "-m", "hipgen_utils", *map(str, argv)],
                          capture_output=True, text=True, timeout=timeout)  # fmt: skip


def _wait_for(cond, proc, timeout=120):
    t0 = time.time()
    while not cond():
        if proc.poll() is not None:
            raise AssertionError(f"exited {proc.returncode} early: {proc.communicate()[1][-2000:]}")
        if time.time() - t0 > timeout:
            proc.kill()
            raise AssertionError("timed out")
        time.sleep(0.05)


def _lock_pid(run: Path):
    try:
        return json.loads((run / LOCK_FILE).read_text() or "{}").get("pid")
    except (OSError, ValueError):
        return None


@pytest.fixture
def tiny_root(make_hipmri):
    return make_hipmri(n_case_weeks={"train": 2, "validate": 1}, n_slices=4, with_labels=False)


def test_second_concurrent_train_is_refused_and_the_first_finishes_intact(tiny_root, tmp_path):
    run = tmp_path / "run"
    argv = vq_train(run, tiny_root, "--n_updates", "30", "--log_interval", "10")
    first = _spawn(argv)
    _wait_for(lambda: _lock_pid(run) == first.pid, first)
    second = _hipgen(argv)
    assert second.returncode == 2, second.stderr
    last = second.stderr.strip().splitlines()[-1]
    assert f"is in use by another hipgen process (pid {first.pid}," in last and "Traceback" not in second.stderr
    out, err = first.communicate(timeout=300)
    assert first.returncode == 0, err
    ckpt = load_checkpoint(run / "vqvae.pt", "vqvae")
    assert ckpt["step"] == 30 and ckpt["history"]["step"] == [10.0, 20.0, 30.0]
    assert (run / LOCK_FILE).read_text() == ""  # released cleanly

    # training again without --resume is refused; the checkpoint stays as it was
    before = (run / "vqvae.pt").read_bytes()
    again = _hipgen(vq_train(run, tiny_root, "--n_updates", "10"))
    assert again.returncode == 2
    assert "already holds a trained VQ-VAE (30 updates); pass --resume" in again.stderr.strip().splitlines()[-1]
    assert (run / "vqvae.pt").read_bytes() == before


def test_the_lock_of_a_killed_trainer_is_taken_over(tiny_root, tmp_path):
    run = tmp_path / "run"
    first = _spawn(vq_train(run, tiny_root, "--n_updates", "100000", "--log_interval", "2"))
    _wait_for(lambda: (run / "vqvae.pt").exists(), first)
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=60)
    assert _lock_pid(run) == first.pid  # left behind: no clean exit
    second = _hipgen(vq_train(run, tiny_root, "--overwrite"))
    assert second.returncode == 0, second.stderr
    assert f"taking over the stale lock of pid {first.pid}" in second.stderr
    assert len(list(run.glob("replaced-*/vqvae.pt"))) == 1  # the killed run's checkpoint, kept
    assert load_checkpoint(run / "vqvae.pt")["step"] == 4


# ================================================================= issue 30: faults at the edges
# A full disk, a read-only folder, a mistyped run directory: one line naming the path and what
# to do, exit 2, nothing half-written. A full disk is simulated by making the write raise
# ENOSPC (and once for real, with a file size limit); a read-only folder by `chmod` as a user,
# and as root (who ignores permissions: the usual case on CI containers) by refusing, in
# os/io, the writes a read-only folder refuses (`read_only`).


def _enospc(path="x"):
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))


def _files(folder: Path) -> dict:
    """{relative path: bytes} of every file under `folder` (hidden ones too), lock file aside."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != LOCK_FILE}  # fmt: skip


# ----------------------------------------------------------------- a full disk while training


@pytest.mark.parametrize("mode", ["vq_vae", "pixelcnn"])
def test_a_full_disk_while_training_is_one_line_and_keeps_the_last_checkpoint(run_copy, capsys, monkeypatch, mode):
    root, run = run_copy
    before = _files(run)
    monkeypatch.setattr(torch, "save", lambda *a, **k: (_ for _ in ()).throw(_enospc()))
    argv = vq_train(run, root, "--resume", "--n_updates", "6") if mode == "vq_vae" else prior_train(run, "--resume", "--n_updates", "2")
    code, _, err = cli(capsys, *argv)
    name = "vqvae.pt" if mode == "vq_vae" else "pixelcnn.pt"
    assert_one_line_error(code, err, f"cannot write {run / name} (No space left on device); the disk holding {run} "
                                     f"is full: free some space, or use a folder on another disk, then run the "
                                     f"command again (the previous {name} is kept)")  # fmt: skip
    assert _files(run) == before  # no temp file left, nothing replaced


def test_a_file_size_limit_is_one_line_not_a_torch_traceback(run_copy, tmp_path):
    """For real, as the issue's `ulimit -f 100`: torch's own writer said "RuntimeError:
    unexpected pos 64 vs 0". The slice cache is warmed first (its files are larger than
    the limit); the VQ-VAE's checkpoint (~160 KB) is over it."""
    import resource

    from hipgen_utils.run import Run

    root, run = run_copy
    Run.at(run, data_dir=root).splits("train", "validate", progress=False)
    before = _files(run)
    assert (run / "vqvae.pt").stat().st_size > 100 * 1024

    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (100 * 1024, 100 * 1024))

    argv = [sys.executable, "-m", "hipgen_utils", *map(str, vq_train(run, root, "--resume", "--n_updates", "6"))]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=300, preexec_fn=limit)
    assert done.returncode == 2, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith(f"hipgen train: error: cannot write {run / 'vqvae.pt'} (File too large); the file size "
                           "limit was reached (`ulimit -f`)"), done.stderr  # fmt: skip
    assert "Traceback" not in done.stderr and _files(run) == before


# ----------------------------------------------------------------- --overwrite, then a failed write


@pytest.mark.parametrize("mode, fault", [("vq_vae", "full disk"), ("pixelcnn", "full disk"), ("vq_vae", "interrupt")])
def test_overwrite_moves_the_old_run_aside_only_once_the_new_one_has_a_checkpoint(run_copy, capsys, monkeypatch,
                                                                                  mode, fault):  # fmt: skip
    root, run = run_copy
    before = _files(run)
    error = _enospc() if fault == "full disk" else KeyboardInterrupt()
    monkeypatch.setattr(torch, "save", lambda *a, **k: (_ for _ in ()).throw(error))
    argv = vq_train(run, root, "--overwrite") if mode == "vq_vae" else prior_train(run, "--overwrite")
    code, out, err = cli(capsys, *argv)
    if fault == "full disk":
        assert_one_line_error(code, err, "(No space left on device)")
        assert "(the previous" in err.strip().splitlines()[-1]
    else:
        assert code == 130, err
    assert "moved" not in out and not list(run.glob("replaced-*"))
    assert _files(run) == before  # the trained run, as it was


def test_overwrite_whose_second_checkpoint_fails_keeps_the_first_and_the_old_run_aside(run_copy, capsys, monkeypatch):
    root, run = run_copy
    old = (run / "vqvae.pt").read_bytes()
    real, saves = torch.save, []

    def second_fails(obj, f, *a, **k):
        saves.append(1)
        if len(saves) == 2:
            raise _enospc()
        return real(obj, f, *a, **k)

    monkeypatch.setattr(torch, "save", second_fails)
    code, out, err = cli(capsys, *vq_train(run, root, "--overwrite"))  # checkpoints at updates 2 and 4
    assert_one_line_error(code, err, "(the previous vqvae.pt is kept)")
    (aside,) = run.glob("replaced-*")
    assert (aside / "vqvae.pt").read_bytes() == old and {p.name for p in aside.iterdir()} >= {"codes.npz", "pixelcnn.pt"}
    assert load_checkpoint(run / "vqvae.pt")["step"] == 2 and "--overwrite: moved codes.npz" in out


# ----------------------------------------------------------------- a read-only run directory


@pytest.fixture
def read_only(monkeypatch):
    """make(folder, recursive=True): `folder` read-only like `chmod -R a-w` (recursive=False:
    `chmod a-w folder`, its files stay writable but none can be added, renamed or removed).
    As a user by chmod (restored afterwards); as root, whom permissions do not stop, by
    refusing the same operations under `folder` with EACCES in os.open/mkdir/replace/rename/
    unlink/rmdir and io.open."""
    restore = []

    def make(folder, recursive=True):
        folder = Path(folder).resolve()
        if os.geteuid() != 0:
            for p in [folder, *(folder.rglob("*") if recursive else ())]:
                restore.append((p, p.stat().st_mode))
                p.chmod(p.stat().st_mode & ~0o222)
            return

        def inside(path) -> bool:
            if not isinstance(path, str | bytes | os.PathLike):
                return False  # a file descriptor
            p = Path(os.fsdecode(path)).resolve()
            return p.parent == folder or (recursive and folder in p.parents)

        def deny(path):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), os.fsdecode(path))

        def guard(real, check):
            def fake(*a, **k):
                if check(*a, **k):
                    deny(a[0])
                return real(*a, **k)

            return fake

        writes = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND

        def open_denied(path, flags, *a, **k):
            creates = flags & os.O_CREAT and not os.path.exists(path)
            return inside(path) and bool(creates or (recursive and flags & writes))

        def io_open_denied(file, mode="r", *a, **k):
            if not any(c in mode for c in "wxa+") or not inside(file):
                return False
            return recursive or not os.path.exists(file)

        for name, check in (
            ("open", open_denied),
            ("mkdir", lambda p, *a, **k: inside(p)),
            ("replace", lambda s, d, *a, **k: inside(s) or inside(d)),
            ("rename", lambda s, d, *a, **k: inside(s) or inside(d)),
            ("unlink", lambda p, *a, **k: inside(p)),
            ("remove", lambda p, *a, **k: inside(p)),
            ("rmdir", lambda p, *a, **k: inside(p)),
        ):
            monkeypatch.setattr(os, name, guard(getattr(os, name), check))
        fake_open = guard(io.open, io_open_denied)
        monkeypatch.setattr(io, "open", fake_open)
        monkeypatch.setattr(builtins, "open", fake_open)

    yield make
    for p, mode in reversed(restore):
        p.chmod(mode)


def test_the_read_only_simulation_refuses_what_a_read_only_folder_refuses(read_only, tmp_path):
    """The fixture the read-only tests stand on, checked against the real thing's rules."""
    (tmp_path / "ro").mkdir()
    (tmp_path / "ro" / "old.txt").write_text("old")
    read_only(tmp_path / "ro", recursive=False)
    for attempt in (lambda: (tmp_path / "ro" / "new.txt").write_text("x"),
                    lambda: (tmp_path / "ro" / "sub").mkdir(),
                    lambda: os.replace(tmp_path / "ro" / "old.txt", tmp_path / "ro" / "moved.txt"),
                    lambda: (tmp_path / "ro" / "old.txt").unlink()):  # fmt: skip
        with pytest.raises(PermissionError):
            attempt()
    (tmp_path / "ro" / "old.txt").write_text("rewritten")  # its files stay writable
    (tmp_path / "elsewhere.txt").write_text("fine")
    assert (tmp_path / "ro" / "old.txt").read_text() == "rewritten"


def test_resume_on_a_read_only_run_directory_is_one_line(run_copy, capsys, read_only):
    root, run = run_copy
    before = _files(run)
    read_only(run)
    code, _, err = cli(capsys, *vq_train(run, root, "--resume", "--n_updates", "6"))
    assert_one_line_error(code, err, f"cannot write {run / LOCK_FILE} (Permission denied); {run} is not writable: "
                                     f"make it writable (chmod -R u+w {run}), or copy it (cp -r) and pass the copy "
                                     "as --run_dir, then run the command again")  # fmt: skip
    assert _files(run) == before


def test_prior_training_in_a_read_only_run_without_codes_is_one_line(run_copy, capsys, read_only):
    """`chmod a-w RUN`: its lock file stays writable, so the lock is taken, and the codes'
    temp file is the first thing that cannot be written. A killed writer's leftover temp file
    that cannot be removed is left alone."""
    _, run = run_copy
    (run / "codes.npz").unlink()
    (run / LOCK_FILE).write_text("")
    (run / "pixelcnn.pt.x1.tmp").write_bytes(b"half")
    read_only(run, recursive=False)
    code, _, err = cli(capsys, *prior_train(run, "--resume"))
    assert_one_line_error(code, err, f"cannot write {run / 'codes.npz'} (Permission denied); {run} is not writable")
    assert not (run / "codes.npz").exists() and "removed" not in err


# ----------------------------------------------------------------- a copied run directory


def test_a_run_directory_copied_while_in_use_names_the_live_holder_truly(tmp_path, capsys):
    from hipgen_utils.rundir import RunBusyError, run_lock

    original, copy = tmp_path / "run", tmp_path / "copy"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys; from hipgen_utils.rundir import run_lock\n"
         f"with run_lock({str(original)!r}):\n    print('locked', flush=True); sys.stdin.read()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "locked"
        held = json.loads((original / LOCK_FILE).read_text())
        shutil.copytree(original, copy)  # `cp -r` while the original is in use
        with run_lock(copy):
            err = capsys.readouterr().err
        assert err.strip() == (
            f"{copy}: its lock file came from {original}, copied or moved while pid {holder.pid} ({held['command']}, "
            f"since {held['since']}) held it (that process is still running); this folder is a run directory of its "
            "own: taking its lock"
        )
        with pytest.raises(RunBusyError, match=f"pid {holder.pid}"), run_lock(original):
            pass  # the original is still the live process's
    finally:
        holder.communicate("", timeout=60)


def test_a_stale_lock_note_checks_the_pid_and_never_guesses(tmp_path):
    from hipgen_utils.rundir import stale_lock_note

    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead, alive = int(ended.stdout), os.getppid()
    here = {"command": "hipgen train", "since": "today", "dir": str(tmp_path), "host": socket.gethostname()}
    assert stale_lock_note(tmp_path, {**here, "pid": dead}) == (
        f"{tmp_path}: taking over the stale lock of pid {dead} (that process ended without releasing it; was it killed?)"
    )
    live = stale_lock_note(tmp_path, {**here, "pid": alive})
    assert f"pid {alive} (hipgen train, since today): that pid is running but does not hold this lock" in live
    assert "ended" not in live
    moved = stale_lock_note(tmp_path, {**here, "pid": dead, "dir": "/elsewhere/run"})
    assert "came from /elsewhere/run" in moved and "(that process has ended)" in moved
    far = stale_lock_note(tmp_path, {**here, "pid": alive, "host": "another-machine"})
    assert "on another-machine" in far and "cannot be checked from this machine" in far
    for nobody in ({}, {"pid": os.getpid()}, {"pid": 0}, {"pid": -1}, {"pid": "12"}):
        assert stale_lock_note(tmp_path, nobody) is None, nobody


# ----------------------------------------------------------------- predict: a full disk, a read-only folder, a folder of the data


def _fail_nifti_at(monkeypatch, n_ok: int):
    """nibabel.save writes `n_ok` files, then half of one and raises ENOSPC."""
    import nibabel

    real, count = nibabel.save, []

    def save(img, path, *a, **k):
        if len(count) == n_ok:
            Path(path).write_bytes(b"\x1f\x8b half a file")
            raise _enospc(path)
        count.append(path)
        return real(img, path, *a, **k)

    monkeypatch.setattr(nibabel, "save", save)


def test_a_full_disk_while_writing_nifti_samples_leaves_no_partial_set(trained, capsys, monkeypatch, tmp_path):
    _, run = trained
    out = tmp_path / "nii"
    argv = ["predict", "--run_dir", run, "--format", "nii", "--out", out, "--device", "cpu", "--n", "4"]
    _fail_nifti_at(monkeypatch, 2)
    code, _, err = cli(capsys, *argv)
    assert_one_line_error(code, err, f"cannot write the samples into {out} (No space left on device); the disk "
                                     f"holding {out} is full: free some space, or use a folder on another disk, "
                                     "then run the command again (none of them was written)")  # fmt: skip
    assert list(out.iterdir()) == []  # so the next run is not refused for samples that are not there
    monkeypatch.undo()
    assert cli(capsys, *argv, "--n", "3")[0] == 0
    earlier = _files(out)
    _fail_nifti_at(monkeypatch, 1)
    code, _, err = cli(capsys, *argv, "--overwrite")  # --overwrite that fails: the earlier samples stay
    assert_one_line_error(code, err, f"cannot write the samples into {out} (No space left on device)")
    assert _files(out) == earlier and sorted(earlier) == [f"sample_00{i}.nii.gz" for i in range(3)]


def test_a_full_disk_while_writing_a_png_leaves_no_half_file(trained, capsys, monkeypatch, tmp_path):
    import hipgen_utils.plotting as plotting

    _, run = trained
    (tmp_path / "grid.png").write_bytes(b"the earlier grid")

    def half_a_png(fig, path, *a, **k):
        Path(path).write_bytes(b"\x89PNG half")
        raise _enospc(path)

    monkeypatch.setattr(plotting, "save_figure", half_a_png)
    code, _, err = cli(capsys, "predict", "--run_dir", run, "--n", "2", "--out", tmp_path / "grid.png", "--device", "cpu")
    assert_one_line_error(code, err, f"cannot write {tmp_path / 'grid.png'} (No space left on device)")
    assert _files(tmp_path) == {"grid.png": b"the earlier grid"}


@pytest.mark.parametrize("fmt, name", [("png", "grid.png"), ("nii", "samples")])
def test_predict_into_a_read_only_folder_is_one_line_before_sampling(trained, capsys, monkeypatch, read_only,
                                                                   tmp_path, fmt, name):  # fmt: skip
    from hipgen_utils import pipeline

    _, run = trained
    locked = tmp_path / "locked"
    locked.mkdir()
    read_only(locked)
    monkeypatch.setattr(pipeline, "generate", lambda *a, **k: pytest.fail("sampled before checking --out"))
    out = locked / "sub" / name
    code, _, err = cli(capsys, "predict", "--run_dir", run, "--format", fmt, "--out", out, "--device", "cpu")
    assert_one_line_error(code, err, f"cannot write --out {out} (Permission denied); {locked} is not writable: "
                                     "make it writable (chmod u+w), or use another folder")  # fmt: skip
    assert list(locked.iterdir()) == []


@pytest.mark.parametrize("where", ["keras_slices_train", "a copy of some slices", "seg in upper case"])
def test_nifti_samples_are_refused_in_a_folder_of_the_data(trained, capsys, tmp_path, where):
    root, run = trained
    if where == "keras_slices_train":
        out = tmp_path / "data" / "keras_slices_train"
        shutil.copytree(root / "keras_slices_train", out)
        message = f"--out {out} is named like a folder of the HipMRI data (keras_slices_*)"
    else:
        out = tmp_path / "mine"
        out.mkdir()
        name = "case_001_week_0_slice_0.nii.gz" if where == "a copy of some slices" else "SEG_001_week_0_slice_0.NII.GZ"
        shutil.copy(root / "keras_slices_train" / "case_001_week_0_slice_0.nii.gz", out / name)
        message = f"--out {out} holds slices of the HipMRI data ({name}, ...); samples must not mix with them"
    before = _files(out)
    code, _, err = cli(capsys, "predict", "--run_dir", run, "--format", "nii", "--overwrite", "--out", out,
                       "--device", "cpu", "--n", "2")  # fmt: skip
    assert_one_line_error(code, err, message)
    assert _files(out) == before


# ----------------------------------------------------------------- phantom: a full disk in a worker


def test_a_full_disk_in_a_phantom_worker_is_one_line_and_leaves_nothing(capsys, monkeypatch, tmp_path):
    import multiprocessing

    from hipgen_utils.phantom import release

    if multiprocessing.get_start_method() != "fork":
        pytest.skip("the failing writer reaches the worker processes only when they are forked")
    parent, real = os.getpid(), release._write_case_week

    def full_in_a_worker(root, row, *a, **k):
        if os.getpid() != parent:
            raise _enospc(Path(root) / "keras_slices_train" / "case_001_week_0_slice_0.nii.gz")
        return real(root, row, *a, **k)

    monkeypatch.setattr(release, "_write_case_week", full_in_a_worker)
    out = tmp_path / "phantom"
    code, _, err = cli(capsys, "phantom", "--out", out, "--case_weeks", "2", "1", "1", "--n_slices", "2",
                       "--workers", "2", "--quiet")  # fmt: skip
    assert_one_line_error(code, err, f"cannot write the phantom into {out} (No space left on device); the disk "
                                     f"holding {tmp_path} is full: free some space")  # fmt: skip
    assert "RemoteTraceback" not in err and list(tmp_path.iterdir()) == []
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "mine.txt").write_text("x")  # and its own refusal is one line too
    code, _, err = cli(capsys, "phantom", "--out", tmp_path / "notes", "--case_weeks", "1", "--quiet")
    assert_one_line_error(code, err, f"refusing to overwrite {tmp_path / 'notes'}: it is not empty")


# ----------------------------------------------------------------- a mistyped run directory


@pytest.mark.parametrize("mode", ["vq_vae", "pixelcnn"])
def test_resume_on_a_mistyped_run_directory_is_refused(run_copy, capsys, mode):
    root, run = run_copy
    typo = run.parent / "rnu"
    argv = vq_train(typo, root, "--resume") if mode == "vq_vae" else prior_train(typo, "--resume")
    code, _, err = cli(capsys, *argv)
    if mode == "vq_vae":
        assert_one_line_error(code, err, f"--resume: run directory {typo} does not exist, so there is nothing to "
                                         f"resume (did you mean {run}?); check the path, or leave out --resume")  # fmt: skip
    else:
        assert_one_line_error(code, err, f"run directory {typo} does not exist (did you mean {run}?); check the path, "
                                         "or train the VQ-VAE there first")  # fmt: skip
    assert not typo.exists()


def test_resume_after_an_interrupt_before_the_first_checkpoint_says_so(tiny_root, tmp_path, capsys, monkeypatch):
    run = tmp_path / "run"
    with monkeypatch.context() as m:
        m.setattr(torch, "save", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt()))
        assert cli(capsys, *vq_train(run, tiny_root))[0] == 130  # Ctrl-C before update 2's checkpoint
    assert run.is_dir() and not (run / "vqvae.pt").exists()
    code, _, err = cli(capsys, *vq_train(run, tiny_root, "--resume"))
    assert code == 0, err
    assert [line for line in err.splitlines() if "not found" in line] == [
        f"{run / 'vqvae.pt'} not found, so --resume has nothing to continue (an earlier run here stopped before "
        "its first checkpoint, due every 2 updates): training from update 0"
    ]
    assert load_checkpoint(run / "vqvae.pt")["step"] == 4


def test_resume_in_a_new_empty_run_directory_starts_and_says_so(tiny_root, tmp_path, capsys):
    """`mkdir -p RUN; hipgen train --resume` is how scripts/gpu_full.sh starts: it trains."""
    run = tmp_path / "run"
    run.mkdir()
    code, _, err = cli(capsys, *vq_train(run, tiny_root, "--resume", "--n_updates", "2"))
    assert code == 0 and "(a new run directory): training from update 0" in err, err


def test_prior_resume_without_a_prior_says_it_starts_from_update_0(run_copy, capsys):
    _, run = run_copy
    (run / "pixelcnn.pt").unlink()
    code, _, err = cli(capsys, *prior_train(run, "--resume"))
    assert code == 0, err
    assert f"{run / 'pixelcnn.pt'} not found, so --resume has nothing to continue" in err
    assert load_checkpoint(run / "pixelcnn.pt")["history"]["step"] == [1.0]


# ----------------------------------------------------------------- evaluate --skip_bad


def _data_with_a_blank_test_slice(root: Path, tmp_path: Path) -> Path:
    """A copy of the data whose test slice 2 is blank (every voxel 0)."""
    copy = tmp_path / "data"
    shutil.copytree(root, copy)
    write_nifti(copy / "keras_slices_test" / "case_200_week_0_slice_2.nii.gz", np.zeros((256, 128), np.float32))
    return copy


def test_evaluate_takes_skip_bad_for_a_blank_test_slice(run_copy, capsys, tmp_path):
    root, run = run_copy
    data = _data_with_a_blank_test_slice(root, tmp_path)
    argv = ["evaluate", "--run_dir", run, "--data_dir", data, "--n_samples", "4", "--device", "cpu", "--json",
            "--no_anatomy"]  # fmt: skip
    code, _, err = cli(capsys, *argv)
    assert_one_line_error(code, err, "constant image (every voxel = 0)")
    assert "skip_bad" in err.strip().splitlines()[-1]
    code, out, err = cli(capsys, *argv, "--skip_bad")
    assert code == 0, err
    assert "hipgen: warning: skipped 1 of 4 files in keras_slices_test: 1 constant image" in err
    assert json.loads(out)["n_images"] == 3


def test_evaluate_pairs_each_test_image_with_its_own_code_grid_when_one_is_skipped(trained_parts):
    from hipgen_utils.codes import rows_of

    _, _, codes, splits, _ = trained_parts
    test = splits["test"]
    keep = np.array([0, 1, 3])  # slice 2 skipped now, encoded then
    fewer = replace_slices(test, keep)
    got = rows_of(codes, "test", fewer)
    np.testing.assert_array_equal(got["codes_test"], codes["codes_test"][keep])
    np.testing.assert_array_equal(got["slice_test"], test.slice[keep])
    assert rows_of(codes, "test", test) is codes
    more = replace_slices(test, np.array([0, 1, 2, 3]), slice_=np.array([0, 1, 2, 9]))
    with pytest.raises(CheckpointError, match="1 test slice.* have no code grid .first: case 200 week 0 slice 9"):
        rows_of(codes, "test", more)


def replace_slices(s, rows, slice_=None):
    from dataclasses import replace as dc_replace

    return dc_replace(s, images=np.asarray(s.images)[rows], case=s.case[rows], week=s.week[rows],
                      slice=s.slice[rows] if slice_ is None else slice_, paths=[s.paths[i] for i in rows])  # fmt: skip


def test_prior_training_takes_skip_bad_for_the_codes(run_copy, capsys, tmp_path):
    """`train --mode pixelcnn` extracts every split's codes: its --skip_bad was ignored (the
    data settings came from the VQ-VAE's checkpoint alone)."""
    root, run = run_copy
    data = _data_with_a_blank_test_slice(root, tmp_path)
    (run / "codes.npz").unlink()
    code, _, err = cli(capsys, *prior_train(run, "--overwrite", "--data_dir", data))
    assert_one_line_error(code, err, "constant image (every voxel = 0)")
    code, _, err = cli(capsys, *prior_train(run, "--overwrite", "--data_dir", data, "--skip_bad"))
    assert code == 0, err
    assert load_codes(run)["slice_test"].tolist() == [0, 1, 3]


# ----------------------------------------------------------------- the segmenter's progress


def test_evaluate_shows_the_segmenter_training_also_with_json(run_copy, capsys):
    root, run = run_copy
    (run / "segmenter.pt").unlink(missing_ok=True)
    code, out, err = cli(capsys, "evaluate", "--run_dir", run, "--data_dir", root, "--n_samples", "4", "--device",
                         "cpu", "--json", "--profile", "ci")  # fmt: skip
    assert code == 0, err
    assert len(out.strip().splitlines()) == 1 and "segmenter_test_dice" in json.loads(out)
    n = C.get_profile("ci").judge.seg_n_updates
    assert "training the segmenter (none cached yet)" in err and "segmenter: 100%" in err and f"{n}/{n}" in err
