"""Evaluation: CSO-mAP (the exact published protocol, jitted), localisation error, count accuracy,
PSNR / SSIM of HR maps, and the scores of whole sensor frames (``frame_scores``: CSO-mAP in frame
coordinates and the recall of target groups). ``match_detections`` is the per-image CSO-mAP matcher
(pure, jittable)."""

from csist_jax.metrics.cso_map import (
    DEFAULT_DELTAS,
    cso_map_from_maps,
    cso_map_from_points,
    detections_from_maps,
    match_detections,
)
from csist_jax.metrics.frames import frame_scores, group_recall, groups_found
from csist_jax.metrics.image_quality import psnr, ssim
from csist_jax.metrics.localization import by_count, count_accuracy, localization_rmse, matched_errors

__all__ = [
    "DEFAULT_DELTAS",
    "by_count",
    "count_accuracy",
    "cso_map_from_maps",
    "cso_map_from_points",
    "detections_from_maps",
    "frame_scores",
    "group_recall",
    "groups_found",
    "localization_rmse",
    "match_detections",
    "matched_errors",
    "psnr",
    "ssim",
]
