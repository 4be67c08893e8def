"""Shared pieces of the benchmark sections: a result row, the timer (``experiments.report.timed``) and a
table formatter."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from experiments import report


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
    """Best wall time of ``fn()`` over ``repeats`` calls (blocking on JAX results) after one warm-up call;
    the calls stop after ``min_time`` seconds (when at least two were timed)."""
    return report.timed(fn, repeats=repeats, warmup=1, budget=min_time)[1]


def format_rows(rows: list[Row]) -> str:
    header = f"{'section':<9} {'benchmark':<52} {'value':>14} {'unit':<10} {'ratio':>9}  {'target':<14} note"
    lines = [header, "-" * len(header)]
    for r in rows:
        ratio = f"{r.ratio:,.1f}x" if r.ratio is not None else ""
        lines.append(
            f"{r.section:<9} {r.name:<52} {r.value:>14,.4g} {r.unit:<10} {ratio:>9}  {r.target:<14} {r.note}"
        )
    return "\n".join(lines)
