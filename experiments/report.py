"""The shared pieces of the experiment scripts' reports: one markdown table writer, one JSON writer, one
timer. A script builds rows (dicts) and hands them here; it imports no other script."""

from __future__ import annotations

import contextlib
import json
import math
import os
import time


def number(value, digits: int = 2) -> str:
    """A table cell: ``value`` with ``digits`` decimals, "–" for None or NaN, strings as they are."""
    if value is None:
        return "–"
    if isinstance(value, str):
        return value
    if isinstance(value, float) and math.isnan(value):
        return "–"
    return f"{value:.{digits}f}"


def markdown_table(header: list[str], rows: list[list]) -> str:
    """A GitHub markdown table; cells formatted by :func:`number`."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(number(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def write(path_stem: str, markdown: str, data) -> tuple[str, str]:
    """``path_stem.md`` (the markdown) and ``path_stem.json`` (``data``, NaN as null); returns both paths."""
    directory = os.path.dirname(os.path.abspath(path_stem))
    os.makedirs(directory, exist_ok=True)
    md, js = path_stem + ".md", path_stem + ".json"
    with open(md, "w") as f:
        f.write(markdown.rstrip() + "\n")

    def clean(x):
        if isinstance(x, float) and not math.isfinite(x):
            return None
        if isinstance(x, dict):
            return {k: clean(v) for k, v in x.items()}
        if isinstance(x, (list, tuple)):
            return [clean(v) for v in x]
        return x

    with open(js, "w") as f:
        json.dump(clean(data), f, indent=1)
    return md, js


@contextlib.contextmanager
def timer(into: dict, key: str = "seconds"):
    """``with timer(row): ...`` stores the block's wall-clock seconds in ``row[key]``."""
    t0 = time.perf_counter()
    try:
        yield into
    finally:
        into[key] = time.perf_counter() - t0
