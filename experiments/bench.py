"""Benchmarks: every speed claim of the project, measured as ratios side by side in one run.

    python -m experiments.bench                 # every section
    python -m experiments.bench --only physics,metrics
    python -m experiments.bench --only models,train_loop   # networks; the training loop against its bare step
    python -m experiments.bench --only frames   # unmix_frames against refine.localize on perfect windows
    python -m experiments.bench --quick         # smaller sizes (a smoke run)

Each section lives in ``experiments/benchmarks/<section>.py`` and exposes ``run(quick: bool) -> list[Row]``.
Absolute times on a shared 2-core CPU are noisy; the ratios (ours against a plain reference measured in
the same run) are what the README quotes.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from experiments import report
from experiments.benchmarks.common import Row, format_rows

SECTIONS = ("physics", "metrics", "solvers", "data", "models", "train_loop", "refine", "zoo", "frames")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--only", default="", help="comma-separated sections (default: all available)")
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument("--json", default="", help="also write the rows as JSON lines to this file")
    args = parser.parse_args(argv)
    wanted = [s for s in args.only.split(",") if s] or list(SECTIONS)
    unknown = sorted(set(wanted) - set(SECTIONS))
    if unknown:
        parser.error(f"--only: unknown section(s) {unknown}; choose from {list(SECTIONS)}")
    rows: list[Row] = []
    for name in wanted:
        try:
            module = importlib.import_module(f"experiments.benchmarks.{name}")
        except ModuleNotFoundError as err:
            if err.name == f"experiments.benchmarks.{name}":
                print(f"[bench] section {name!r} not available yet, skipped", file=sys.stderr)
                continue
            raise
        print(f"[bench] {name} ...", file=sys.stderr, flush=True)
        section_rows, seconds = report.timed(lambda module=module: module.run(quick=args.quick))
        rows.extend(section_rows)
        print(format_rows(section_rows), flush=True)
        print(f"[bench] {name} done in {seconds:.1f} s\n", file=sys.stderr, flush=True)
    if args.json:
        report.write_json(args.json, [row.as_dict() for row in rows], lines=True)
    return 0


if __name__ == "__main__":
    from csist_jax._cli import run_main

    raise SystemExit(run_main(main))
