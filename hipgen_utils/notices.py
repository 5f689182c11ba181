"""What the data loader reports (resized slices, skipped files), shown as one plain line.

`data.load_split` reports with ``warnings.warn``. `pipeline.load_splits`, which the
notebooks and the CLI load data through, passes each report on as a `DataNotice`. The
CLI prints every warning as one ``hipgen: warning: ...`` line (`cli.main`). A notebook would
show it as a pink stderr box headed by the path and line of the Python file that called
the loader; `Run.open`, every notebook's first cell, calls `print_data_notices` so that a
notice prints as one plain output line instead::

    warning: keras_slices_train: 12 of 24 slices are not 256x128 on disk (...) and were resized to it
"""

from __future__ import annotations

import warnings
from contextlib import contextmanager


class DataNotice(UserWarning):
    """Something the data loader changed or left out (resized slices, skipped files)."""


@contextmanager
def loader_notices(stacklevel: int = 4):
    """Pass the loader's reports (plain UserWarnings) raised inside on as `DataNotice`s,
    every other warning as it was raised. A notice is attributed `stacklevel` frames up from
    here: 4 = the caller of the function holding the ``with`` (1 is this generator, 2
    contextlib's __exit__, 3 that function)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    for w in caught:
        if w.category is UserWarning:
            warnings.warn(DataNotice(str(w.message)), stacklevel=stacklevel)
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno, source=w.source)


def _print_notice(message, category, filename, lineno, file=None, line=None):
    print(f"warning: {message}")


def print_data_notices() -> None:
    """From now on show each `DataNotice` as one ``warning: ...`` line on stdout (no source
    path, no stderr box); every other warning keeps the display it had. Idempotent."""
    shown = warnings.showwarning
    if getattr(shown, "_hipgen_notices", False):
        return

    def show(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, DataNotice):
            _print_notice(message, category, filename, lineno)
        else:
            shown(message, category, filename, lineno, file, line)

    show._hipgen_notices = True
    warnings.showwarning = show
