"""Data layer: naming, discovery, reading, harmonising, normalising, caching."""

from __future__ import annotations

import gzip
import json
import os
import sys
import types

import nibabel as nib
import numpy as np
import pytest
from conftest import label_from, smooth_image, write_nifti

from hipgen_utils import config, data, data_types, decode_cache, nifti, preprocess
from hipgen_utils.data import BadFileError, DataError


def _count_reads(monkeypatch):
    """Count NIfTI files the data layer opens (serial decoding path)."""
    calls = []
    real = nifti._open_nifti

    def counting(path):
        calls.append(str(path))
        return real(path)

    monkeypatch.setattr(nifti, "_open_nifti", counting)
    return calls


# ----------------------------------------------------------------------------- names, roots


def test_parse_slice_name_good_and_bad():
    assert data.parse_slice_name("case_004_week_1_slice_17.nii.gz") == ("case", 4, 1, 17)
    assert data.parse_slice_name("/x/y/seg_120_week_0_slice_0.nii") == ("seg", 120, 0, 0)
    for bad in (
        "case_004_week_1_slice_17.nii.gz.bak",
        "case_4_slice_17.nii.gz",
        "Case_004_week_1_slice_17.nii.gz",
        "case_004_week_1_slice_x.nii.gz",
        ".DS_Store",
    ):
        with pytest.raises(DataError, match="not a HipMRI slice name"):
            data.parse_slice_name(bad)


def test_find_root_errors_name_the_folder(tmp_path, make_hipmri):
    with pytest.raises(DataError) as e:
        data.find_root(tmp_path)
    msg = str(e.value)
    assert str(tmp_path) in msg and "keras_slices_train/" in msg and "\n" not in msg
    with pytest.raises(DataError, match="does not exist"):
        data.find_root(tmp_path / "nope")
    root = make_hipmri("release/HipMRI_study_keras_slices_data")
    assert data.find_root(root) == root.resolve()
    assert data.find_root(tmp_path / "release") == root.resolve()  # one level above is fine


def test_list_split_sorted_and_paired(make_hipmri):
    root = make_hipmri(n_case_weeks={"train": 3}, n_slices=3)
    infos = data.list_split(root, "train")
    keys = [(i.case, i.week, i.slice) for i in infos]
    assert keys == sorted(keys) and len(keys) == 9
    assert (1, 1, 2) in keys and (2, 0, 0) in keys
    for i in infos:
        assert os.path.basename(i.label_path) == os.path.basename(i.path).replace("case_", "seg_")
    with pytest.raises(DataError, match=r"no keras_slices_test/ folder; expected"):
        data.list_split(root, "test")
    (root / "keras_slices_validate").mkdir()
    with pytest.raises(DataError, match=r"keras_slices_validate is empty"):
        data.list_split(root, "validate")
    with pytest.raises(DataError, match="unknown split"):
        data.list_split(root, "training")


def test_split_without_label_folder(make_hipmri):
    root = make_hipmri(n_case_weeks={"test": 1}, with_labels=False)
    assert all(i.label_path is None for i in data.list_split(root, "test"))
    s = data.load_split(root, "test", progress=False)
    assert s.labels is None and s.label_values is None and len(s) == 4


def test_stray_files_raise_or_are_skipped(make_hipmri):
    root = make_hipmri(n_case_weeks={"train": 1})
    folder = root / "keras_slices_train"
    (folder / ".DS_Store").write_bytes(b"\0\1")  # hidden: ignored silently
    (folder / "notes.txt").write_text("hi")
    with pytest.raises(BadFileError, match=r"notes\.txt: not a NIfTI file name"):
        data.list_split(root, "train")
    skipped = []
    assert len(data.list_split(root, "train", skipped=skipped)) == 4
    assert skipped == [(str(folder / "notes.txt"), "not a NIfTI file name")]
    (folder / "case_009_week_0_slice_0.nii.gz").symlink_to(folder / "gone.nii.gz")
    skipped = []
    assert len(data.list_split(root, "train", skipped=skipped)) == 4
    assert "dangling link" in dict(skipped)[str(folder / "case_009_week_0_slice_0.nii.gz")]


