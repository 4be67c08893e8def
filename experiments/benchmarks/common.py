"""Shared pieces of the benchmark sections: a result row, a timer and a table formatter."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable

import jax


@dataclasses.dataclass
class Row:
    """One measurement. ``ratio`` is ours-over-reference speed (``> 1`` = ours faster), when there is one."""

    section: str
    name: str
    value: float
    unit: str
    ratio: float | None = None
    target: str = ""
    note: str = ""

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def best_time(fn: Callable[[], object], repeats: int = 5, min_time: float = 0.0) -> float:
    """Best wall time of ``fn()`` over ``repeats`` calls (blocking on JAX results); one warm-up call."""
    jax.block_until_ready(fn())
    best = float("inf")
    start = time.perf_counter()
    for i in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        best = min(best, time.perf_counter() - t0)
        if min_time and time.perf_counter() - start > min_time and i >= 1:
            break
    return best


def format_rows(rows: list[Row]) -> str:
    header = f"{'section':<9} {'benchmark':<52} {'value':>14} {'unit':<10} {'ratio':>9}  {'target':<14} note"
    lines = [header, "-" * len(header)]
    for r in rows:
        ratio = f"{r.ratio:,.1f}x" if r.ratio is not None else ""
        lines.append(
            f"{r.section:<9} {r.name:<52} {r.value:>14,.4g} {r.unit:<10} {ratio:>9}  {r.target:<14} {r.note}"
        )
    return "\n".join(lines)
