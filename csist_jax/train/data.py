"""Where training data comes from: one function, :func:`load_split`, so the source can change in one place.

``config.data.source``:

* ``"generate"`` (default): CSIST-100K frames made in memory by :func:`csist_jax.data.csist100k.generate`
  with ``config.data.seed``. The splits are the disjoint index ranges of one seeded stream given by
  ``csist100k.SPLIT_START`` / ``SPLIT_SIZE`` (the published 80,000 / 10,000 / 10,000);
  ``{split}_size`` takes the first frames of a range (CPU-scale runs use slices).
* ``"tfds"``: a prepared TFDS directory ``config.data.dir`` (``datasets/``), split ``train`` / ``val`` /
  ``test``; ``{split}_size`` again takes the first frames.
"""

from __future__ import annotations

import numpy as np

from csist_jax.data import csist100k
from csist_jax.data.csist100k import SPLIT_SIZE, SPLIT_START
from csist_jax.data.pipeline import ArraySource, TFDSSource


def load_split(data_config, split: str) -> ArraySource:
    """The frames of ``split`` (``"train"``, ``"val"`` or ``"test"``) as an in-memory source."""
    if split not in SPLIT_START:
        raise ValueError(f"split must be one of {list(SPLIT_START)}, got {split!r}")
    size = data_config.get(f"{split}_size") or SPLIT_SIZE[split]
    source = data_config.get("source", "generate")
    if source == "generate":
        if size > SPLIT_SIZE[split]:
            raise ValueError(f"data.{split}_size must be <= {SPLIT_SIZE[split]}, got {size}")
        arrays = csist100k.generate(int(data_config.seed), int(size), start=SPLIT_START[split])
        return ArraySource({k: np.asarray(arrays[k]) for k in ("image", "targets", "count")})
    if source == "tfds":
        if not data_config.get("dir"):
            raise ValueError("data.dir must name a prepared TFDS dataset directory when data.source='tfds'")
        full = TFDSSource.from_directory(data_config.dir, split)
        if size > len(full):
            raise ValueError(
                f"data.{split}_size={size} but {data_config.dir} holds {len(full)} {split} frames"
            )
        return ArraySource(full.read(np.arange(size)))
    raise ValueError(f"data.source must be 'generate' or 'tfds', got {source!r}")


def read_all(source: ArraySource) -> dict[str, np.ndarray]:
    """Every frame of ``source`` (``image``, ``targets``, ``count``) in order."""
    return source.read(np.arange(len(source)))
