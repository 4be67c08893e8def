"""Where training data comes from: one function, :func:`load_split`, so the source can change in one place.

``config.data.source``:

* ``"generate"`` (default): CSIST-100K frames made in memory by :func:`csist_jax.data.csist100k.generate`
  with ``config.data.seed``. The splits are the disjoint index ranges of one seeded stream given by
  ``csist100k.SPLIT_START`` / ``SPLIT_SIZE`` (the published 80,000 / 10,000 / 10,000);
  ``{split}_size`` takes the first frames of a range (CPU-scale runs use slices).
* ``"tfds"``: a prepared TFDS directory ``config.data.dir`` (``datasets/``), split ``train`` / ``val`` /
  ``test``; ``{split}_size`` again takes the first frames.

``config.data.dataset = "seqcsist"``: the same for SeqCSIST trajectories (:mod:`csist_jax.data.seqcsist`,
``seqcsist.SPLIT_START`` / ``SPLIT_SIZE``, the published 3,500 / 750 / 750); ``{split}_size`` counts
trajectories. :func:`training_arrays` turns a split into what the training loop holds: frames, or with
``config.data.window`` whole trajectories (cut into windows on the device,
:func:`seqcsist.window_frames`) and, for validation, the windows themselves (:func:`seqcsist.windows`:
the same rule on the host).
"""

from __future__ import annotations

import numpy as np

from csist_jax.data import csist100k, seqcsist
from csist_jax.data.pipeline import ArraySource, TFDSSource

#: the default dataset's splits (CSIST-100K frames; SeqCSIST's are ``seqcsist.SPLIT_START`` / ``SPLIT_SIZE``)
SPLIT_START, SPLIT_SIZE = csist100k.SPLIT_START, csist100k.SPLIT_SIZE
#: dataset name -> its module (generator, ``SPLIT_START``, ``SPLIT_SIZE``)
DATASETS = {"csist100k": csist100k, "seqcsist": seqcsist}
_FIELDS = ("image", "targets", "count", "trajectory")


def load_split(data_config, split: str) -> ArraySource:
    """The frames of ``split`` (``"train"``, ``"val"`` or ``"test"``) as an in-memory source (SeqCSIST:
    ``{split}_size`` trajectories, their frames in trajectory-major order)."""
    name = data_config.get("dataset", "csist100k")
    if name not in DATASETS:
        raise ValueError(f"data.dataset must be one of {list(DATASETS)}, got {name!r}")
    dataset = DATASETS[name]
    if split not in dataset.SPLIT_START:
        raise ValueError(f"split must be one of {list(dataset.SPLIT_START)}, got {split!r}")
    limit = dataset.SPLIT_SIZE[split]
    size = data_config.get(f"{split}_size") or limit
    unit = "trajectories" if name == "seqcsist" else "frames"
    source = data_config.get("source", "generate")
    if source == "generate":
        if size > limit:
            raise ValueError(f"data.{split}_size must be <= {limit} ({name} {split} {unit}), got {size}")
        arrays = dataset.generate(int(data_config.seed), int(size), start=dataset.SPLIT_START[split])
        return ArraySource({k: np.asarray(arrays[k]) for k in _FIELDS if k in arrays})
    if source == "tfds":
        if not data_config.get("dir"):
            raise ValueError("data.dir must name a prepared TFDS dataset directory when data.source='tfds'")
        full = TFDSSource.from_directory(data_config.dir, split)
        per = full.n_frames or 1
        if size * per > len(full):
            raise ValueError(
                f"data.{split}_size={size} but {data_config.dir} holds {len(full) // per} {split} {unit}"
            )
        if full.n_frames is None:
            return ArraySource(full.read(np.arange(size)))
        frames = full.read(np.arange(size * per))
        return ArraySource(_as_trajectories(frames, per))
    raise ValueError(f"data.source must be 'generate' or 'tfds', got {source!r}")


def _as_trajectories(frames: dict, n_frames: int) -> dict:
    """Trajectory-major frames (``image`` ``[n T, H, W]`` ...) back to trajectories ``[n, T, ...]``."""
    n = len(frames["image"]) // n_frames
    return {
        "image": frames["image"].reshape((n, n_frames) + frames["image"].shape[1:]),
        "targets": frames["targets"].reshape((n, n_frames) + frames["targets"].shape[1:]),
        "count": frames["count"].reshape(n, n_frames)[:, 0],
        "trajectory": frames["trajectory"].reshape(n, n_frames)[:, 0],
    }


def training_arrays(source: ArraySource, window: int, split: str) -> dict[str, np.ndarray]:
    """What training holds of a split: every frame (``window`` 0), or for windows of ``window`` frames
    the trajectories (``split="train"``: ``image`` ``[n, T, H, W]``, ``targets`` ``[n, T, K, 3]``) or
    every window with its centre frame's labels (other splits: :func:`seqcsist.windows`)."""
    frames = read_all(source)
    if not window:
        return {k: frames[k] for k in ("image", "targets", "count")}
    if source.n_frames is None:
        raise ValueError("config.data.window > 0 needs a sequence dataset (config.data.dataset='seqcsist')")
    trajectories = _as_trajectories(frames, source.n_frames)
    if split == "train":
        return trajectories
    return seqcsist.windows(trajectories, length=window)


def read_all(source: ArraySource) -> dict[str, np.ndarray]:
    """Every frame of ``source`` (``image``, ``targets``, ``count``) in order."""
    return source.read(np.arange(len(source)))
