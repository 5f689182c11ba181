"""One home per decision: the release layout (hipgen_utils.layout) and the atomic write
(hipgen_utils.checkpoints.atomic_write) are defined once and used everywhere."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hipgen_utils import checkpoints, codes, data, layout, phantom, pipeline, plotting


def test_every_module_names_splits_and_classes_from_the_layout():
    assert data.SPLITS is phantom.SPLITS is pipeline.SPLITS is codes.CODE_SPLITS is layout.SPLITS
    assert data.LABEL_NAMES is phantom.LABEL_NAMES is plotting.LABEL_NAMES is layout.LABEL_NAMES
    assert data.N_CLASSES == len(layout.LABEL_NAMES) == len(plotting.LABEL_COLOURS)


def test_names_the_phantom_writes_are_names_the_loader_reads(tmp_path):
    name, seg = layout.image_name(7, 2, 31), layout.label_name(7, 2, 31)
    assert (name, seg) == ("case_007_week_2_slice_31.nii.gz", "seg_007_week_2_slice_31.nii.gz")
    assert layout.IMAGE_RE.match(name) and layout.LABEL_RE.match(seg)
    assert layout.FILE_RE.match(name).groups() == ("case", "007", "2", "31")
    assert layout.FILE_RE.match("case_7_week_2_slice_31.nii")  # the loader is more lenient
    assert phantom.image_dir(tmp_path, "test") == tmp_path / layout.image_folder("test") == tmp_path / "keras_slices_test"
    assert phantom.label_dir(tmp_path, "test").name == layout.label_folder("test") == "keras_slices_seg_test"


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path):
    path = checkpoints.write_json(tmp_path / "a.json", {"x": 1})
    assert json.loads(path.read_text()) == {"x": 1}

    def broken(tmp):
        with open(tmp, "w") as f:
            f.write("half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        checkpoints.atomic_write(path, broken)
    assert json.loads(path.read_text()) == {"x": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"], "the temp file must be removed"


def test_the_code_grid_has_one_home():
    import inspect

    from hipgen_utils import config, sampling, widgets

    assert config.CODE_GRID == config.code_grid() == (64, 32)
    assert config.code_grid(config.DataConfig(height=128, width=96)) == (32, 24)
    for fn in (sampling.sample, sampling.sample_naive, pipeline.generate, widgets.SamplerPanel.__init__):
        assert inspect.signature(fn).parameters["shape"].default is config.CODE_GRID


def test_evenly_spaced_picks():
    from hipgen_utils.metrics import evenly_spaced

    assert evenly_spaced(10, 4).tolist() == [0, 3, 6, 9]
    assert evenly_spaced(3, 8).tolist() == [0, 1, 2]  # all of them when there are few
    assert evenly_spaced(0, 4).tolist() == []
    assert evenly_spaced(120, 6).dtype == np.int64


def test_cli_sampling_defaults_come_from_sample_config():
    from hipgen_utils.cli import build_parser
    from hipgen_utils.config import SampleConfig

    args = build_parser().parse_args(["predict", "--run_dir", "r", "--out", "o.png"])
    want = SampleConfig()
    assert (args.n, args.seed) == (want.n_samples, want.seed)
    # temperature and lead lines: the profile's, filled in when the command runs (demo and full differ)
    from hipgen_utils.cli import _sampling_defaults
    from hipgen_utils.config import get_profile

    for profile in ("demo", "full"):
        args = build_parser().parse_args(["predict", "--run_dir", "r", "--out", "o.png", "--profile", profile])
        assert args.temperature is None and args.lead_lines is None
        _sampling_defaults(args)
        sample = get_profile(profile).sample
        assert (args.temperature, args.lead_lines, args.top_k) == (sample.temperature, sample.lead_lines, sample.top_k)
    assert get_profile("demo").sample.temperature != get_profile("full").sample.temperature
    args = build_parser().parse_args(["evaluate", "--run_dir", "r", "--temperature", "0.9", "--lead_lines", "0",
                                      "--top_k", "5"])  # fmt: skip
    _sampling_defaults(args)
    assert (args.temperature, args.lead_lines, args.top_k) == (0.9, 0, 5)  # given: kept
