"""Validation of the padded detection and target lists shared by every metric.

A batch of ``n`` images is described by four arrays: ``points [n, M, 3]`` of ``(x, y, score)`` with
``point_count [n]`` (only the first ``point_count[i]`` rows of image ``i`` are detections), and
``targets [n, K, 3]`` of ``(x, y, brightness)`` with ``count [n]`` (only the first ``count[i]`` rows
are real targets). Rows past a count are padding: they are never read, so they may hold anything.
"""

from __future__ import annotations

import numpy as np


def padded_rows(name: str, array, width_name: str) -> np.ndarray:
    """``array`` as a host array of shape ``[n, width, 3]``; a clear error otherwise."""
    arr = np.asarray(array)
    if arr.ndim != 3 or arr.shape[-1] != 3:
        raise ValueError(f"{name} must have shape [n, {width_name}, 3], got {arr.shape}")
    if arr.dtype.kind not in "fiu":
        raise TypeError(f"{name} must hold real numbers, got dtype {arr.dtype}")
    return arr


def counts(name: str, array, n: int, n_name: str, maximum: int, max_name: str) -> np.ndarray:
    """``array`` as int64 ``[n]`` with every value in ``[0, maximum]``; a clear error otherwise."""
    arr = np.asarray(array)
    if arr.ndim != 1:
        raise ValueError(f"{name} must have shape [n], got {arr.shape}")
    if arr.dtype.kind not in "iu":
        raise TypeError(f"{name} must hold integers, got dtype {arr.dtype}")
    if arr.shape[0] != n:
        raise ValueError(f"{name} has {arr.shape[0]} entries but {n_name} has {n} images")
    arr = arr.astype(np.int64)
    bad = np.flatnonzero((arr < 0) | (arr > maximum))
    if bad.size:
        i = int(bad[0])
        raise ValueError(
            f"{name} must lie in [0, {max_name}={maximum}]; image {i} has {int(arr[i])} "
            f"({bad.size} image(s) out of range)"
        )
    return arr


def finite_rows(name: str, rows: np.ndarray, count: np.ndarray) -> None:
    """Raise if a used row (index < ``count`` of its image) holds NaN or infinity."""
    if rows.dtype.kind != "f":
        return
    used = np.arange(rows.shape[1])[None, :] < count[:, None]
    bad = used & ~np.all(np.isfinite(rows), axis=-1)
    if np.any(bad):
        i, j = (int(v) for v in np.argwhere(bad)[0])
        raise ValueError(
            f"{name} holds NaN or infinite values in {int(bad.sum())} used row(s), "
            f"first at image {i}, row {j}"
        )


def detections_and_targets(points, point_count, targets, count):
    """Validate the four padded arrays together and return them as host arrays.

    Returns ``points`` float32 ``[n, M, 3]``, ``point_count`` int64 ``[n]``, ``targets`` float32
    ``[n, K, 3]``, ``count`` int64 ``[n]``. Checks the shapes, that every leading size is ``n``,
    ``0 <= point_count <= M``, ``0 <= count <= K`` and that no used row holds NaN or infinity.
    """
    points = padded_rows("points", points, "M")
    targets = padded_rows("targets", targets, "K")
    n = points.shape[0]
    if targets.shape[0] != n:
        raise ValueError(f"targets has {targets.shape[0]} images but points has {n}")
    point_count = counts("point_count", point_count, n, "points", points.shape[1], "M")
    count = counts("count", count, n, "points", targets.shape[1], "K")
    finite_rows("points", points, point_count)
    finite_rows("targets", targets, count)
    return points.astype(np.float32), point_count, targets.astype(np.float32), count


def bucket(m: int, minimum: int = 8) -> int:
    """The smallest power of two ``>= max(m, minimum)``: padded widths that keep recompiles few."""
    return max(minimum, 1 << max(int(m) - 1, 0).bit_length())
