"""The learned localiser against ``refine.localize`` on the same CSIST-100K test frames, in one run.

    python -m experiments.localizer_vs_localize --checkpoint=runs/cpu_localizer/best --test-size=2000

For each decoding threshold of the localiser (``--thresholds``) and for ``refine.localize``: CSO-mAP
and APs (x100), count accuracy, RMSE of matches within 0.5 px, and frames/s (best of three timed calls on
the whole set after a warm-up call, on this machine). 8-bit test frames as stored (seed 0, from
``csist100k.SPLIT_START["test"]``).
"""

from __future__ import annotations

import argparse
import json
import time

import jax
import jax.numpy as jnp
import numpy as np

from csist_jax import metrics, models
from csist_jax.data import csist100k
from csist_jax.models import localizer
from csist_jax.refine import localize


def best_seconds(fn, repeats: int = 3) -> float:
    """The fastest of ``repeats`` waited calls of ``fn`` after one untimed call."""
    jax.block_until_ready(fn())
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - t0)
    return min(times)


def row(name: str, points, point_count, data: dict, seconds: float) -> dict:
    points, point_count = np.asarray(points), np.asarray(point_count)
    scores = metrics.cso_map_from_points(points, point_count, data["targets"], data["count"])
    rmse = metrics.localization_rmse(points, point_count, data["targets"], data["count"], max_distance=0.5)
    return {
        "method": name,
        **{k: round(100 * float(v), 2) for k, v in scores.items()},
        "count_accuracy": round(metrics.count_accuracy(point_count, data["count"]), 4),
        "rmse": round(float(rmse["rmse"]), 4),
        "fps": round(len(points) / seconds, 1),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--checkpoint", default="runs/cpu_localizer/best", help="a saved localiser")
    parser.add_argument("--test-size", type=int, default=2000)
    parser.add_argument("--thresholds", default="0.5,0.3,0.1", help="decoding probability thresholds")
    parser.add_argument("--out", default="", help="write the rows here as JSON")
    args = parser.parse_args(argv)
    if not 1 <= args.test_size <= csist100k.SPLIT_SIZE["test"]:
        parser.error(f"--test-size must be in 1..{csist100k.SPLIT_SIZE['test']}, got {args.test_size}")
    module, variables = models.load_checkpoint(args.checkpoint)
    if not models.is_localizer(module):
        parser.error(f"--checkpoint {args.checkpoint} holds a {type(module).__name__}, not a localiser")
    data = csist100k.generate(0, args.test_size, start=csist100k.SPLIT_START["test"])
    images = jnp.asarray(data["image"], jnp.float32)

    @models.jit(inference_of=module)
    def run(v, x, threshold):
        found = localizer.points(module.apply(v, x), threshold=threshold)
        return found["points"], found["count"]

    rows = []
    for threshold in (float(t) for t in args.thresholds.split(",")):
        seconds = best_seconds(lambda t=threshold: run(variables, images, t))
        points, point_count = run(variables, images, threshold)
        rows.append(row(f"localizer, threshold {threshold}", points, point_count, data, seconds))
        print(json.dumps(rows[-1]), flush=True)
    frames = np.asarray(data["image"], np.float32)
    seconds = best_seconds(lambda: localize(frames, batch_size=len(frames))[0], repeats=2)
    points, point_count = localize(frames, batch_size=len(frames))
    rows.append(row("refine.localize", points, point_count, data, seconds))
    print(json.dumps(rows[-1]), flush=True)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
