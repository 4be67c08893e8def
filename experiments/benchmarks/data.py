"""Data benchmarks: generating, building, reading and batching both datasets.

Rows (frames/s unless stated; ``ratio`` = ours over the plain reference measured in the same run):

* generation of CSIST-100K / SeqCSIST frames by the jitted, vectorised generators, against a plain
  per-sample Python/NumPy loop of the same protocol (the toolkit's approach, with the closed-form PSF
  instead of its numerical integration, which would be far slower still);
* building a TFDS (ArrayRecord) split: a slice is built and the full 100,000-frame time projected;
* batches of 64 from a built dataset through ``csist_jax.data.pipeline`` (frames with c=3 HR labels,
  SeqCSIST 5-frame windows), against reading the same samples from the official png + xml files;
* writing and reading the official layout.
"""

from __future__ import annotations

import math
import tempfile
import time
from pathlib import Path

import numpy as np
from scipy.special import erf

from csist_jax.data import csist100k, io, pipeline, seqcsist
from datasets import build, common
from experiments.benchmarks.common import Row, best_time

SECTION = "data"


def _g(d, sigma=0.5):
    s = math.sqrt(2.0) * sigma
    return 0.5 * (erf((d + 0.5) / s) - erf((d - 0.5) / s))


def _render_plain(targets, size=11):
    grid = np.arange(size)
    image = np.zeros((size, size))
    for x, y, b in targets:
        image += b * np.outer(_g(grid - x), _g(grid - y))
    return np.clip(np.round(image), 0, 255).astype(np.uint8)


def reference_csist100k(n: int, seed: int = 0) -> list[np.ndarray]:
    """One image at a time, as the toolkit's generator does: plain rejection sampling from the whole box,
    up to 100,000 draws per target, and rendering in Python."""
    rng = np.random.default_rng(seed)
    images = []
    for _ in range(n):
        cx, cy = rng.integers(2, 9, 2)
        count = int(np.clip(np.round(rng.normal(3, 1)), 1, 5))
        placed = []
        for _k in range(count):
            for _try in range(100_000):
                p = (cx + rng.uniform(-0.4, 0.6), cy + rng.uniform(-0.4, 0.6))
                if all(math.hypot(p[0] - q[0], p[1] - q[1]) >= 0.494 for q in placed):
                    placed.append(p)
                    break
        images.append(_render_plain([(x, y, rng.uniform(220, 250)) for x, y in placed]))
    return images


def reference_seqcsist(n: int, seed: int = 0) -> list[np.ndarray]:
    """One trajectory (20 frames) at a time in Python (straight-line reference curves)."""
    rng = np.random.default_rng(seed)
    dirs = np.array([[-1, 0], [1, 0], [0, -1], [0, 1]], float)
    frames = []
    for _ in range(n):
        x0, y0 = rng.integers(1, 10), rng.uniform(2, 8)
        sign, slope = (1 if x0 < 5 else -1), rng.uniform(-1, 1)
        count = rng.integers(2, 5)
        order = rng.permutation(4)[:count]
        rate, bright = rng.uniform(0, 0.0014, count), rng.uniform(220, 250, count)
        for t in range(20):
            u = sign * 0.04 * t
            ref = np.array([x0 + u, y0 + slope * u])
            pos = ref + (0.3 + rate * t)[:, None] * dirs[order]
            frames.append(_render_plain([(x, y, b) for (x, y), b in zip(pos, bright)]))
    return frames


def _read_official_samples(root: Path, ids: np.ndarray) -> np.ndarray:
    """Read samples ``ids`` straight from the official files (png + xml per sample), validated."""
    lay = io.LAYOUTS["csist100k"]
    out = np.zeros((len(ids), 11, 11), np.uint8)
    for i, k in enumerate(ids):
        out[i] = io._read_png(root / lay.image_dir / lay.image_name(int(k)), 11)
        io._read_xml(root / lay.annotation_dir / lay.annotation_name(int(k)), (11, 11), lay.max_targets)
    return out


