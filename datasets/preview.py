"""Sample grids of both datasets as PNG: the stored 8-bit frames with the ground truth marked.

Rows are the image's ``x`` (first axis) and columns its ``y``, so a target ``(x, y)`` is drawn at plot
position ``(y, x)`` on ``imshow``'s upper-left origin.
"""

from __future__ import annotations

import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from csist_jax.data import seqcsist  # noqa: E402

_MARKER = dict(marker="+", s=70, linewidths=1.4, color="#ff3b30")


def _frame(ax, image, targets, count, title, box=None):
    """Draw a frame; ``box = (x_lo, x_hi, y_lo, y_hi)`` zooms to part of it (default: all of it)."""
    size = image.shape[-1]
    x_lo, x_hi, y_lo, y_hi = box if box is not None else (-0.5, size - 0.5, -0.5, size - 0.5)
    ax.imshow(image, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
    ax.scatter(targets[:count, 1], targets[:count, 0], **_MARKER)
    ax.set_xlim(y_lo, y_hi)
    ax.set_ylim(x_hi, x_lo)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title, fontsize=8)


def csist100k_grid(
    data: dict[str, np.ndarray], path: os.PathLike | str, *, rows: int = 4, cols: int = 6
) -> str:
    """Save the first ``rows * cols`` frames of a CSIST-100K dict with their targets (red +) to ``path``."""
    n = min(rows * cols, len(data["count"]))
    fig, axes = plt.subplots(rows, cols, figsize=(1.9 * cols, 2.0 * rows + 0.5), squeeze=False)
    for i, ax in enumerate(axes.flat):
        if i >= n:
            ax.axis("off")
            continue
        count = int(data["count"][i])
        peak = int(data["image"][i].max())
        _frame(ax, data["image"][i], data["targets"][i], count, f"#{i}: {count} target(s), max {peak}")
    fig.suptitle("CSIST-100K samples: 11x11 8-bit frames, true positions marked +", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return os.fspath(path)


def seqcsist_grid(
    data: dict[str, np.ndarray], path: os.PathLike | str, *, trajectories: int = 4, frames=(0, 5, 10, 15, 19)
) -> str:
    """Save frames ``frames`` of the first trajectories of a SeqCSIST dict to ``path``.

    Each panel zooms to the 5x5 pixels around the trajectory (fixed per row, so the motion shows) and
    marks the frame's targets (red +) and the reference point's whole path (cyan line, its current
    position a cyan dot); the last column plots the whole track of every target in pixel coordinates.
    """
    n = min(trajectories, len(data["count"]))
    cols = len(frames) + 1
    fig, axes = plt.subplots(n, cols, figsize=(1.9 * cols, 2.05 * n + 0.5), squeeze=False)
    for j in range(n):
        count = int(data["count"][j])
        reference = data.get("reference")
        curve = data.get("curve")
        kind = seqcsist.CURVE_NAMES[int(curve[j])] if curve is not None else "?"
        centre = np.round(data["targets"][j, :, :count, :2].mean(axis=(0, 1)))
        box = (centre[0] - 2.5, centre[0] + 2.5, centre[1] - 2.5, centre[1] + 2.5)
        for col, t in enumerate(frames):
            ax = axes[j, col]
            _frame(
                ax, data["image"][j, t], data["targets"][j, t], count, f"traj {j} ({kind}), frame {t}", box
            )
            if reference is not None:
                ax.plot(reference[j, :, 1], reference[j, :, 0], color="#32d2ff", lw=0.8)
                ax.scatter(reference[j, t, 1], reference[j, t, 0], s=8, color="#32d2ff")
        ax = axes[j, -1]
        tracks = data["targets"][j, :, :count]
        for k in range(count):
            ax.plot(tracks[:, k, 1], tracks[:, k, 0], lw=1.2)
            ax.scatter(tracks[0, k, 1], tracks[0, k, 0], s=10, color="black")
        ax.set_aspect("equal")
        ax.invert_yaxis()
        ax.tick_params(labelsize=6)
        ax.set_xlabel("y (column)", fontsize=7)
        ax.set_ylabel("x (row)", fontsize=7)
        ax.set_title(f"{count} tracks (dot: frame 0)", fontsize=8)
    fig.suptitle("SeqCSIST samples (5x5 px zoom): true positions +, reference path in cyan", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return os.fspath(path)
