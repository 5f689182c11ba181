"""The built-in phantom: release layout and quirks, anatomy by slice position, MR look,
determinism, and reuse by ensure_phantom. Small sizes (12 slices, a few case-weeks)."""

from __future__ import annotations

import json
from collections import defaultdict

import nibabel as nib
import numpy as np
import pytest

from hipgen_utils import phantom as P
from hipgen_utils.phantom import canvas, release

N = 12  # slices per case-week in these tests
SIZES = {"train": 4, "validate": 1, "test": 1}


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    root = tmp_path_factory.mktemp("ph") / "phantom"
    out = P.write_phantom(
        root, SIZES["train"], SIZES["validate"], SIZES["test"], n_slices=N, seed=3, progress=False
    )
    return out


def _index(root):
    """{split: {(case, week): {slice: (image path, label path)}}} from the file names."""
    idx = {}
    for split in P.SPLITS:
        cw = defaultdict(dict)
        for f in P.image_dir(root, split).iterdir():
            m = P.IMAGE_RE.match(f.name)
            assert m, f"unexpected image file name {f.name}"
            case, week, s = (int(g) for g in m.groups())
            cw[(case, week)][s] = f
        labels = {f.name for f in P.label_dir(root, split).iterdir()}
        for name in labels:
            assert P.LABEL_RE.match(name), f"unexpected label file name {name}"
        for (case, week), slices in cw.items():
            for s, f in slices.items():
                lab = P.label_dir(root, split) / P.label_name(case, week, s)
                assert lab.name in labels, f"no label for {f.name}"
                slices[s] = (f, lab)
        assert len(labels) == sum(len(v) for v in cw.values())
        idx[split] = dict(cw)
    return idx


def _load(path):
    return np.asanyarray(nib.load(str(path)).dataobj)


def _stack(files):
    """(n_slices, H, W) images and labels of one case-week (singleton dims dropped)."""
    imgs = [_load(files[s][0]).reshape(_load(files[s][0]).shape[:2]) for s in sorted(files)]
    labs = [_load(files[s][1]).reshape(imgs[0].shape) for s in sorted(files)]
    return np.stack(imgs), np.stack(labs)


def test_layout_counts_and_names(small):
    assert (small / P.META_NAME).is_file()
    assert sorted(p.name for p in small.iterdir() if p.is_dir()) == sorted(
        [f"keras_slices_{s}" for s in P.SPLITS] + [f"keras_slices_seg_{s}" for s in P.SPLITS]
    )
    assert not list(small.parent.glob(".phantom.*")), "temporary build folder left behind"
    idx = _index(small)
    for split, n in SIZES.items():
        assert len(idx[split]) == n
        for slices in idx[split].values():
            assert sorted(slices) == list(range(N))
    name = P.image_name(7, 2, 15)
    assert name == "case_007_week_2_slice_15.nii.gz" and P.IMAGE_RE.match(name)


def test_cases_belong_to_one_split(small):
    idx = _index(small)
    cases = {split: {c for c, _ in idx[split]} for split in P.SPLITS}
    assert not (cases["train"] & cases["validate"])
    assert not (cases["train"] & cases["test"])
    assert not (cases["validate"] & cases["test"])
    weeks = defaultdict(set)
    for split in P.SPLITS:
        for c, w in idx[split]:
            weeks[c].add(w)
    assert all(1 <= len(w) <= 5 for w in weeks.values())


def test_release_quirks(small):
    idx = _index(small)
    shapes, singletons, dtypes, maxima = defaultdict(list), defaultdict(int), set(), []
    for split, cws in idx.items():
        for files in cws.values():
            img = nib.load(str(files[0][0]))
            lab = _load(files[0][1])
            shapes[split].append(img.shape[:2])
            singletons[split] += img.shape == (*img.shape[:2], 1) and len(img.shape) == 3
            assert lab.shape == img.shape and lab.dtype == np.uint8
            dtypes.add(img.get_data_dtype().name)
            maxima.append(float(np.max(img.dataobj)))
    assert shapes["train"].count((256, 144)) == 1
    assert all(s == (256, 128) for split in ("validate", "test") for s in shapes[split])
    assert shapes["train"].count((256, 128)) == SIZES["train"] - 1
    assert singletons["train"] >= 1  # ~5 %, at least one in a split of >= 4
    assert dtypes == {"float32", "int16"}
    assert min(maxima) > 50 and max(maxima) < 32767  # not normalised to [0, 1]
    meta = P.phantom_meta(small)
    assert meta["params"] == {"n_train": 4, "n_validate": 1, "n_test": 1, "n_slices": N, "seed": 3}
    assert len(meta["case_weeks"]) == 6 and all("fill" in r["params"] for r in meta["case_weeks"])
    json.dumps(meta)  # parameters stay JSON-serialisable


