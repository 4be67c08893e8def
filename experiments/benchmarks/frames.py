"""Whole sensor frames: ``unmix_frames`` on a 256 x 256 frame against ``refine.localize`` on the same
frame's groups given as perfect 11 x 11 windows, one frame at a time; and frames/s in batches."""

from __future__ import annotations

import time

import numpy as np

import csist_jax
from csist_jax import refine
from csist_jax.data import scenes
from experiments.benchmarks.common import Row

SIZE = 256
STD = 2.0
BACKGROUND = 20.0


def _perfect_windows(data: dict, i: int) -> np.ndarray:
    """The 11 x 11 windows of frame ``i`` centred on its true groups, background removed (what
    ``refine.localize`` is given: the groups already found, cut out and levelled)."""
    image = data["image"][i].astype(np.float32) - BACKGROUND
    live = np.flatnonzero(data["group_size"][i] > 0)
    windows = []
    for g in live:
        r, q = np.clip(data["centres"][i, g] - 5, 0, SIZE - 11)
        windows.append(image[r : r + 11, q : q + 11])
    return np.clip(np.stack(windows), 0.0, 255.0)


def _per_frame(fn, n: int) -> float:
    """Seconds per frame of ``fn(i)`` over frames ``0 .. n-1``, after one untimed pass (compiles)."""
    for i in range(n):
        fn(i)
    t0 = time.perf_counter()
    for i in range(n):
        fn(i)
    return (time.perf_counter() - t0) / n


def run(quick: bool = False) -> list[Row]:
    n = 4 if quick else 16
    data = scenes.generate(0, n, height=SIZE, width=SIZE, density=4.0, isolated_density=2.0, noise_std=STD)
    groups = int((data["group_size"] > 0).sum()) / n
    ours = _per_frame(lambda i: csist_jax.unmix_frames(data["image"][i : i + 1], noise_std=STD), n)
    windows = [_perfect_windows(data, i) for i in range(n)]
    reference = _per_frame(lambda i: refine.localize(windows[i], noise_std=STD), n)
    rows = [
        Row(
            "frames",
            f"unmix_frames, one {SIZE}x{SIZE} frame a call",
            1.0 / ours,
            "frames/s",
            ratio=reference / ours,
            target="> 1x",
            note=f"vs refine.localize, its {groups:.0f} groups as perfect windows, std {STD:g}",
        )
    ]
    batch = data["image"]
    csist_jax.unmix_frames(batch, noise_std=STD)
    t0 = time.perf_counter()
    csist_jax.unmix_frames(batch, noise_std=STD)
    rows.append(
        Row(
            "frames",
            f"unmix_frames, {n} {SIZE}x{SIZE} frames a call",
            n / (time.perf_counter() - t0),
            "frames/s",
            note=f"{groups:.0f} groups per frame, std {STD:g}, the networks' path",
        )
    )
    return rows
