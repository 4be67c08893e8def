"""The shared reporting layer of the experiment scripts: table cells, one markdown table writer, one
writer of the ``.md`` / ``.json`` files, and one timer.

A script computes rows (dicts), formats their cells with :func:`cell`, renders them with
:func:`markdown_table`, times its calls with :func:`timed` and writes its files with :func:`write` (or
:func:`write_markdown` / :func:`write_json` where it writes one of the two). The published numbers it
compares with are in :mod:`experiments.published`; its scores come from ``csist_jax.train.evaluation``.
"""

from __future__ import annotations

import json
import math
import os
import time

import jax
import numpy as np


def cell(value, spec: str = ".2f", *, scale: float = 1.0, empty: str = "") -> str:
    """A table cell: ``format(scale * value, spec)``; ``empty`` for None or a non-finite number; a string
    as it is."""
    if isinstance(value, str):
        return value
    if value is None or (isinstance(value, (float, np.floating)) and not math.isfinite(value)):
        return empty
    return format(scale * value if scale != 1.0 else value, spec)


def number(value, digits: int = 2) -> str:
    """A table cell: ``value`` with ``digits`` decimals, "–" for None or NaN, strings as they are."""
    return cell(value, f".{digits}f", empty="–")


def markdown_row(cells: list) -> str:
    """One row of a markdown table (a table printed row by row); cells formatted by :func:`number`."""
    return "| " + " | ".join(number(c) for c in cells) + " |"


def markdown_table(header: list[str], rows: list[list], *, widths: list[int] | None = None) -> str:
    """A GitHub markdown table; cells that are not strings are formatted by :func:`number`.

    With ``widths`` (the least width of each column) the columns are padded to a common width, the first
    left-aligned and the others right-aligned, for a table that also reads as plain text.
    """
    body = [[number(c) for c in row] for row in rows]
    if widths is None:
        lines = [markdown_row(header), "|" + "---|" * len(header)]
        return "\n".join(lines + [markdown_row(row) for row in body])
    sizes = [
        max([w, len(h)] + [len(r[i]) for r in body if i < len(r)])
        for i, (h, w) in enumerate(zip(header, widths))
    ]

    def line(cells):
        cells = list(cells) + [""] * (len(sizes) - len(cells))
        parts = [f"{c:<{s}}" if i == 0 else f"{c:>{s}}" for i, (c, s) in enumerate(zip(cells, sizes))]
        return "| " + " | ".join(parts) + " |"

    return "\n".join(
        [line(header), "|" + "|".join("-" * (s + 2) for s in sizes) + "|"] + [line(r) for r in body]
    )


def _clean(x):
    """``x`` as plain JSON: numpy scalars and arrays as Python numbers and lists, non-finite floats as
    None."""
    if isinstance(x, np.ndarray):
        x = x.tolist()
    elif isinstance(x, np.generic):
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    return x


def _parent(path: str) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)


def write_markdown(path: str, text: str) -> str:
    """``text`` (with one final newline) to ``path``, its directory made; returns ``path``."""
    _parent(path)
    with open(path, "w") as f:
        f.write(text.rstrip() + "\n")
    return path


def write_json(path: str, data, *, lines: bool = False) -> str:
    """``data`` as JSON to ``path`` (numpy values as numbers, NaN and infinities as null); with ``lines``,
    ``data`` is a list written one JSON object a line. Returns ``path``."""
    _parent(path)
    with open(path, "w") as f:
        if lines:
            f.writelines(json.dumps(_clean(row)) + "\n" for row in data)
        else:
            json.dump(_clean(data), f, indent=1)
            f.write("\n")
    return path


def write(path: str, markdown: str, data, *, lines: bool = False) -> tuple[str, str]:
    """The report's two files: the markdown at ``path`` (``STEM.md``, or ``path + ".md"`` when ``path``
    does not end in ``.md``) and ``data`` at ``STEM.json`` (:func:`write_json`). Returns both paths."""
    stem = path[: -len(".md")] if path.endswith(".md") else path
    return write_markdown(stem + ".md", markdown), write_json(stem + ".json", data, lines=lines)


def timed(fn, *, repeats: int = 1, warmup: int = 0, budget: float = 0.0):
    """``(result, seconds)``: the fastest of ``repeats`` calls ``fn()`` after ``warmup`` untimed ones,
    each waited for (``jax.block_until_ready``); the result is the last call's. With ``budget`` (seconds),
    the timed calls stop once they have taken that long in all and at least two were made."""
    for _ in range(warmup):
        jax.block_until_ready(fn())
    best, out = float("inf"), None
    start = time.perf_counter()
    for i in range(max(1, repeats)):
        t0 = time.perf_counter()
        out = jax.block_until_ready(fn())
        best = min(best, time.perf_counter() - t0)
        if budget and time.perf_counter() - start > budget and i >= 1:
            break
    return out, best