def test_anatomy_follows_slice_position(small):
    for cws in _index(small).values():
        for files in cws.values():
            imgs, labs = _stack(files)
            assert labs.max() <= 5
            present = np.array([[np.any(lab == k) for k in range(6)] for lab in labs])  # (N, 6)
            assert present[:, 1].all() and present[:, 2].all()  # body and bones everywhere
            assert not present[:2, 3].any()  # no bladder in the lowest slices
            assert present[N // 2 :, 3].any()  # bladder in the upper half
            assert present[1 : N // 2, 5].any()  # prostate in the lower-middle
            assert not present[-3:, 5].any()  # ... and not near the top
            assert present[N // 3, 4] and not present[-1, 4]  # rectum, except the highest
            # anterior is at the low end of axis 1: bladder in front of the rectum
            s = int(np.flatnonzero(present[:, 3] & present[:, 4])[0])
            ap = np.arange(labs.shape[2])
            bl = (labs[s] == 3).sum(0) @ ap / (labs[s] == 3).sum()
            re = (labs[s] == 4).sum(0) @ ap / (labs[s] == 4).sum()
            assert bl < re


def test_background_is_noise_not_zero(small):
    files = next(iter(_index(small)["validate"].values()))
    imgs, labs = _stack(files)
    bg = imgs[labs == 0].astype(np.float64)
    body = imgs[labs == 1].astype(np.float64)
    assert bg.mean() > 0 and bg.std() > 0 and np.mean(bg > 0) > 0.3
    assert bg.mean() < 0.2 * body.mean()


def test_noise_switch_leaves_out_the_rician_noise_alone():
    """noise=False is the slice the noise is added to: the same as a week without noise,
    and different from the noisy slice only by noise (same anatomy, texture and labels)."""
    rng = np.random.default_rng(5)
    case = P.sample_case(rng)
    week = P.sample_week(rng, case)
    quiet, lab = P.phantom_slice(case, week, 20, 60, rng=np.random.default_rng(1), noise=False)
    silent, _ = P.phantom_slice(case, dict(week, noise=0.0), 20, 60, rng=np.random.default_rng(1))
    noisy, lab2 = P.phantom_slice(case, week, 20, 60, rng=np.random.default_rng(1))
    np.testing.assert_allclose(quiet, silent, atol=1e-6)
    assert np.array_equal(lab, lab2) and not np.allclose(quiet, noisy)
    assert abs(float(np.mean(noisy - quiet))) < 0.05 and float(np.std(noisy - quiet)) > 0.3 * week["noise"]


def test_intensity_ordering_on_clean_slice():
    rng = np.random.default_rng(11)
    case = P.sample_case(rng)
    week = dict(P.sample_week(rng, case), fill=0.9)
    s = 40  # upper-middle: bladder, fat, muscle and bone all present
    img, lab = P.phantom_slice(case, week, s, 60, clean=True)
    tis = P.tissue_slice(case, week, s, 60)
    assert img.shape == lab.shape == tis.shape == (256, 128) and img.dtype == np.float32

    def med(name):
        sel = tis == P.TISSUE_NAMES.index(name)
        assert sel.sum() > 10, name
        return float(np.median(img[sel]))

    assert med("urine") > med("fat") > med("marrow") > med("muscle") > med("cortex")
    assert med("cortex") < 0.1
    assert np.mean(img[lab == 0] == 0) > 0.9  # no noise; only the skin's partial volume
    noisy, lab2 = P.phantom_slice(case, week, s, 60)
    assert np.array_equal(lab, lab2) and noisy[lab == 0].mean() > 0


def test_wide_case_week_is_drawn_at_its_size():
    rng = np.random.default_rng(2)
    case = P.sample_case(rng)
    week = P.sample_week(rng, case)
    img, lab = P.phantom_slice(case, week, 30, 60, shape=(256, 144), rng=np.random.default_rng(0))
    assert img.shape == lab.shape == (256, 144)
    ap = np.flatnonzero(lab.any(0))
    assert ap[0] > 2 and ap[-1] < 141  # the body sits inside the larger field, margins both sides


def test_deterministic_and_seed_dependent(tmp_path):
    # one writer process and three give the same release: each case-week has its own RNG
    a = P.write_phantom(tmp_path / "a", 2, 0, 0, n_slices=4, seed=5, progress=False, workers=1)
    b = P.write_phantom(tmp_path / "b", 2, 0, 0, n_slices=4, seed=5, progress=False, workers=3)
    c = P.write_phantom(tmp_path / "c", 2, 0, 0, n_slices=4, seed=6, progress=False)
    fa = sorted(p.relative_to(a) for p in a.rglob("*.nii.gz"))
    assert fa == sorted(p.relative_to(b) for p in b.rglob("*.nii.gz")) and len(fa) == 16
    for rel in fa:
        assert np.array_equal(_load(a / rel), _load(b / rel)), rel
    assert json.loads((a / P.META_NAME).read_text()) == json.loads((b / P.META_NAME).read_text())
    img_a = [_load(p) for p in sorted(P.image_dir(a, "train").iterdir())]
    img_c = [_load(p) for p in sorted(P.image_dir(c, "train").iterdir())]
    assert any(x.shape != y.shape or not np.array_equal(x, y) for x, y in zip(img_a, img_c))


def test_phantom_slice_deterministic_given_rng():
    case = P.sample_case(np.random.default_rng(0))
    week = P.sample_week(np.random.default_rng(1), case)
    x1, l1 = P.phantom_slice(case, week, 20, 60, rng=np.random.default_rng(9))
    x2, l2 = P.phantom_slice(case, week, 20, 60, rng=np.random.default_rng(9))
    x3, _ = P.phantom_slice(case, week, 20, 60, rng=np.random.default_rng(10))
    assert np.array_equal(x1, x2) and np.array_equal(l1, l2) and not np.array_equal(x1, x3)
    assert 0.5 < float(np.percentile(x1, 99.5)) < 1.3  # about [0, 1] before the case scale


def test_ensure_phantom_reuses_and_regenerates(tmp_path):
    out = tmp_path / "ph"
    P.ensure_phantom(out, 1, 0, 1, n_slices=3, seed=0, progress=False)
    meta = out / P.META_NAME
    stamp = meta.stat().st_mtime_ns
    assert P.ensure_phantom(out, 1, 0, 1, n_slices=3, seed=0, progress=False) == out.resolve()
    assert meta.stat().st_mtime_ns == stamp  # reused, not rewritten
    P.ensure_phantom(out, 1, 0, 1, n_slices=3, seed=1, progress=False)  # parameter change
    assert P.phantom_meta(out)["params"]["seed"] == 1
    victim = next(P.image_dir(out, "test").iterdir())
    victim.unlink()  # an incomplete phantom is rebuilt
    P.ensure_phantom(out, 1, 0, 1, n_slices=3, seed=1, progress=False)
    assert victim.exists()


def test_interrupted_write_leaves_nothing(tmp_path, monkeypatch):
    calls = []

    def boom(*args):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args)

    real = release._write_case_week
    monkeypatch.setattr(release, "_write_case_week", boom)  # where write_phantom looks it up
    with pytest.raises(KeyboardInterrupt):
        P.write_phantom(tmp_path / "ph", 2, 1, 0, n_slices=2, progress=False, workers=1)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(
    __import__("multiprocessing").get_start_method() != "fork",
    reason="the patched writer reaches the worker processes only when they are forked",
)
def test_a_failing_writer_process_leaves_nothing(tmp_path, monkeypatch):
    real = release._write_case_week

    def boom(root, row, *args):
        if row["split"] == "validate":
            raise RuntimeError("disk full")
        return real(root, row, *args)

    monkeypatch.setattr(release, "_write_case_week", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        P.write_phantom(tmp_path / "ph", 2, 1, 0, n_slices=2, progress=False, workers=2)
    assert list(tmp_path.iterdir()) == []


def test_bad_input_is_refused(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="refusing to overwrite"):
        P.write_phantom(tmp_path / "mine", 1, 0, 0, n_slices=2, progress=False)
    assert (tmp_path / "mine" / "notes.txt").exists()
    with pytest.raises(ValueError, match="n_slices"):
        P.write_phantom(tmp_path / "x", 1, 0, 0, n_slices=0, progress=False)
    with pytest.raises(ValueError, match="n_train"):
        P.ensure_phantom(tmp_path / "x", -1, 0, 0, progress=False)
    case = P.sample_case(np.random.default_rng(0))
    week = P.sample_week(np.random.default_rng(0), case)
    with pytest.raises(ValueError, match="slice_idx=60"):
        P.phantom_slice(case, week, 60, 60)


def test_parameters_are_json_and_vary():
    cases = [P.sample_case(np.random.default_rng(i)) for i in range(5)]
    weeks = [P.sample_week(np.random.default_rng(10 + i), cases[0]) for i in range(5)]
    for d in cases + weeks:
        assert json.loads(json.dumps(d)) == d
    assert len({c["body_a"] for c in cases}) == 5 and len({w["fill"] for w in weeks}) == 5
    assert all(200 <= c["scale"] <= 4000 for c in cases)


@pytest.mark.parametrize(
    "axes, shape, flip",
    [
        (("AP", "LR"), (128, 256), lambda a: a.T),
        (("LR", "PA"), (256, 128), lambda a: a[:, ::-1]),
        (("RL", "AP"), (256, 128), lambda a: a[::-1]),
    ],
)
def test_orientation_is_one_constant(monkeypatch, axes, shape, flip):
    case = P.sample_case(np.random.default_rng(4))
    week = P.sample_week(np.random.default_rng(5), case)
    ref, ref_lab = P.phantom_slice(case, week, 25, 60, rng=np.random.default_rng(1))
    monkeypatch.setattr(canvas, "SLICE_AXES", axes)  # where the renderer looks it up
    img, lab = P.phantom_slice(case, week, 25, 60, shape=shape, rng=np.random.default_rng(1))
    assert img.shape == lab.shape == shape
    assert np.array_equal(img, flip(ref)) and np.array_equal(lab, flip(ref_lab))
