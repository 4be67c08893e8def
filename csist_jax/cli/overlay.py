"""A frame and its detections as a picture: the frame in grey, upscaled, a cross per detection."""

from __future__ import annotations

import math
import re

import numpy as np

#: the longer side of an overlay is upscaled to at least this many pixels (by a whole factor)
SIDE = 512
COLOUR = (255, 48, 48)
#: below this upscaling (whole frames) each detection is also ringed (radius ``RING`` frame pixels), so the
#: groups are found at a glance
RING_BELOW = 12
RING = 3
RING_COLOUR = (255, 200, 0)


def file_name(index: int, source: str, label: str) -> str:
    """``{index:06d}_{file stem}_{frame label}.png`` with anything but letters, digits, ``.-_`` as ``_``."""
    stem = re.split(r"[\\/]", source.rstrip("/\\"))[-1].rsplit(".", 1)[0]
    text = re.sub(r"[^A-Za-z0-9._-]+", "_", f"{stem}_{label}")
    return f"{index:06d}_{text}.png"


def draw(frame: np.ndarray, points: np.ndarray, path: str) -> None:
    """Save ``frame`` (``[H, W]`` grey levels, stretched from its minimum to its maximum) upscaled by a
    whole factor with a cross at every row ``(x, y, ...)`` of ``points`` (x the row, y the column;
    pixel centres at integers), ringed when the frame is large (:data:`RING_BELOW`)."""
    from PIL import Image, ImageDraw

    h, w = frame.shape
    factor = max(1, math.ceil(SIDE / max(h, w)))
    lo, hi = float(frame.min()), float(frame.max())
    grey = np.clip(np.round((frame - lo) * (255.0 / max(hi - lo, 1e-6))), 0, 255).astype(np.uint8)
    image = Image.fromarray(grey).resize((w * factor, h * factor), Image.Resampling.NEAREST).convert("RGB")
    pen = ImageDraw.Draw(image)
    arm = max(2.0, 0.2 * factor)
    width = max(1, factor // 16)
    ring = RING * factor + 2
    for x, y in np.asarray(points, np.float64).reshape(-1, points.shape[-1])[:, :2]:
        # pixel (r, c) covers [r f, (r + 1) f) of the upscaled rows: its centre r is at (r + 1/2) f - 1/2
        row, col = (x + 0.5) * factor - 0.5, (y + 0.5) * factor - 0.5
        if factor < RING_BELOW:
            pen.ellipse([col - ring, row - ring, col + ring, row + ring], outline=RING_COLOUR)
        pen.line([(col - arm, row), (col + arm, row)], fill=COLOUR, width=width)
        pen.line([(col, row - arm), (col, row + arm)], fill=COLOUR, width=width)
    image.save(path)


__all__ = ["draw", "file_name"]
