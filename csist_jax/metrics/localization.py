"""Localisation error and count accuracy of continuous detections.

CSO-mAP (``cso_map.py``) measures hits within fixed radii; these metrics measure how far the matched
detections are from the truth and whether the number of targets is right.

Matching rule (per image): an optimal one-to-one assignment between detections and real targets.
Among all assignments that use only pairs at most ``max_distance`` apart (any distance when ``None``),
take those with the most pairs, and among them the one with the least total squared distance. With
``max_distance=None`` every image thus matches exactly ``min(point_count, count)`` pairs. The scores of
the detections play no part. The assignment is exact: a dynamic programme over subsets of targets,
scanned over the detections, costs ``O(M K 2^K)`` per image, cheap for the few target slots of CSIST
(``K <= 5``); ``K`` is limited to ``MAX_TARGET_SLOTS``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int

from csist_jax.metrics import _inputs

MAX_TARGET_SLOTS = 12

# the padded lists of ``csist_jax.metrics._inputs``: detections (x, y, score), targets (x, y, brightness)
Points = Float[Array, "n m 3"]
Targets = Float[Array, "n k 3"]
Counts = Int[Array, " n"]


def _assign_one(points, n_points, targets, n_targets, max_sq):
    """Total squared distance and number of pairs of one image's optimal assignment."""
    m, k = points.shape[0], targets.shape[0]
    dx = points[:, None, 0] - targets[None, :, 0]
    dy = points[:, None, 1] - targets[None, :, 1]
    sq = dx * dx + dy * dy
    allowed = (jnp.arange(m) < n_points)[:, None] & (jnp.arange(k) < n_targets)[None, :] & (sq <= max_sq)
    subsets = jnp.arange(2**k)
    bit = 1 << jnp.arange(k)
    holds = (subsets[:, None] & bit[None, :]) != 0  # [S, K]: target t is in subset s
    without = subsets[:, None] ^ bit[None, :]  # [S, K]: s with target t removed
    # best[s]: least cost of matching exactly the targets of subset s to distinct detections seen so far
    best = jnp.where(subsets == 0, 0.0, jnp.inf)

    def add_detection(best, row):
        sq_row, allowed_row = row
        extend = jnp.where(holds & allowed_row[None, :], best[without] + sq_row[None, :], jnp.inf)
        return jnp.minimum(best, jnp.min(extend, axis=1)), None

    best, _ = jax.lax.scan(add_detection, best, (sq, allowed))
    size = jnp.sum(holds, axis=1)
    most = jnp.max(jnp.where(jnp.isfinite(best), size, -1))
    cost = jnp.min(jnp.where(jnp.isfinite(best) & (size == most), best, jnp.inf))
    return cost, most.astype(jnp.int32)


# one image's assignment over a chunk of images: [n, m, 3], [n], [n, k, 3], [n], [] -> [n], [n]
_assign = jax.jit(jax.vmap(_assign_one, in_axes=(0, 0, 0, 0, None)))


def matched_errors(
    points: Points, point_count: Counts, targets: Targets, count: Counts, *, max_distance: float | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Per image, the optimal assignment's total squared distance (px^2) and its number of pairs.

    Returns ``squared_error`` float64 ``[n]`` and ``matched`` int64 ``[n]`` (module docstring: the rule).
    """
    points, point_count, targets, count = _inputs.detections_and_targets(points, point_count, targets, count)
    if targets.shape[1] > MAX_TARGET_SLOTS:
        raise ValueError(
            f"targets has {targets.shape[1]} slots per image; the exact assignment enumerates 2^K target "
            f"subsets, so K must be <= {MAX_TARGET_SLOTS} (trim the padding to max(count))"
        )
    if max_distance is None:
        max_sq = np.float32(np.inf)
    else:
        max_distance = float(max_distance)
        if not np.isfinite(max_distance) or max_distance <= 0:
            raise ValueError(f"max_distance must be a finite distance > 0 or None, got {max_distance!r}")
        max_sq = np.float32(max_distance**2)
    n = points.shape[0]
    width = min(points.shape[1], _inputs.bucket(int(point_count.max(initial=0))))
    squared = np.zeros(n, np.float64)
    matched = np.zeros(n, np.int64)
    rows = min(4096, _inputs.bucket(n))
    if width == 0 or targets.shape[1] == 0:  # nothing can be matched
        return squared, matched
    for lo in range(0, n, rows):
        hi = min(lo + rows, n)
        chunk = []
        for a in (points[lo:hi, :width], point_count[lo:hi].astype(np.int32), targets[lo:hi], count[lo:hi]):
            chunk.append(np.concatenate([a, np.zeros((rows - (hi - lo),) + a.shape[1:], a.dtype)]))
        chunk[3] = chunk[3].astype(np.int32)
        cost, pairs = _assign(*chunk, max_sq)
        squared[lo:hi] = np.asarray(cost)[: hi - lo]
        matched[lo:hi] = np.asarray(pairs)[: hi - lo]
    return squared, matched


def localization_rmse(
    points: Points, point_count: Counts, targets: Targets, count: Counts, *, max_distance: float | None = None
) -> dict[str, float]:
    """Root-mean-square distance (LR px) over all matched pairs of the optimal per-image assignments.

    ``rmse = sqrt(sum_pairs |p - t|^2 / matched)``. Returns ``{"rmse", "matched", "detections",
    "targets"}``: the RMSE (NaN when nothing is matched), the number of pairs, detections and targets.
    """
    squared, matched = matched_errors(points, point_count, targets, count, max_distance=max_distance)
    pairs = int(matched.sum())
    return {
        "rmse": _rmse(squared, pairs),
        "matched": pairs,
        "detections": int(np.sum(point_count)),
        "targets": int(np.sum(count)),
    }


def _rmse(squared: np.ndarray, pairs: int) -> float:
    """``sqrt(sum squared / pairs)``, NaN without pairs."""
    return float(np.sqrt(squared.sum() / pairs)) if pairs else float("nan")


def count_accuracy(point_count: Counts, count: Counts) -> float:
    """Fraction of images whose number of detections equals their number of targets (NaN if ``n = 0``)."""
    pc = np.asarray(point_count)
    c = np.asarray(count)
    for name, arr in (("point_count", pc), ("count", c)):
        if arr.ndim != 1 or arr.dtype.kind not in "iu":
            raise ValueError(f"{name} must be integers of shape [n], got {arr.dtype} {arr.shape}")
    if pc.shape != c.shape:
        raise ValueError(f"point_count has {pc.shape[0]} entries but count has {c.shape[0]}")
    return float(np.mean(pc == c)) if c.size else float("nan")


def by_count(
    points: Points, point_count: Counts, targets: Targets, count: Counts, *, max_distance: float | None = None
) -> dict[int, dict[str, float]]:
    """Localisation and counting broken down by the true number of targets per image.

    Returns ``{k: {"images", "count_accuracy", "rmse", "matched"}}`` for every ``k`` present in
    ``count``, ascending (a table row per target count).
    """
    squared, matched = matched_errors(points, point_count, targets, count, max_distance=max_distance)
    pc = np.asarray(point_count)
    c = np.asarray(count)
    table = {}
    for k in np.unique(c):
        rows = c == k
        pairs = int(matched[rows].sum())
        table[int(k)] = {
            "images": int(rows.sum()),
            "count_accuracy": float(np.mean(pc[rows] == k)),
            "rmse": _rmse(squared[rows], pairs),
            "matched": pairs,
        }
    return table
