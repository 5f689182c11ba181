"""The notebook runner behind `make demo` / `hipgen notebooks`: a quiet kernel, plain errors."""

from pathlib import Path

import nbformat
import pytest

from hipgen_utils.notebooks import NotebookFailed, execute_notebook, plain


def _nb(*sources):
    return nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in sources])


def test_plain_strips_colour_codes():
    assert plain("\x1b[0;31mValueError\x1b[0m: bad \x1b[1;32mvalue\x1b[0m") == "ValueError: bad value"


def test_kernel_starts_without_the_tcp_warning_and_runs_cells(tmp_path, capfd):
    nb = execute_notebook(_nb("x = 6 * 7", "print(x)"), "tiny.ipynb", tmp_path / "out.ipynb", 60, cwd=tmp_path)
    assert nb.cells[1].outputs[0]["text"] == "42\n"
    assert (tmp_path / "out.ipynb").is_file()
    err = capfd.readouterr().err
    assert "without encryption" not in err and "Kernel is running over TCP" not in err, err
    assert not list(tmp_path.glob("kernel*")), "the runner left kernel files behind"


@pytest.mark.parametrize("fail", [False, True])
def test_each_notebooks_kernel_ends_with_its_notebook(tmp_path, fail):
    """`make demo` runs seven notebooks in one process: a kernel left running holds its
    models and data (up to 3 GB each at the release's size) until the last notebook ends."""
    import os
    import time

    cells = ["import os; print(os.getpid())"] + (["raise ValueError('stop')"] if fail else [])
    nb = _nb(*cells)
    try:
        execute_notebook(nb, "pid.ipynb", None, 60, cwd=tmp_path)
    except NotebookFailed:
        assert fail
    pid = int(nb.cells[0].outputs[0]["text"])
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        with open(f"/proc/{pid}/stat") as f:  # a zombie has ended too
            if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                return
        time.sleep(0.1)
    pytest.fail(f"the kernel (pid {pid}) was still running 10 s after its notebook ended")


def test_a_failing_cell_is_one_plain_line(tmp_path):
    with pytest.raises(NotebookFailed) as e:
        execute_notebook(_nb("y = 1", "raise ValueError('the value is bad')"), "bad.ipynb", None, 60, cwd=tmp_path)
    msg = str(e.value)
    assert "\x1b" not in msg, repr(msg)
    assert "\n" not in msg and msg.startswith("bad.ipynb failed in cell 2 of 2")
    assert "ValueError: the value is bad" in msg


def test_lab_overrides_go_where_jupyterlab_reads_them_and_keep_other_plugins(tmp_path):
    import json

    from jupyterlab.commands import get_app_dir

    from hipgen_utils.notebooks import LAB_OVERRIDES, lab_settings_dir, write_lab_overrides

    assert lab_settings_dir() == Path(get_app_dir()) / "settings"
    (tmp_path / "overrides.json").write_text(json.dumps({"@other/ext:plugin": {"a": 1}}))
    written = json.loads(write_lab_overrides(tmp_path).read_text())
    assert written == {"@other/ext:plugin": {"a": 1}, **LAB_OVERRIDES}
    tracker = written["@jupyterlab/notebook-extension:tracker"]
    assert tracker["windowingMode"] == "none"
    assert written["@jupyterlab/apputils-extension:notification"]["fetchNews"] == "false"
