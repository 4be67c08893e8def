"""A deliberately plain, loop-based numpy implementation of CSO-mAP (SPEC sec. 6).

It follows the protocol word by word, image by image and detection by detection, so that it can be
read against the specification; ``csist_jax.metrics`` must agree with it. Like the toolkit, positions
and distances are float32 and each threshold is compared as a float32.
"""

from __future__ import annotations

import numpy as np

DELTAS = (0.05, 0.10, 0.15, 0.20, 0.25)


def detections_from_map(hr_map: np.ndarray, c: int, brightness_threshold: float) -> np.ndarray:
    """Every cell ``>= brightness_threshold`` as ``((I - o) / c, (J - o) / c, value)``, row-major."""
    offset = (c - 1) // 2
    threshold = np.float32(brightness_threshold)
    rows = []
    for i in range(hr_map.shape[0]):
        for j in range(hr_map.shape[1]):
            value = np.float32(hr_map[i, j])
            if value >= threshold:
                rows.append(((i - offset) / c, (j - offset) / c, value))
    return np.array(rows, dtype=np.float32).reshape(-1, 3)


def match_image(detections: np.ndarray, targets: np.ndarray, delta: float) -> list[bool]:
    """TP flag of each detection of one image, in the detections' own order."""
    delta = np.float32(delta)
    detections = np.asarray(detections, np.float32)
    targets = np.asarray(targets, np.float32)
    is_tp = [False] * len(detections)
    if len(targets) == 0:
        return is_tp
    # visit by descending score; Python's sort is stable, so equal scores keep the detection order
    visiting_order = sorted(range(len(detections)), key=lambda i: -detections[i, 2])
    taken = set()
    for i in visiting_order:
        diff = detections[i, None, :2] - targets[:, :2]
        distances = np.sqrt(diff[:, 0] * diff[:, 0] + diff[:, 1] * diff[:, 1])
        nearest = int(np.argmin(distances))
        if distances[nearest] <= delta and nearest not in taken:
            taken.add(nearest)
            is_tp[i] = True
    return is_tp


def average_precision(scores: list[float], is_tp: list[bool], n_targets: int) -> float:
    """VOC "area" AP of pooled detections (stable descending score order)."""
    if n_targets == 0:
        return 0.0
    order = sorted(range(len(scores)), key=lambda i: -scores[i])
    recall, precision = [], []
    tp = fp = 0
    for i in order:
        if is_tp[i]:
            tp += 1
        else:
            fp += 1
        recall.append(tp / n_targets)
        precision.append(tp / (tp + fp))
    mrec = [0.0] + recall + [1.0]
    mpre = [0.0] + precision + [0.0]
    for i in range(len(mpre) - 2, -1, -1):
        mpre[i] = max(mpre[i], mpre[i + 1])
    ap = 0.0
    for i in range(len(mrec) - 1):
        if mrec[i + 1] != mrec[i]:
            ap += (mrec[i + 1] - mrec[i]) * mpre[i + 1]
    return ap


def cso_map(detections: list[np.ndarray], targets: list[np.ndarray], deltas=DELTAS) -> dict[str, float]:
    """CSO-mAP of per-image lists: ``detections[i]`` ``[m_i, 3]`` (x, y, score), ``targets[i]`` ``[k_i, 3]``.

    Returns ``{"AP05", ..., "AP25", "mAP"}``; 0 for every AP when there is no target at all.
    """
    n_targets = sum(len(t) for t in targets)
    result = {}
    for delta in deltas:
        scores, flags = [], []
        for dets, tgts in zip(detections, targets):  # image order, then detection order
            scores.extend(float(np.float32(s)) for s in np.asarray(dets).reshape(-1, 3)[:, 2])
            flags.extend(match_image(np.asarray(dets).reshape(-1, 3), np.asarray(tgts).reshape(-1, 3), delta))
        result[f"AP{round(delta * 100):02d}"] = average_precision(scores, flags, n_targets)
    result["mAP"] = sum(result.values()) / len(deltas)
    return result


def cso_map_from_points(points, point_count, targets, count, deltas=DELTAS) -> dict[str, float]:
    """The padded-array form: the first ``point_count[i]`` / ``count[i]`` rows of image ``i``."""
    dets = [np.asarray(points[i])[: int(point_count[i])] for i in range(len(points))]
    tgts = [np.asarray(targets[i])[: int(count[i])] for i in range(len(targets))]
    return cso_map(dets, tgts, deltas)


def cso_map_from_maps(hr_maps, targets, count, c, brightness_threshold, deltas=DELTAS) -> dict[str, float]:
    dets = [detections_from_map(np.asarray(m), c, brightness_threshold) for m in hr_maps]
    tgts = [np.asarray(targets[i])[: int(count[i])] for i in range(len(targets))]
    return cso_map(dets, tgts, deltas)
