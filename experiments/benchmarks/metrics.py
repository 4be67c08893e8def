"""CSO-mAP: the jitted metric against the plain loop-based numpy reference, on the same maps.

The maps are exact c = 3 HR labels of CSIST-100K-protocol images; half of them also get spurious
cells (1 % of the cells, values uniform in [0, 255]) so that the pool holds false positives and
unmatched detections. Both implementations must agree to 1e-6 on every AP before a time is reported.
"""

from __future__ import annotations

import time

import numpy as np

from csist_jax.data import csist100k
from csist_jax.metrics import cso_map_from_maps, cso_map_from_points, detections_from_maps
from csist_jax.physics import hr_label
from experiments.benchmarks.common import Row, best_time
from tests import cso_map_reference as reference

C = 3
THRESHOLD = 50.0


def _maps(n: int) -> tuple[np.ndarray, dict]:
    data = csist100k.generate(0, n)
    maps = np.asarray(hr_label(data["targets"], c=C))
    rng = np.random.default_rng(0)
    noisy = (np.arange(n) % 2 == 1)[:, None, None] & (rng.random(maps.shape) < 0.01)
    return maps + np.where(noisy, rng.uniform(0.0, 255.0, maps.shape), 0.0).astype(np.float32), data


def _check_same(ours: dict, ref: dict) -> None:
    worst = max(abs(ours[k] - ref[k]) for k in ref)
    if set(ours) != set(ref) or worst > 1e-6:
        raise AssertionError(f"jitted CSO-mAP differs from the reference by {worst:.2e}: {ours} vs {ref}")


def run(quick: bool) -> list[Row]:
    n = 1_000 if quick else 10_000
    maps, data = _maps(n)
    targets, count = data["targets"], data["count"]
    points, point_count = detections_from_maps(maps, C, THRESHOLD)

    t0 = time.perf_counter()
    ref = reference.cso_map_from_maps(maps, targets, count, C, THRESHOLD)
    ref_maps = time.perf_counter() - t0
    t0 = time.perf_counter()
    ref_points = reference.cso_map_from_points(points, point_count, targets, count)
    ref_points_time = time.perf_counter() - t0

    ours = cso_map_from_maps(maps, targets, count, C, THRESHOLD)
    _check_same(ours, ref)
    _check_same(cso_map_from_points(points, point_count, targets, count), ref_points)
    ours_maps = best_time(lambda: cso_map_from_maps(maps, targets, count, C, THRESHOLD), repeats=5)
    ours_points = best_time(lambda: cso_map_from_points(points, point_count, targets, count), repeats=5)

    detections = int(point_count.sum())
    note = f"{detections:,} detections, {int(count.sum()):,} targets, mAP {ours['mAP']:.4f} (= reference)"
    return [
        Row("metrics", f"cso_map_from_maps, {n:,} maps c={C} (jitted)", ours_maps, "s",
            ratio=ref_maps / ours_maps, target=">= 20x", note=note),
        Row("metrics", f"cso_map_from_maps, {n:,} maps c={C} (numpy reference)", ref_maps, "s"),
        Row("metrics", f"cso_map_from_points, {n:,} images (jitted)", ours_points, "s",
            ratio=ref_points_time / ours_points, target=">= 20x", note=f"M = {points.shape[1]} padded"),
        Row("metrics", f"cso_map_from_points, {n:,} images (numpy reference)", ref_points_time, "s"),
    ]  # fmt: skip
