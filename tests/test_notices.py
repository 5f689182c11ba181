"""What the data loader reports reaches a notebook as one plain line, the CLI as its own line."""

import warnings

import numpy as np
import pytest
from conftest import smooth_image, write_nifti

from hipgen_utils import notices, pipeline
from hipgen_utils.config import DataConfig
from hipgen_utils.run import Run


@pytest.fixture
def odd_release(make_hipmri):
    """A train split with one slice of another shape (it is resized on load)."""
    root = make_hipmri(n_case_weeks={"train": 1}, n_slices=2, with_labels=False)
    write_nifti(root / "keras_slices_train/case_050_week_0_slice_0.nii.gz", smooth_image(np.random.default_rng(1), (256, 144)))
    return root


@pytest.fixture
def restore_showwarning():
    shown = warnings.showwarning
    yield
    warnings.showwarning = shown


def test_load_splits_passes_the_loaders_report_on_as_a_notice_from_its_caller(odd_release):
    with pytest.warns(notices.DataNotice, match=r"keras_slices_train: 1 of 3 slices are not 256x128") as rec:
        pipeline.load_splits(DataConfig(data_dir=str(odd_release)), ("train",), progress=False)
    assert [w.filename for w in rec] == [__file__]  # the line that loaded, not pipeline.py


def test_other_warnings_pass_through_unchanged():
    with pytest.warns(RuntimeWarning, match="something else") as rec:
        with notices.loader_notices():
            warnings.warn("something else", RuntimeWarning, stacklevel=1)
    assert [w.category for w in rec] == [RuntimeWarning]


def test_in_a_notebook_the_report_is_one_plain_printed_line(odd_release, tmp_path, capsys, restore_showwarning):
    Run.open("ci", tmp_path / "run", data_dir=odd_release)  # what every notebook's first cell does
    capsys.readouterr()
    pipeline.load_splits(DataConfig(data_dir=str(odd_release)), ("train",), progress=False)
    out, err = capsys.readouterr()
    assert err == ""
    assert out.splitlines() == [
        "warning: keras_slices_train: 1 of 3 slices are not 256x128 on disk (1 of 256x144) and were resized to it"
    ]
