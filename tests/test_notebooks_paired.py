"""The py:percent sources and the committed .ipynb must not drift apart."""

import shutil
from pathlib import Path

import jupytext
import nbformat
import pytest

NB_DIR = Path(__file__).resolve().parents[1] / "notebooks"
SOURCES = sorted(NB_DIR.glob("[0-9][0-9]_*.py"))  # the pipeline, in order
PAIRED = [*SOURCES, NB_DIR / "app_sampler.py"]  # and the page `make app` serves


def test_notebooks_numbered_in_pipeline_order():
    names = [p.stem for p in SOURCES]
    assert len(names) >= 6 and [n[:2] for n in names] == [f"{i:02d}" for i in range(1, len(names) + 1)], names


def _cells(nb):
    return [(c.cell_type, c.source.strip()) for c in nb.cells]


@pytest.mark.parametrize("py", PAIRED, ids=lambda p: p.stem)
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


@pytest.mark.parametrize("py", PAIRED, ids=lambda p: p.stem)
def test_parameters_cell_selects_the_profile(py):
    nb = jupytext.read(py)
    params = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1 and "PROFILE = None" in params[0].source


def _copy_pair(py, dest):
    for f in (py, py.with_suffix(".ipynb"), NB_DIR.parent / "jupytext.toml"):
        shutil.copy(f, dest / f.name)
    return dest / py.name


@pytest.mark.parametrize("py", PAIRED, ids=lambda p: p.stem)
def test_sync_on_a_synced_pair_writes_nothing(py, tmp_path):
    """`make sync` on a clean tree changes nothing: cell ids are kept, not regenerated."""
    from hipgen_utils.notebooks import sync_ipynb

    copy = _copy_pair(py, tmp_path)
    before = copy.with_suffix(".ipynb").read_bytes()
    assert sync_ipynb([copy]) == [], f"{py.stem}.ipynb is not what `make sync` writes: run `make sync`"
    assert copy.with_suffix(".ipynb").read_bytes() == before


def test_sync_keeps_ids_of_unchanged_and_edited_cells(tmp_path):
    from hipgen_utils.notebooks import sync_ipynb

    copy = _copy_pair(SOURCES[0], tmp_path)
    ids = [c.id for c in nbformat.read(copy.with_suffix(".ipynb"), as_version=4).cells]
    text = copy.read_text()
    copy.write_text(text.replace("# %% [markdown]\n# #", "# %% [markdown]\n# # (edited)", 1))
    assert sync_ipynb([copy]) == [copy.with_suffix(".ipynb")]
    cells = nbformat.read(copy.with_suffix(".ipynb"), as_version=4).cells
    assert "(edited)" in cells[0].source and [c.id for c in cells] == ids


def test_saving_from_jupyterlab_leaves_the_pair_unchanged(tmp_path):
    """Save notebook 06 as JupyterLab does (jupytext's contents manager, with `make lab`'s
    pre-save hook) after a run: outputs, execution counts, the kernel's display name and
    language_info as the front-end sends them. Both files must stay byte for byte."""
    from jupytext import TextFileContentsManager

    py = next(p for p in SOURCES if p.name.startswith("06_"))
    _copy_pair(py, tmp_path)
    cm = TextFileContentsManager(
        root_dir=str(tmp_path), pre_save_hook="hipgen_utils.notebooks.strip_outputs_pre_save"
    )
    model = cm.get(py.with_suffix(".ipynb").name)
    nb = model["content"]
    nb["metadata"]["kernelspec"]["display_name"] = "Python 3 (ipykernel)"
    nb["metadata"]["language_info"] = {"name": "python", "version": "3.11"}
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            cell["outputs"] = [nbformat.v4.new_output("stream", text="ran\n")]
            cell["execution_count"] = 1
    cm.save(model, py.with_suffix(".ipynb").name)
    for f in (py, py.with_suffix(".ipynb")):
        assert (tmp_path / f.name).read_bytes() == f.read_bytes(), f"saving changed {f.name}"


@pytest.mark.parametrize("py", PAIRED, ids=lambda p: p.stem)
def test_ipynb_carries_what_jupyterlab_sets_on_open(py):
    """JupyterLab writes the kernel's spec and language_info into a notebook it opens; when
    they differ from the file's, the notebook shows as modified before anything ran."""
    from hipgen_utils.notebooks import KERNELSPEC

    meta = nbformat.read(py.with_suffix(".ipynb"), as_version=4).metadata
    assert meta["kernelspec"] == KERNELSPEC
    assert meta["language_info"]["name"] == "python" and meta["language_info"]["version"].startswith("3.")
    # the .py header is what jupytext's contents manager takes the kernelspec from
    assert jupytext.read(py).metadata["kernelspec"] == KERNELSPEC


def test_sync_keeps_the_committed_python_version_and_fills_a_missing_one(tmp_path):
    import json
    import sys

    from hipgen_utils.notebooks import language_info, sync_ipynb

    copy = _copy_pair(SOURCES[0], tmp_path)
    ipynb = copy.with_suffix(".ipynb")
    doc = json.loads(ipynb.read_text())
    doc["metadata"]["language_info"]["version"] = "3.11.0"
    ipynb.write_text(json.dumps(doc))
    sync_ipynb([copy])
    assert nbformat.read(ipynb, as_version=4).metadata["language_info"] == language_info("3.11.0")
    del doc["metadata"]["language_info"]
    ipynb.write_text(json.dumps(doc))
    sync_ipynb([copy])
    assert nbformat.read(ipynb, as_version=4).metadata["language_info"]["version"] == sys.version.split()[0]
