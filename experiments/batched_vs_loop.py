"""The batched networks against their per-sample loop (``batch_exact=True``), with more alternations.

    python -m experiments.batched_vs_loop --networks ista_net_plus --repeats 7

The same comparison as the bench rows "batched vs per-sample loop (before)" (``experiments.bench --only
models``), for chosen networks and with more timed calls, alternated (batched, loop, batched, ...) so
that a change of the machine's load reaches both alike. Prints, per network, how many times faster the
batched program is (>1: batched faster) for the train step and for batch-64 inference.
"""

from __future__ import annotations

import argparse

from csist_jax import models
from experiments import report
from experiments.benchmarks import models as bench


def compare(name: str, repeats: int, batch: int = 64) -> dict[str, float]:
    """``{"train": loop_time / batched_time, "inference": ...}`` for network ``name``."""
    images, targets = bench._inputs(batch)
    batched = models.create(name)
    loop = models.create(name, batch_exact=True)
    variables = bench._variables(batched, images)
    infer = [bench._apply_fn(m, variables, images) for m in (batched, loop)]
    train = [bench._train_fn(m, variables, images, targets) for m in (batched, loop)]
    (_, infer_b), (_, infer_l) = bench._timed(infer, 3 * repeats, 2)
    (_, train_b), (_, train_l) = bench._timed(train, repeats, 1)
    return {"train": train_l / train_b, "inference": infer_l / infer_b}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--networks", default="ista_net_plus", help="comma-separated names (models.UNFOLDING_NAMES)"
    )
    parser.add_argument("--repeats", type=int, default=7, help="timed train steps (inference: 3x as many)")
    args = parser.parse_args(argv)
    names = [n for n in args.networks.split(",") if n]
    unknown = sorted(set(names) - set(models.UNFOLDING_NAMES))
    if unknown:
        parser.error(f"--networks: unknown {unknown}; choose from {list(models.UNFOLDING_NAMES)}")
    if args.repeats < 1:
        parser.error("--repeats must be >= 1")
    print(report.markdown_table(["network", "batched vs loop: train step", "inference, batch 64"], []))
    for name in names:  # a row as soon as it is measured
        r = compare(name, args.repeats)
        print(report.markdown_row([name, f"{r['train']:.2f}x", f"{r['inference']:.2f}x"]), flush=True)
    return 0


if __name__ == "__main__":
    from csist_jax._cli import run_main

    raise SystemExit(run_main(main))
