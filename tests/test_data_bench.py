"""`hipgen bench data`: every step runs, is measured in its own process, and lands in the table."""

from __future__ import annotations

import mmap
import sys
import time

import numpy as np
import pytest

from hipgen_utils import bench, data_bench
from hipgen_utils.cli import build_parser
from hipgen_utils.config import ConfigError


@pytest.fixture
def small(monkeypatch):
    """The scoring steps' sample counts cut down (their cost does not depend on the data)."""
    monkeypatch.setattr(data_bench, "N_SAMPLES", 4)
    monkeypatch.setattr(data_bench, "SWEEP", (2, 3))


def test_every_step_runs_on_a_small_release(make_hipmri, small, one_torch_thread):
    root = make_hipmri(n_case_weeks={"train": 2, "validate": 1, "test": 1}, n_slices=4)
    counts = {"train": 8, "validate": 4, "test": 4}
    for name in data_bench.STEPS:
        out = data_bench.run_step(name, root)
        if name.startswith("load cold "):
            assert out["slices"] == counts[name.rsplit(" ", 1)[1]]
        else:
            assert out["slices"] in (4, 12, 16), name
    assert data_bench.run_step("encode every split", root)["note"].startswith("codes.npz ")
    with pytest.raises(ValueError, match="unknown data benchmark step 'nope'"):
        data_bench.run_step("nope", root)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
def test_peak_memory_sees_what_a_step_holds():
    with data_bench.PeakMemory() as mem:
        # 64 MB of fresh anonymous pages (a numpy array could reuse heap pages an earlier test
        # freed, already resident), touched, held until a sample sees them (at most 5 s: a
        # loaded machine may not run the sampling thread for a while)
        pages = mmap.mmap(-1, 64 * 2**20, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        block = np.frombuffer(pages, dtype=np.uint8)
        block[:] = 1
        deadline = time.monotonic() + 5
        while mem.anon - mem.start_anon <= 50 and time.monotonic() < deadline:
            time.sleep(0.02)
        del block
        pages.close()
    assert mem.anon - mem.start_anon > 50 and mem.rss > mem.anon


def test_a_step_is_measured_in_its_own_process(make_hipmri, tmp_path):
    root = make_hipmri(n_case_weeks={"train": 1, "validate": 1, "test": 1}, n_slices=2)
    r = data_bench.measure_step("load cold test", root, tmp_path / "cache")
    assert r["slices"] == 2 and r["seconds"] > 0 and r["cpu_seconds"] > 0 and (tmp_path / "cache" / "slices").is_dir()
    if sys.platform.startswith("linux"):
        assert r["peak_rss_mb"] >= r["peak_anon_mb"] >= r["start_anon_mb"] > 0
    with pytest.raises(RuntimeError, match=r"step 'nope' failed \(exit 1\): ValueError: unknown data benchmark"):
        data_bench.measure_step("nope", root, tmp_path / "cache")


def test_bench_data_prints_one_row_per_step(monkeypatch, capsys, small):
    """The cold loads always run (they fill the cache the other steps read); --steps picks the rest."""
    seen = []

    def in_process(name, root, cache):
        seen.append(name)
        return {**data_bench.run_step(name, root), "seconds": 0.5, "cpu_seconds": 0.9, "peak_rss_mb": 300.0,
                "peak_anon_mb": 200.0, "start_anon_mb": 150.0}  # fmt: skip

    monkeypatch.setattr(data_bench, "measure_step", in_process)
    args = build_parser().parse_args(["bench", "data", "--case_weeks", "2", "1", "1", "--n_slices", "4",
                                      "--steps", "census", "near-copy search"])  # fmt: skip
    rows = bench.bench_data(args)
    assert seen == ["load cold train", "load cold validate", "load cold test", "census", "near-copy search"]
    assert [r[1] for r in rows] == [8, 4, 4, 16, 12]
    out = capsys.readouterr().out
    assert "phantom 2/1/1 case-weeks x 4 slices = 8 / 4 / 4 slices" in out
    assert "peak RSS MB" in out and "near-copy search" in out and "300" in out
    with pytest.raises(ConfigError, match="unknown step 'censuss'"):
        bench.bench_data(build_parser().parse_args(["bench", "data", "--case_weeks", "2", "1", "1",
                                                         "--n_slices", "4", "--steps", "censuss"]))  # fmt: skip
