"""Scores of whole sensor frames: CSO-mAP in frame coordinates and the recall of target groups.

CSO-mAP needs nothing new on a frame: each detection is matched to its nearest true target of the same
frame, with the same distance thresholds (0.05 .. 0.25 px), exactly as on an 11 x 11 crop
(:func:`csist_jax.metrics.cso_map_from_points` on frame coordinates). What a frame adds is the question
whether a group was found at all: :func:`group_recall` counts a true group (a CSIST-100K blob of 1-5
targets, or an isolated target) as found when at least one reported detection lies within ``radius``
(default 1 px) of one of its targets.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float, Int

from csist_jax.metrics import cso_map

#: a group is found when a detection lies within this distance (px) of one of its targets
GROUP_RADIUS = 1.0


def groups_found(
    points: Float[Array, "m 3"],
    point_count: Int[Array, ""],
    targets: Float[Array, "k 3"],
    group: Int[Array, " k"],
    n_groups: int,
    radius: float = GROUP_RADIUS,
) -> Bool[Array, " g"]:
    """Which of one frame's groups ``0 .. n_groups - 1`` have a detection within ``radius`` of one of their
    targets (``group[k]``: the group of target ``k``, -1 for padding rows). Pure and jittable."""
    live = jnp.arange(points.shape[0]) < point_count
    d = jnp.linalg.norm(points[:, None, :2] - targets[None, :, :2], axis=-1)
    hit = jnp.any((d <= radius) & live[:, None], axis=0) & (group >= 0)  # [k]
    segment = jnp.where(group >= 0, group, n_groups)
    return jax.ops.segment_max(hit.astype(jnp.int32), segment, num_segments=n_groups + 1)[:n_groups] > 0


def group_recall(points, point_count, targets, group, group_size, *, radius: float = GROUP_RADIUS) -> float:
    """The fraction of true groups with a detection within ``radius`` px of one of their targets.

    ``points`` ``[n, M, 3]`` and ``point_count`` ``[n]`` (frame coordinates); ``targets`` ``[n, K, 3]``,
    ``group`` ``[n, K]`` (each target's group, -1 padding) and ``group_size`` ``[n, S]`` (targets per
    group; 0: no group in that slot), as :func:`csist_jax.data.scenes.generate` returns them.
    """
    points = np.asarray(points, np.float32)
    group_size = np.asarray(group_size)
    if points.shape[0] != group_size.shape[0]:
        raise ValueError(f"points has {points.shape[0]} frames, group_size {group_size.shape[0]}")
    if points.shape[0] == 0 or not (group_size > 0).any():
        return 0.0
    found = jax.jit(jax.vmap(groups_found, in_axes=(0, 0, 0, 0, None, None)), static_argnums=(4,))(
        jnp.asarray(points),
        jnp.asarray(point_count, jnp.int32),
        jnp.asarray(targets, jnp.float32),
        jnp.asarray(group, jnp.int32),
        group_size.shape[1],
        float(radius),
    )
    real = group_size > 0
    return float(np.asarray(found)[real].mean())


def frame_scores(points, point_count, targets, count, group=None, group_size=None, **options) -> dict:
    """CSO-mAP of whole frames (``mAP``, ``AP05`` .. ``AP25``: :func:`csist_jax.metrics.cso_map_from_points`
    in frame coordinates) and, given the groups, ``group_recall`` (:func:`group_recall`); floats in [0, 1].
    ``options``: ``radius`` for the recall."""
    scores = cso_map.cso_map_from_points(points, point_count, targets, count)
    if group is not None and group_size is not None:
        scores["group_recall"] = group_recall(points, point_count, targets, group, group_size, **options)
    return scores


__all__ = ["GROUP_RADIUS", "frame_scores", "group_recall", "groups_found"]
