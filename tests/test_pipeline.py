"""Pipeline steps on the tiny trained run (conftest `trained`): the temperature sweep."""

import numpy as np
import pytest

from hipgen_utils import pipeline


def test_temperature_sweep_one_row_per_temperature_with_shared_references(trained_parts):
    prior, vq, codes, splits, _ = trained_parts
    rows = pipeline.temperature_sweep(prior, vq, codes, splits, (0.5, 1.0, 2.0), n_samples=4)
    assert [r["temperature"] for r in rows] == [0.5, 1.0, 2.0]
    # the floor and ceiling do not depend on the temperature; the samples do
    assert len({r["fid_test_vs_train"] for r in rows}) == 1 and len({r["fid_unigram"] for r in rows}) == 1
    assert len({r["fid_samples"] for r in rows}) == 3
    for r in rows:
        assert np.isfinite(r["fid_samples"]) and 0 <= r["frac_near_copies"] <= 1
    # seeded: the same call gives the same numbers
    again = pipeline.temperature_sweep(prior, vq, codes, splits, (1.0,), n_samples=4)
    assert again[0]["fid_samples"] == rows[1]["fid_samples"]


@pytest.mark.parametrize("temps", [(), (0.0, 1.0), (-1.0,)])
def test_temperature_sweep_rejects_bad_temperatures(trained_parts, temps):
    prior, vq, codes, splits, _ = trained_parts
    with pytest.raises(ValueError, match="must be a non-empty list of values > 0"):
        pipeline.temperature_sweep(prior, vq, codes, splits, temps, n_samples=4)
