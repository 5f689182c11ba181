"""Plain-text tables and a timer for the benchmark commands (`hipgen bench ...`)."""

from __future__ import annotations

import time


def print_table(title: str, header: list[str], rows: list[list]) -> str:
    """Render and print a plain-text table; returns the text."""
    cells = [[f"{v:.4g}" if isinstance(v, float) else str(v) for v in r] for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(header)]
    line = "  ".join("-" * w for w in widths)
    text = "\n".join(
        row.rstrip()
        for row in [title, "  ".join(h.ljust(w) for h, w in zip(header, widths)), line]
        + ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in cells]
    )
    print(text, flush=True)
    return text


def timed(fn, *a, **k):
    """(fn(*a, **k), seconds it took)."""
    t0 = time.perf_counter()
    out = fn(*a, **k)
    return out, time.perf_counter() - t0
