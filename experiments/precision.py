"""A trained network's test CSO-mAP and speed in float32 and in bfloat16 compute, side by side.

    python -m experiments.precision                                   # the shipped ISTA-Net+, 10,000 frames
    python -m experiments.precision --checkpoint runs/published/dista_net/best --n-test 10000

The same float32 parameters are evaluated twice on the same test frames (the CSIST-100K test split,
generator seed 0, frames 90,000 onwards): once in float32 and once with ``compute_dtype = "bfloat16"``
(parameters, ``Q``, the operator and the images cast to bfloat16 for the forward pass, as training with
``config.compute_dtype = "bfloat16"`` runs it). Prints CSO-mAP x100, APs and frames/s of both, the
difference, and writes ``<out>/precision.json``. On a CPU bfloat16 is emulated and slower; the speed
column (the forward passes alone, after compilation) matters on GPUs/TPUs.
"""

from __future__ import annotations

import argparse
import os

import jax
import ml_collections

from csist_jax import models, train
from csist_jax.train import data as data_lib
from csist_jax.train import evaluation
from experiments import report, tables
from experiments.published import AP_KEYS

CHECKPOINT = tables.shipped("ista_net_plus_c3_cpu")

DTYPES = ("float32", "bfloat16")


def compare(checkpoint: str, n_test: int, batch_size: int, brightness_threshold: float) -> dict:
    """``{dtype: {"mAP", ..., "frames_per_s"}}`` for the network in ``checkpoint`` on ``n_test`` frames."""
    module, variables = models.load_checkpoint(checkpoint)
    data_config = ml_collections.ConfigDict({"source": "generate", "seed": 0, "test_size": n_test})
    test = data_lib.read_all(data_lib.load_split(data_config, "test"))
    mesh = train.make_mesh()
    out = {}
    for dtype in DTYPES:
        apply = train.make_apply(module, mesh, compute_dtype=dtype)
        train.predict(module, variables, test["image"][:batch_size], batch_size, mesh, apply)  # compile
        maps, seconds = report.timed(
            lambda apply=apply: train.predict(module, variables, test["image"], batch_size, mesh, apply)
        )
        out[dtype] = {
            **evaluation.scores(module, maps, test, brightness_threshold),
            "frames_per_s": n_test / seconds,
        }
    return out


def format_table(results: dict, name: str) -> str:
    body = [
        [dtype, *(report.cell(s[k], scale=100) for k in AP_KEYS), report.cell(s["frames_per_s"], ",.0f")]
        for dtype, s in results.items()
    ]
    diff = [report.cell(results["bfloat16"][k] - results["float32"][k], "+.2f", scale=100) for k in AP_KEYS]
    body.append(["bfloat16 - float32", *diff, ""])
    return report.markdown_table([name, *AP_KEYS, "frames/s"], body, widths=[28, *(6 for _ in AP_KEYS), 8])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--checkpoint", default=CHECKPOINT, help="a models.save_model directory")
    parser.add_argument("--n-test", type=int, default=10_000, help="test frames (<= 10,000)")
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--brightness-threshold", type=float, default=50.0)
    parser.add_argument("--out", default=os.path.join("outputs", "precision"))
    args = parser.parse_args(argv)
    if not 1 <= args.n_test <= data_lib.SPLIT_SIZE["test"]:
        parser.error(f"argument --n-test: must be in [1, {data_lib.SPLIT_SIZE['test']}], got {args.n_test}")
    if args.batch_size < 1:
        parser.error(f"argument --batch-size: must be >= 1, got {args.batch_size}")
    if not os.path.isfile(os.path.join(args.checkpoint, "model.json")):
        parser.error(f"argument --checkpoint: {args.checkpoint} holds no model.json")
    results = compare(args.checkpoint, args.n_test, args.batch_size, args.brightness_threshold)
    name = os.path.basename(os.path.normpath(args.checkpoint))
    print(f"{name}: {args.n_test} test frames, {jax.devices()[0].device_kind}, jax {jax.__version__}")
    print(format_table(results, name))
    dump = {"checkpoint": args.checkpoint, "n_test": args.n_test, "results": results}
    report.write_json(os.path.join(args.out, "precision.json"), dump)
    return 0


if __name__ == "__main__":
    from csist_jax._cli import run_main

    raise SystemExit(run_main(main))
