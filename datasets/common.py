"""What the two TFDS builders share: the config type, split offsets and the per-frame features.

Both datasets are stored one example per frame (CSIST-100K: 100,000 images; SeqCSIST: 100,000 frames,
trajectory-major), in ArrayRecord files written in key order (``disable_shuffling``), so record ``i`` of a
split is frame ``i``: readers get random access with ``as_data_source()`` and no TensorFlow.
"""

from __future__ import annotations

import dataclasses
import hashlib

import numpy as np
import tensorflow_datasets as tfds

from csist_jax.data import io

#: Generator index of a split's first sample: splits of one seed never share a sample, and the first
#: ``n`` samples of a split are the same for every config with that seed (a small config is a prefix
#: of the full one).
SPLIT_START = {"train": 0, "val": 1_000_000_000, "test": 2_000_000_000}
SPLITS = tuple(SPLIT_START)
CHUNK = 4096


@dataclasses.dataclass(eq=False)
class DatasetConfig(tfds.core.BuilderConfig):
    """A builder config: synthesise ``split_sizes`` samples per split from ``seed`` with ``protocol``
    (keyword arguments of the generator), or, with ``official``, import the official download from
    ``manual_dir`` (``train/``, ``val/``, ``test/`` in the official layout), where ``on_error`` is
    ``csist_jax.data.io.read_dir``'s: ``"raise"`` on the first bad file, or ``"skip"`` bad samples and
    report them in a warning."""

    seed: int = 0
    split_sizes: dict[str, int] = dataclasses.field(default_factory=dict)
    protocol: dict = dataclasses.field(default_factory=dict)
    official: bool = False
    on_error: str = "raise"


def official_configs() -> list[DatasetConfig]:
    """The configs that import the official download: strict, or skipping (and reporting) bad samples."""
    return [
        DatasetConfig(name="official", description="The official download (manual_dir).", official=True),
        DatasetConfig(
            name="official_skip",
            description="The official download (manual_dir); bad samples skipped and reported.",
            official=True,
            on_error="skip",
        ),
    ]


def custom_config(
    seed: int, split_sizes: dict[str, int], protocol: dict | None = None, unit: str = "images"
) -> DatasetConfig:
    """A config for any sizes, named after them (e.g. ``s0-train1000-val100-test100``)."""
    for split, n in split_sizes.items():
        if split not in SPLIT_START:
            raise ValueError(f"split_sizes: unknown split {split!r}; choose from {SPLITS}")
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ValueError(f"split_sizes[{split!r}] must be an integer >= 0, got {n!r}")
    name = f"s{seed}-" + "-".join(f"{s}{n}" for s, n in split_sizes.items())
    if protocol:
        # a stable digest (``hash`` of a str changes between processes)
        name += "-p" + hashlib.sha1(repr(sorted(protocol.items())).encode()).hexdigest()[:8]
    sizes = ", ".join(f"{s} {n:,}" for s, n in split_sizes.items())
    return DatasetConfig(
        name=name,
        description=f"Synthetic, seed {seed}: {sizes} {unit}.",
        seed=seed,
        split_sizes=dict(split_sizes),
        protocol=dict(protocol or {}),
    )


def chunk_size(split_sizes: dict[str, int], limit: int) -> int:
    """Samples per generator call: the largest split, capped at ``limit`` (at least 1)."""
    return max(1, min(limit, max(split_sizes.values(), default=1)))


def frame_features(size: int, sequence: bool) -> tfds.features.FeaturesDict:
    """One frame: the stored uint8 image, its ragged targets ``(x, y, brightness)`` and their count,
    sigma, the frame's file id, and for sequences the trajectory id and 0-based frame index."""
    features = {
        "image": tfds.features.Tensor(shape=(size, size), dtype=np.uint8),
        "targets": tfds.features.Tensor(shape=(None, 3), dtype=np.float32),
        "count": tfds.features.Scalar(dtype=np.int32),
        "sigma": tfds.features.Scalar(dtype=np.float32),
        "id": tfds.features.Scalar(dtype=np.int64),
    }
    if sequence:
        features["trajectory"] = tfds.features.Scalar(dtype=np.int64)
        features["frame"] = tfds.features.Scalar(dtype=np.int32)
    return tfds.features.FeaturesDict(features)


MANUAL_DOWNLOAD_INSTRUCTIONS = """\
For the `official` / `official_skip` configs, unpack the official download so that `manual_dir` holds
`train/`, `val/` and `test/` in the official layout (CSIST-100K: `cso_img/image_{k}.png` +
`Annotations/CSO{k}.xml`; SeqCSIST: `image/image_{k}.png` + `annotation/COS{k}.xml`). Every file is
validated while importing.
"""


def split_generators(builder, dl_manager) -> dict:
    """The splits of a builder: read from ``manual_dir`` (official configs) or generated.

    TFDS cannot store an empty split, so a size-0 split is left out of the dataset.
    """
    config = builder.builder_config
    if config.official:
        return {s: builder._generate_examples(official=dl_manager.manual_dir / s) for s in SPLITS}
    return {s: builder._generate_examples(split=s, n=n) for s, n in config.split_sizes.items() if n > 0}


def read_official(path, layout: str, on_error: str) -> dict:
    """One split of the official download, every file validated (``csist_jax.data.io.read_dir``)."""
    data = io.read_dir(path, layout=layout, progress=True, on_error=on_error)
    if len(data["count"]) == 0:
        raise ValueError(f"{path}: the split directory holds no samples")
    return data


def generated_chunks(config, generate, split: str, n: int, limit: int):
    """``(lo, arrays)`` for samples ``lo ..`` of ``split``, made by ``generate`` a full chunk at a time
    and trimmed to ``n``, so that one compiled shape serves every split."""
    chunk = chunk_size(config.split_sizes, limit)
    for lo in range(0, n, chunk):
        data = generate(config.seed, chunk, start=SPLIT_START[split] + lo, **config.protocol)
        keep = min(chunk, n - lo)
        yield lo, {k: v[:keep] for k, v in data.items()}


def builder_configs(sizes: dict[str, dict[str, int]], unit: str = "") -> list:
    """The configs every builder offers: one synthetic config (seed 0) per named size, then the
    official imports (``official`` / ``official_skip``)."""
    synthetic = [
        DatasetConfig(name=name, description=f"Synthetic, seed 0: {split}{unit}.", seed=0, split_sizes=split)
        for name, split in sizes.items()
    ]
    return synthetic + official_configs()
