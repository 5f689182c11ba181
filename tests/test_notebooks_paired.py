"""The py:percent sources and the committed .ipynb must not drift apart."""

from pathlib import Path

import jupytext
import nbformat
import pytest

NB_DIR = Path(__file__).resolve().parents[1] / "notebooks"
SOURCES = sorted(NB_DIR.glob("[0-9][0-9]_*.py"))


def test_six_notebooks_in_pipeline_order():
    names = [p.stem for p in SOURCES]
    assert [n[:2] for n in names] == ["01", "02", "03", "04", "05", "06"], names


def _cells(nb):
    return [(c.cell_type, c.source.strip()) for c in nb.cells]


@pytest.mark.parametrize("py", SOURCES, ids=lambda p: p.stem)
def test_ipynb_matches_py_and_has_no_outputs(py):
    ipynb = py.with_suffix(".ipynb")
    assert ipynb.exists(), f"{ipynb.name} missing: run `make sync`"
    committed = nbformat.read(ipynb, as_version=4)
    assert _cells(jupytext.read(py)) == _cells(committed), (
        f"{ipynb.name} drifted from {py.name}: run `make sync`"
    )
    for cell in committed.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"{ipynb.name} has outputs"


@pytest.mark.parametrize("py", SOURCES, ids=lambda p: p.stem)
def test_parameters_cell_selects_the_profile(py):
    nb = jupytext.read(py)
    params = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1 and "PROFILE = None" in params[0].source
