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


def test_lowest_slices_spreads_over_the_low_positions_lowest_first():
    slices = np.array([30, 2, 11, 0, 5, 59, 8, 12, 13])
    pick = pipeline.lowest_slices(slices, 3, 12)
    assert slices[pick].tolist() == [0, 5, 12]  # of 0, 2, 5, 8, 11, 12: first, middle, last
    assert slices[pipeline.lowest_slices(slices, 6, 12)].tolist() == [0, 2, 5, 8, 11, 12]
    with pytest.raises(ValueError, match="only 6 slices at positions <= 12; ask for at most 6"):
        pipeline.lowest_slices(slices, 7, 12)


def test_complete_slices_keeps_the_first_half_and_samples_the_rest(trained_parts):
    prior, vq, codes, _, _ = trained_parts
    grids, slices = np.asarray(codes["codes_test"][:2]), np.asarray(codes["slice_test"][:2])
    k = grids.shape[1] // 2  # order "lr": rows
    out, images = pipeline.complete_slices(prior, vq, grids, slices, temperature=1.0, seed=3)
    assert out.shape == grids.shape and images.shape == (2, 4 * grids.shape[1], 4 * grids.shape[2])
    assert np.array_equal(out[:, :k], grids[:, :k])  # the kept half is the given codes
    assert not np.array_equal(out[:, k:], grids[:, k:])  # the rest is drawn, not copied
    again, _ = pipeline.complete_slices(prior, vq, grids, slices, temperature=1.0, seed=3)
    assert np.array_equal(out, again)  # seeded
    if prior.n_conditions:
        with pytest.raises(ValueError, match="conditional on slice position"):
            pipeline.complete_slices(prior, vq, grids)