# ----------------------------------------------------------------------------- reading


def test_read_singleton_and_dtype_kept(tmp_path):
    rng = np.random.default_rng(0)
    img = smooth_image(rng, (256, 128), 3000, np.int16)
    p = write_nifti(tmp_path / "case_001_week_0_slice_0.nii.gz", img[..., None])
    out = nifti.read_nifti_slice(p)
    assert out.shape == (256, 128) and out.dtype == np.int16
    np.testing.assert_array_equal(out, img)
    # uncompressed .nii and NIfTI-2 (the slow nib.load path) read the same pixels
    p1 = write_nifti(tmp_path / "a.nii", img)
    p2 = tmp_path / "b.nii.gz"
    nib.save(nib.Nifti2Image(img, np.eye(4)), str(p2))
    for p in (p1, p2):
        np.testing.assert_array_equal(nifti.read_nifti_slice(p), img)


def _bad_files(tmp_path):
    """name -> (path, expected words in the reason)."""
    rng = np.random.default_rng(1)
    good = write_nifti(tmp_path / "good.nii.gz", smooth_image(rng))
    blob = good.read_bytes()
    out = {}
    p = tmp_path / "case_001_week_0_slice_0.nii.gz"
    p.write_bytes(blob[: len(blob) // 2])
    out["truncated"] = (p, "corrupt or truncated")
    p = tmp_path / "case_001_week_0_slice_6.nii.gz"
    flipped = bytearray(blob)
    flipped[len(blob) // 2 : len(blob) // 2 + 64] = bytes(64)
    p.write_bytes(bytes(flipped))
    out["corrupt"] = (p, "corrupt or truncated")
    p = tmp_path / "case_001_week_0_slice_7.nii"
    p.write_bytes(np.random.default_rng(4).bytes(4000))
    out["random_nii"] = (p, "not a NIfTI file")
    p = tmp_path / "case_001_week_0_slice_1.nii.gz"
    p.write_bytes(np.random.default_rng(2).bytes(4000))
    out["random"] = (p, "not a gzip file")
    p = tmp_path / "case_001_week_0_slice_2.nii.gz"
    p.write_bytes(gzip.compress(np.random.default_rng(3).bytes(4000)))
    out["not_nifti"] = (p, "not a NIfTI file")
    out["volume"] = (
        write_nifti(tmp_path / "case_001_week_0_slice_3.nii.gz", rng.random((64, 32, 5))),
        "3-D volume (64x32x5)",
    )
    nan = smooth_image(rng)
    nan[3, 4] = np.nan
    out["nan"] = (write_nifti(tmp_path / "case_001_week_0_slice_4.nii.gz", nan), "NaN/Inf")
    p = tmp_path / "case_001_week_0_slice_5.nii.gz"
    p.write_bytes(b"")
    out["empty"] = (p, "empty file")
    return out


@pytest.mark.parametrize(
    "kind", ["truncated", "corrupt", "random", "random_nii", "not_nifti", "volume", "nan", "empty"]
)
def test_bad_files_give_one_line_naming_the_file(tmp_path, kind):
    path, words = _bad_files(tmp_path)[kind]
    with pytest.raises(BadFileError) as e:
        nifti.read_nifti_slice(path)
    assert e.value.path == str(path)
    assert str(e.value).startswith(f"{path}: ") and words in str(e.value)
    assert "\n" not in str(e.value) and e.value.__cause__ is None


# ----------------------------------------------------------------------------- harmonise, normalise


def test_harmonise_resize_and_crop_images():
    rng = np.random.default_rng(0)
    img = rng.random((256, 144)).astype(np.float32)
    r = preprocess.harmonise(img, (256, 128), "resize")
    assert r.shape == (256, 128) and r.dtype == np.float32
    assert 0.0 <= r.min() and r.max() <= 1.0
    c = preprocess.harmonise(img, (256, 128), "crop")
    np.testing.assert_array_equal(c, img[:, 8:136])  # centre crop, 8 columns each side
    p = preprocess.harmonise(img[:, :120], (256, 128), "crop")
    assert (p[:, :4] == 0).all() and (p[:, 124:] == 0).all()
    np.testing.assert_array_equal(p[:, 4:124], img[:, :120])
    with pytest.raises(DataError, match="unknown resize mode"):
        preprocess.harmonise(img, mode="stretch")


@pytest.mark.parametrize("mode", ["resize", "crop"])
def test_harmonise_labels_stay_integer(mode):
    lab = label_from(smooth_image(np.random.default_rng(0), (256, 144))).astype(np.int16)
    out = preprocess.harmonise(lab, (256, 128), mode, is_label=True)
    assert out.shape == (256, 128) and out.dtype == np.int16
    assert set(np.unique(out)) <= set(np.unique(lab)) and len(np.unique(out)) == 6
    # only 0 and 5 in, so any interpolation would show up as 1..4 at the edges
    two = np.where(lab > 2, 5, 0).astype(np.uint8)
    out = preprocess.harmonise(two, (256, 128), mode, is_label=True)
    assert out.dtype == np.uint8 and set(np.unique(out)) == {0, 5}


@pytest.mark.parametrize("dtype,scale", [(np.int16, 4000.0), (np.float64, 1e7), (np.uint8, 255.0)])
@pytest.mark.parametrize("method", ["robust", "minmax", "zscore"])
def test_normalise_any_dtype_and_scale(dtype, scale, method):
    img = smooth_image(np.random.default_rng(0), (64, 32), scale, dtype)
    out = preprocess.normalise(img, method)
    assert out.dtype == np.float32 and out.shape == img.shape
    assert out.min() >= 0.0 and out.max() <= 1.0 and out.max() - out.min() > 0.5
    # invariant to the stored scale and offset, up to quantisation of the integer dtypes
    ref = preprocess.normalise(img.astype(np.float64) / scale * 3.0 + 7.0, method)
    np.testing.assert_allclose(out, ref, atol=1e-5)


def test_normalise_robust_clips_outliers_and_rejects_constant():
    img = np.tile(np.linspace(0, 1, 100), (100, 1))
    img[0, 0] = 1e6  # one hot voxel must not squash the rest into ~0
    out = preprocess.normalise(img, "robust")
    assert out[50, 50] == pytest.approx(0.5, abs=0.02) and out[0, 0] == 1.0
    with pytest.raises(BadFileError, match=r"^slice_7\.nii\.gz: constant image"):
        preprocess.normalise(np.full((8, 8), 3.0), path="slice_7.nii.gz")
    with pytest.raises(DataError, match="unknown normalisation"):
        preprocess.normalise(img, "histeq")


# ----------------------------------------------------------------------------- load_split


def test_load_split_basic(make_hipmri):
    root = make_hipmri(scale=2500.0)
    s = data.load_split(root, "train", progress=False)
    assert len(s) == 8 and s.images.shape == (8, 256, 128) and s.images.dtype == np.float32
    assert float(s.images.min()) >= 0.0 and float(s.images.max()) <= 1.0
    assert s.labels.shape == (8, 256, 128) and s.labels.dtype == np.uint8
    assert s.label_values == [0, 1, 2, 3, 4, 5] and int(s.labels.max()) == 5
    assert s.case.tolist() == [1] * 8 and s.week.tolist() == [0] * 4 + [1] * 4
    assert s.slice.tolist() == [0, 1, 2, 3] * 2
    assert s.raw_dtypes == ["float32"] * 8 and s.raw_shapes == [(256, 128)] * 8
    assert s.raw_max.max() == pytest.approx(2500.0) and s.skipped == []
    # labels really are the files' labels, row for row
    lab = nib.load(s.paths[5].replace("keras_slices_train/case_", "keras_slices_seg_train/seg_"))
    np.testing.assert_array_equal(s.labels[5], np.asanyarray(lab.dataobj))
    assert len(data.load_split(root, "validate", progress=False)) == 4


@pytest.mark.parametrize("mode", ["resize", "crop"])
def test_mixed_widths_and_singleton_harmonised(make_hipmri, mode):
    root = make_hipmri(n_case_weeks={"train": 1}, n_slices=2, singleton=True)
    rng = np.random.default_rng(5)
    wide = smooth_image(rng, (256, 144), 900.0, np.int16)
    write_nifti(root / "keras_slices_train/case_009_week_2_slice_0.nii.gz", wide)
    write_nifti(root / "keras_slices_seg_train/seg_009_week_2_slice_0.nii.gz", label_from(wide))
    how = "resized" if mode == "resize" else "centre-cropped"
    with pytest.warns(UserWarning, match=f"1 of 3 slices are not 256x128 on disk \\(1 of 256x144\\) and were {how}"):
        s = data.load_split(root, "train", resize_mode=mode, progress=False)
    assert s.images.shape == (3, 256, 128) and s.labels.shape == (3, 256, 128)
    assert s.raw_shapes == [(256, 128, 1), (256, 128, 1), (256, 144)]
    assert s.raw_dtypes == ["float32", "float32", "int16"]
    assert set(np.unique(s.labels[2])) <= set(range(6))
    norm = preprocess.normalise(wide)
    np.testing.assert_array_equal(s.images[2], preprocess.harmonise(norm, (256, 128), mode))
    if mode == "crop":
        np.testing.assert_array_equal(s.images[2], norm[:, 8:136])
    else:  # resampled, not cropped: the full field of view survives
        np.testing.assert_allclose(s.images[2][:, [0, -1]], norm[:, [0, -1]], atol=0.05)


def test_bad_file_stops_load_by_default(make_hipmri, tmp_path):
    root = make_hipmri(n_case_weeks={"test": 1}, with_labels=False)
    bad = root / "keras_slices_test/case_200_week_0_slice_9.nii.gz"
    bad.write_bytes(b"\x1f\x8b not really gzip")
    with pytest.raises(BadFileError) as e:
        data.load_split(root, "test", progress=False)
    assert bad.name in str(e.value)
    assert not any(p.name.startswith(".tmp") for p in (config.cache_dir() / "slices").iterdir())


def test_skip_bad_counts_and_lists(make_hipmri):
    root = make_hipmri(n_case_weeks={"test": 2}, n_slices=3)
    folder = root / "keras_slices_test"
    const = folder / "case_200_week_0_slice_1.nii.gz"
    write_nifti(const, np.full((256, 128), 7.0, np.float32))
    (folder / "case_200_week_1_slice_2.nii.gz").write_bytes(b"garbage")
    vol = write_nifti(folder / "case_200_week_1_slice_0.nii.gz", np.ones((256, 128, 3)))
    (folder / "readme.md").write_text("x")
    with pytest.raises(BadFileError, match="readme.md"):
        data.load_split(root, "test", progress=False)
    with pytest.warns(
        UserWarning, match=r"skipped 4 of 7 files in keras_slices_test: .*\(see \.skipped\)"
    ):
        s = data.load_split(root, "test", skip_bad=True, progress=False)
    assert len(s) == 3 and s.images.shape[0] == s.labels.shape[0] == 3
    reasons = dict(s.skipped)
    assert reasons[str(folder / "readme.md")] == "not a NIfTI file name"
    assert reasons[str(const)].startswith("constant image")
    assert reasons[str(vol)].startswith("3-D volume (256x128x3)")
    assert "not a gzip" in reasons[str(folder / "case_200_week_1_slice_2.nii.gz")]
    assert [p.split("/")[-1] for p in s.paths] == [
        "case_200_week_0_slice_0.nii.gz",
        "case_200_week_0_slice_2.nii.gz",
        "case_200_week_1_slice_1.nii.gz",
    ]
    # rows of a skip-compacted cache still line up with their files
    for i, p in enumerate(s.paths):
        np.testing.assert_array_equal(s.images[i], preprocess.normalise(nifti.read_nifti_slice(p)))
    # the cached reload reports the same skips; without skip_bad it still refuses
    with pytest.warns(UserWarning, match="skipped 4 of 7"):
        again = data.load_split(root, "test", skip_bad=True, progress=False)
    assert again.skipped == s.skipped
    (folder / "readme.md").unlink()
    with pytest.warns(UserWarning, match="skipped 3 of 6"):
        data.load_split(root, "test", skip_bad=True, progress=False)
    with pytest.raises(BadFileError, match=r"slice_1\.nii\.gz: constant image.*skip_bad=True$"):
        data.load_split(root, "test", progress=False)


def test_missing_label_and_bad_label_values(make_hipmri):
    root = make_hipmri(n_case_weeks={"train": 1}, n_slices=3)
    (root / "keras_slices_seg_train/seg_001_week_0_slice_1.nii.gz").unlink()
    with pytest.raises(
        BadFileError, match=r"slice_1\.nii\.gz: no label file \(expected seg_001_week_0_slice_1"
    ):
        data.load_split(root, "train", progress=False)
    lab = np.full((256, 128), 7, np.uint8)
    write_nifti(root / "keras_slices_seg_train/seg_001_week_0_slice_2.nii.gz", lab)
    with pytest.warns(UserWarning, match="skipped 2 of 3"):
        s = data.load_split(root, "train", skip_bad=True, progress=False)
    assert len(s) == 1 and any("outside the integers 0..5 (found 7 in 32768 voxels); remap" in r for _, r in s.skipped)


def test_orphan_labels_reported_and_duplicates_caught(make_hipmri):
    root = make_hipmri(n_case_weeks={"train": 1}, n_slices=2)
    orphan = root / "keras_slices_seg_train/seg_050_week_0_slice_0.nii.gz"
    write_nifti(orphan, np.zeros((256, 128), np.uint8))
    with pytest.warns(UserWarning, match="skipped 1 of 2"):  # not a failure, but not silent
        s = data.load_split(root, "train", cache=False, progress=False)
    assert len(s) == 2 and s.skipped == [(str(orphan), data._ORPHAN)]
    img = root / "keras_slices_train/case_001_week_0_slice_1.nii.gz"
    write_nifti(str(img)[: -len(".gz")], nifti.read_nifti_slice(img))  # same slice as .nii
    with pytest.raises(
        BadFileError,
        match=r"slice_1\.nii\.gz: duplicate slice \(same case/week/slice as case_001_week_0_slice_1\.nii\)",
    ):
        data.load_split(root, "train", progress=False)
    with pytest.warns(UserWarning, match="skipped 2 of 3"):
        s = data.load_split(root, "train", skip_bad=True, cache=False, progress=False)
    assert len(s) == 2 and s.images.shape == (2, 256, 128)


def test_cache_hit_does_not_decode(make_hipmri, monkeypatch):
    root = make_hipmri(n_case_weeks={"validate": 1})
    first = data.load_split(root, "validate", skip_bad=True, progress=False)
    assert isinstance(first.images, np.memmap) and not first.images.flags.writeable

    def boom(*a, **k):
        raise AssertionError("decoded a file on a cache hit")

    monkeypatch.setattr(nifti.nib, "load", boom)
    monkeypatch.setattr(nifti, "_open_nifti", boom)
    monkeypatch.setattr(nifti, "read_nifti_slice", boom)
    second = data.load_split(root, "validate", progress=False)  # skip_bad shares the entry
    np.testing.assert_array_equal(np.asarray(first.images), np.asarray(second.images))
    np.testing.assert_array_equal(np.asarray(first.labels), np.asarray(second.labels))
    assert second.paths == first.paths and second.raw_shapes == first.raw_shapes
    np.testing.assert_array_equal(second.raw_min, first.raw_min)
    # a different setting is a different cache entry, so it must decode (and hit boom)
    with pytest.raises(AssertionError, match="decoded"):
        data.load_split(root, "validate", norm="zscore", progress=False)
    meta = next((config.cache_dir() / "slices").glob("*/meta.json"))
    assert json.loads(meta.read_text())["version"] == decode_cache.CACHE_VERSION


def test_cache_invalidated_by_touched_or_changed_file(make_hipmri, monkeypatch):
    root = make_hipmri(n_case_weeks={"validate": 1})
    a = data.load_split(root, "validate", progress=False)
    calls = _count_reads(monkeypatch)
    data.load_split(root, "validate", progress=False)
    assert calls == []
    f = root / "keras_slices_validate/case_100_week_0_slice_2.nii.gz"
    st = f.stat()
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    data.load_split(root, "validate", progress=False)
    assert len(calls) == 8  # 4 images + 4 labels decoded again
    new = smooth_image(np.random.default_rng(9), scale=10.0)[::-1].copy()
    write_nifti(f, new)
    b = data.load_split(root, "validate", progress=False)
    np.testing.assert_array_equal(b.images[2], preprocess.normalise(new))
    assert not np.array_equal(a.images[2], b.images[2])
    np.testing.assert_array_equal(a.images[1], b.images[1])


def test_cache_false_and_process_pool_agree(make_hipmri, monkeypatch):
    root = make_hipmri(n_case_weeks={"train": 2}, n_slices=3)
    plain = data.load_split(root, "train", cache=False, progress=False, workers=1)
    assert not isinstance(plain.images, np.memmap)
    monkeypatch.setattr(decode_cache, "_POOL_MIN_FILES", 1)
    monkeypatch.setattr(decode_cache, "_CHUNK", 2)
    pooled = data.load_split(root, "train", progress=False, workers=2)
    np.testing.assert_array_equal(plain.images, pooled.images)
    np.testing.assert_array_equal(plain.labels, pooled.labels)
    assert plain.paths == pooled.paths
    (root / "keras_slices_train/case_001_week_1_slice_1.nii.gz").write_bytes(b"junk")
    with pytest.raises(BadFileError, match="case_001_week_1_slice_1"):  # raised across processes
        data.load_split(root, "train", progress=False, workers=2)
    with pytest.warns(UserWarning, match="skipped 1 of 6"):
        skipped = data.load_split(root, "train", skip_bad=True, progress=False, workers=2)
    rows = [i for i in range(6) if i != 4]  # case 1 week 1 slice 1 is row 4
    np.testing.assert_array_equal(skipped.images, plain.images[rows])
    np.testing.assert_array_equal(skipped.labels, plain.labels[rows])


def test_bad_settings_are_one_line_errors(make_hipmri):
    root = make_hipmri(n_case_weeks={"test": 1})
    with pytest.raises(DataError, match="unknown split 'testing'"):
        data.load_split(root, "testing")
    with pytest.raises(DataError, match="unknown norm"):
        data.load_split(root, "test", norm="max")
    with pytest.raises(DataError, match="two positive ints"):
        data.load_split(root, "test", shape=(256,))


# ----------------------------------------------------------------------------- resolve, describe


def test_resolve_data_dir_precedence(make_hipmri, monkeypatch, tmp_path):
    arg = make_hipmri("arg", n_case_weeks={"train": 1}, n_slices=1)
    env = make_hipmri("env", n_case_weeks={"train": 1}, n_slices=1)
    made = []

    def fake_phantom(out_dir, n_train, n_validate, n_test, n_slices, seed, progress, workers):
        made.append((n_train, n_validate, n_test, n_slices, seed))
        return make_hipmri(out_dir, n_case_weeks={"train": 1}, n_slices=1)

    # a stand-in module, so this test does not depend on the real phantom
    monkeypatch.setitem(
        sys.modules, "hipgen_utils.phantom", types.SimpleNamespace(ensure_phantom=fake_phantom)
    )
    cfg = config.DataConfig(phantom_train=3, phantom_validate=1, phantom_test=2, phantom_slices=5)
    monkeypatch.setenv("HIPMRI_DATA", str(env))
    assert data.resolve_data_dir(arg, cfg) == arg.resolve()
    assert data.resolve_data_dir(None, cfg) == env.resolve()
    assert data.resolve_data_dir(None, config.DataConfig(data_dir=str(arg))) == arg.resolve()
    monkeypatch.setenv("HIPMRI_DATA", str(tmp_path / "missing"))
    with pytest.raises(DataError, match=r"missing: folder does not exist.*from \$HIPMRI_DATA"):
        data.resolve_data_dir(None, cfg)
    monkeypatch.delenv("HIPMRI_DATA")
    got = data.resolve_data_dir(None, cfg)
    assert made == [(3, 1, 2, 5, 0)]
    assert got == (config.cache_dir() / "phantom_3_1_2_5_s0").resolve()


def test_describe_census(make_hipmri, nifti_writer):
    root = make_hipmri(n_case_weeks={"train": 2, "test": 1}, n_slices=2, dtype=np.int16)
    nifti_writer(
        root / "keras_slices_train/case_005_week_0_slice_0.nii.gz",
        smooth_image(np.random.default_rng(1), (256, 144), 50.0),
    )
    nifti_writer(
        root / "keras_slices_seg_train/seg_005_week_0_slice_0.nii.gz",
        np.zeros((256, 144), np.uint8),
    )
    (root / "keras_slices_test/case_200_week_0_slice_7.nii.gz").write_bytes(b"bad")
    d = data.describe(root, progress=False)
    json.dumps(d)  # JSON-serialisable
    tr, te = d["splits"]["train"], d["splits"]["test"]
    assert tr["n_files"] == 5 and tr["n_case_weeks"] == 3
    assert tr["shapes"] == {"256x128": 4, "256x144": 1}
    assert tr["dtypes"] == {"int16": 4, "float32": 1}
    assert tr["intensity_range"][0] == 0.0 and tr["intensity_range"][1] == 1000.0
    assert tr["labels"] == [0, 1, 2, 3, 4, 5] and tr["skipped"] == []
    assert te["n_files"] == 3 and te["n_slices"] == 2 and len(te["skipped"]) == 1
    assert (
        "validate" in d["splits"]
        and "no keras_slices_validate/" in d["splits"]["validate"]["error"]
    )


def test_builtin_phantom_loads():
    phantom = pytest.importorskip("hipgen_utils.phantom")
    if not hasattr(phantom, "ensure_phantom"):
        pytest.skip("hipgen_utils.phantom has no ensure_phantom yet")
    cfg = config.DataConfig(phantom_train=1, phantom_validate=1, phantom_test=1, phantom_slices=2)
    root = data.resolve_data_dir(None, cfg, progress=False)
    s = data.load_split(root, "train", progress=False)
    assert s.images.shape[1:] == data.IMAGE_SHAPE and len(s) == 2


def test_data_reexports_what_callers_import_from_it():
    """The CLI, the pipeline and notebook 01 import these from hipgen_utils.data."""
    assert data.read_nifti_slice is nifti.read_nifti_slice
    for name in ("DataError", "BadFileError", "SliceInfo", "SliceSet"):
        assert getattr(data, name) is getattr(data_types, name)
    assert data.IMAGE_SHAPE is preprocess.IMAGE_SHAPE


def test_census_lines_say_each_split_and_every_skipped_file():
    info = {
        "root": "/data/hipmri",
        "splits": {
            "train": {"n_files": 12, "n_case_weeks": 2, "shapes": {"256x128": 11, "256x144": 1},
                      "dtypes": {"float32": 12}, "intensity_range": [0.0, 1234.5], "labels": [0, 1, 2],
                      "skipped": [["/data/x.nii.gz", "not a NIfTI file"]]},  # fmt: skip
            "test": {"error": "no folder keras_slices_test"},
        },
    }
    lines = data.census_lines(info)
    assert lines[0] == "HipMRI data at /data/hipmri"
    train = "\n".join(line for line in lines if "train" in line or line.startswith(" " * 12))
    for part in ("12 files", "2 case-weeks", "256x144", "[0, 1.23e+03]", "[0, 1, 2]", "skipped 1",
                 "skipped /data/x.nii.gz: not a NIfTI file"):  # fmt: skip
        assert part in train, part
    assert any("test" in line and "no folder keras_slices_test" in line for line in lines)
