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

from csist_jax import models, physics
from csist_jax.train import predict
from experiments import report, tables
from experiments.published import AP_KEYS

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
    test = tables.split_arrays("test", args.test_size)
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
    body = []
    for name, m in rows.items():
        s = tables.score_maps(m, test, c, THRESHOLD)
        body.append([name, *(report.cell(s[k], scale=100) for k in AP_KEYS)])
    print(report.markdown_table(["maps", *AP_KEYS], body))
    print("\nreachable recall (% of targets with a detection within delta):")
    deltas = (0.05, 0.10, 0.15)
    body = [
        [name, *(report.cell(reachable_recall(m, targets, count, c, d), scale=100) for d in deltas)]
        for name, m in list(rows.items())[:2]
    ]
    print(report.markdown_table(["maps", *(f"{d:.2f}" for d in deltas)], body))
    return 0


if __name__ == "__main__":
    from csist_jax._cli import run_main

    sys.exit(run_main(main))
