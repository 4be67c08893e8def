"""Why a trained network can score above the exact HR label's CSO-mAP ("grid ceiling").

    python -m experiments.grid_ranking --checkpoint=runs/long_dista_net_step01/best

CSO-mAP takes every HR cell at or above the threshold as a detection scored by its value and ranks all
detections by that score. The exact HR label puts each target's brightness in its nearest cell, so its
scores say nothing about how close a cell is to its target. This script scores, on the generated test
frames: the exact label; the network's maps; the label's cells re-ranked by the network's values at
those cells (same positions as the label, the network's ordering); and, per delta, the share of targets
with any detection within delta (the recall no ranking can exceed).
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from csist_jax import metrics, models, physics
from csist_jax.train import predict
from experiments.csist100k_table import split_arrays

THRESHOLD = 50.0


def reachable_recall(maps: np.ndarray, targets: np.ndarray, count: np.ndarray, c: int, delta: float) -> float:
    """Share of targets with at least one detection (cell >= threshold) within ``delta`` LR pixels."""
    centres = np.asarray(physics.hr_cell_centres(c))
    hit = total = 0
    for m, t, n in zip(maps, targets, count):
        rows, cols = np.nonzero(m >= THRESHOLD)
        points = np.stack([centres[cols], centres[rows]], -1)  # (x, y) = (column, row)
        for k in range(int(n)):
            total += 1
            if len(points) and np.min(np.hypot(*(points - t[k, :2]).T)) <= delta:
                hit += 1
    return hit / max(total, 1)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True, help="a saved network (models.save_model layout)")
    parser.add_argument("--test-size", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=500)
    args = parser.parse_args(argv)
    module, variables = models.load_checkpoint(args.checkpoint)
    c = module.c
    test = split_arrays("test", args.test_size)
    targets, count = np.asarray(test["targets"]), np.asarray(test["count"])
    label = np.asarray(physics.hr_label(test["targets"], c))
    maps = predict(module, variables, np.asarray(test["image"]), args.batch)
    # label positions, ordered by the network's value at each (all above the threshold, order kept)
    values = np.clip(maps, 0.0, None)
    reranked = np.where(label >= THRESHOLD, THRESHOLD + values / (1.0 + values.max()), 0.0)
    rows = {
        "exact HR label": label,
        f"network ({args.checkpoint})": maps,
        "label cells, ranked by the network": reranked,
    }
    print(f"CSO-mAP x100 on {len(label)} generated test frames (c = {c}, threshold {THRESHOLD:g}):")
    print("| maps | mAP | AP05 | AP10 | AP15 | AP20 | AP25 |")
    print("|---|---|---|---|---|---|---|")
    for name, m in rows.items():
        s = metrics.cso_map_from_maps(m, targets, count, c, THRESHOLD)
        keys = ("mAP", "AP05", "AP10", "AP15", "AP20", "AP25")
        cells = " | ".join(f"{100 * float(s[k]):.2f}" for k in keys)
        print(f"| {name} | {cells} |")
    print("\nreachable recall (% of targets with a detection within delta):")
    print("| maps | 0.05 | 0.10 | 0.15 |")
    print("|---|---|---|---|")
    for name, m in list(rows.items())[:2]:
        recalls = [reachable_recall(m, targets, count, c, d) for d in (0.05, 0.10, 0.15)]
        cells = " | ".join(f"{100 * r:.2f}" for r in recalls)
        print(f"| {name} | {cells} |")
    return 0


if __name__ == "__main__":
    from csist_jax._cli import run_main

    sys.exit(run_main(main))