def run(quick: bool) -> list[Row]:
    rows: list[Row] = []
    n_gen = 4096 if quick else 16384
    n_ref = 256 if quick else 1024

    t_ours = best_time(lambda: csist100k.generate(1, n_gen), repeats=3)
    t_ref = best_time(lambda: reference_csist100k(n_ref), repeats=1)
    ours, ref = n_gen / t_ours, n_ref / t_ref
    rows.append(
        Row(
            SECTION,
            "generate CSIST-100K (jit+vmap) vs python loop",
            ours,
            "frames/s",
            ours / ref,
            note=f"reference {ref:,.0f} frames/s",
        )
    )

    n_traj = n_gen // 20
    t_ours = best_time(lambda: seqcsist.generate(1, n_traj), repeats=3)
    t_ref = best_time(lambda: reference_seqcsist(n_ref // 20), repeats=1)
    ours, ref = 20 * n_traj / t_ours, 20 * (n_ref // 20) / t_ref
    rows.append(
        Row(
            SECTION,
            "generate SeqCSIST frames (jit+vmap) vs python loop",
            ours,
            "frames/s",
            ours / ref,
            note=f"reference {ref:,.0f} frames/s",
        )
    )

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        n_build = 4096 if quick else 16384
        builder = build.make_builder(
            "csist100k", data_dir=tmp / "tfds", seed=0, split_sizes={"train": n_build}
        )
        # compile the builder's chunk shape outside the timed build
        csist100k.generate(0, common.chunk_size({"train": n_build}, common.CHUNK))
        t0 = time.perf_counter()
        builder.download_and_prepare(file_format="array_record")
        t_build = time.perf_counter() - t0
        rows.append(
            Row(
                SECTION,
                f"build CSIST-100K TFDS split ({n_build:,} frames)",
                n_build / t_build,
                "frames/s",
                note="generate + serialise + ArrayRecord write",
            )
        )
        rows.append(
            Row(
                SECTION,
                "projected full CSIST-100K build (100,000 frames)",
                100_000 * t_build / n_build,
                "s",
                note="linear in frames, from the slice above",
            )
        )

        source = pipeline.TFDSSource(builder.as_data_source()["train"])
        pipe = pipeline.Pipeline(source, batch_size=64, seed=0, c=3, num_epochs=None)
        stream = iter(pipe)

        def next_batch():
            return next(stream)["label"]

        t_batch = best_time(next_batch, repeats=20)
        official = tmp / "official"
        io.write_dir(official, csist100k.generate(0, 4096))
        ids = np.random.default_rng(0).permutation(4096)[:64]
        t_files = best_time(lambda: _read_official_samples(official, ids), repeats=5)
        rows.append(
            Row(
                SECTION,
                "batch-64 from TFDS (+c=3 labels) vs png+xml files",
                64 / t_batch,
                "frames/s",
                t_files / t_batch,
                note=f"{t_batch * 1e3:.1f} ms/batch; files {t_files * 1e3:.1f} ms",
            )
        )
        rows.append(
            Row(SECTION, "batch-64 time from TFDS (shuffled, c=3 labels)", t_batch, "s", target="< 0.2 s")
        )

        t_load = best_time(source.to_arrays, repeats=1)
        rows.append(
            Row(
                SECTION,
                "load a built split into memory (TFDSSource.to_arrays)",
                n_build / t_load,
                "frames/s",
                note="once per run; then batches come from memory",
            )
        )

        memory = pipeline.ArraySource(csist100k.generate(0, n_build))
        mem_stream = iter(pipeline.Pipeline(memory, batch_size=64, seed=0, c=3, num_epochs=None))
        t_mem = best_time(lambda: next(mem_stream)["label"], repeats=20)
        rows.append(
            Row(
                SECTION,
                "batch-64 from memory (ArraySource, c=3 labels)",
                64 / t_mem,
                "frames/s",
                note=f"{t_mem * 1e3:.2f} ms/batch",
            )
        )

        n_seq = 64 if quick else 256
        seq_builder = build.make_builder(
            "seqcsist", data_dir=tmp / "tfds", seed=0, split_sizes={"train": n_seq}
        )
        seq_builder.download_and_prepare(file_format="array_record")
        seq = pipeline.TFDSSource(seq_builder.as_data_source()["train"])
        seq_stream = iter(pipeline.Pipeline(seq, batch_size=64, window=5, seed=0, c=3, num_epochs=None))
        t_win = best_time(lambda: next(seq_stream)["label"], repeats=20)
        rows.append(
            Row(
                SECTION,
                "batch-64 SeqCSIST windows (5 frames) from TFDS",
                64 / t_win,
                "windows/s",
                note=f"{t_win * 1e3:.1f} ms/batch",
                target="< 0.2 s/batch",
            )
        )

        data = csist100k.generate(0, 4096)
        t_write = best_time(lambda: io.write_dir(tmp / "w", data, overwrite=True), repeats=1)
        t_read = best_time(lambda: io.read_dir(tmp / "w"), repeats=1)
        rows.append(Row(SECTION, "write official png+xml layout", 4096 / t_write, "frames/s"))
        rows.append(Row(SECTION, "read + validate official png+xml layout", 4096 / t_read, "frames/s"))
    return rows
