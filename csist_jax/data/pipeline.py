"""Input pipeline: from a built TFDS dataset or in-memory arrays to device batches.

A *source* holds frames in order (SeqCSIST: trajectory-major, ``n_frames`` per trajectory) and reads any
set of them as padded numpy arrays: :class:`ArraySource` wraps generator / ``io.read_dir`` outputs,
:class:`TFDSSource` a built dataset's ArrayRecord files (random access through ``as_data_source()``, no
TensorFlow). :class:`Pipeline` turns either into batches:

* samples are frames, or with ``window=L`` (SeqCSIST) every run of ``L`` consecutive frames of one
  trajectory, predicting its centre frame (16 per 20-frame trajectory for ``L = 5``), drawn across all
  trajectories;
* epoch ``e`` visits the samples in the order ``default_rng([seed, e]).permutation(n)`` (or in order with
  ``shuffle=False``), so a run is reproducible and can resume at any step (``start_step``);
* ``batch_size`` must be divisible by the device count (``num_devices``, default
  ``jax.local_device_count()``), and when the sample count is not a multiple of ``batch_size`` the caller
  must choose ``remainder="drop"`` (the last partial batch of each epoch is left out) or ``"pad"`` (it is
  filled with repeats of the epoch's first samples, marked ``mask = False``); nothing is left out silently;
* a batch is a dict of device arrays (placed with ``sharding`` when given): ``image`` ``[B, H, W]`` or
  ``[B, L, H, W]`` (``image_dtype``, raw 0..255), ``targets`` ``[B, K, 3]`` and ``count`` ``[B]`` (of
  the centre frame for windows), ``mask`` ``[B]``, ``index`` ``[B]`` (sample index), for sequences
  ``trajectory`` and ``frame`` ``[B]`` (the centre frame's true index), and with ``c`` the HR label
  ``label`` ``[B, size c, size c]`` computed on device by ``csist_jax.physics.hr_label``.
"""

from __future__ import annotations

import functools
import os
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from csist_jax import _checks
from csist_jax.data.io import DatasetFileError, ReadReport
from csist_jax.data.seqcsist import window_frames
from csist_jax.physics import grid

_FIELDS = ("image", "targets", "count")
_SEQUENCE_FIELDS = ("trajectory", "frame")


class ArraySource:
    """Frames held in memory, from a generator or ``io.read_dir`` output.

    ``data`` is single-frame (``image`` ``[n, H, W]``, ``targets`` ``[n, K, 3]``, ``count`` ``[n]``) or
    trajectories (``image`` ``[n, T, H, W]``, ``targets`` ``[n, T, K, 3]``, ``count`` ``[n]``, optional
    ``trajectory`` ids), flattened here to ``n T`` frames in trajectory-major order.
    """

    def __init__(self, data: dict[str, np.ndarray]):
        image = np.asarray(data["image"])
        targets = np.asarray(data["targets"], np.float32)
        count = np.asarray(data["count"], np.int32)
        if image.dtype != np.uint8:
            raise TypeError(f"data['image'] must be uint8 (the stored frames), got {image.dtype}")
        if image.ndim == 3:
            _checks.trailing_shape("data['targets']", targets, (None, 3), min_ndim=3)
            self.n_frames = None
            self._arrays = {"image": image, "targets": targets, "count": count}
        elif image.ndim == 4:
            _checks.trailing_shape("data['targets']", targets, (image.shape[1], None, 3), min_ndim=4)
            n, t = image.shape[:2]
            self.n_frames = t
            trajectory = np.asarray(data.get("trajectory", np.arange(n)), np.int64)
            self._arrays = {
                "image": image.reshape((n * t,) + image.shape[2:]),
                "targets": targets.reshape((n * t,) + targets.shape[2:]),
                "count": np.repeat(count, t),
                "trajectory": np.repeat(trajectory, t),
                "frame": np.tile(np.arange(t, dtype=np.int32), n),
            }
        else:
            raise ValueError(f"data['image'] must be [n, H, W] or [n, T, H, W], got shape {image.shape}")
        n = len(self._arrays["image"])
        if len(self._arrays["targets"]) != n or len(self._arrays["count"]) != n:
            raise ValueError(
                f"data disagree on the sample count: image {image.shape}, targets {targets.shape}, "
                f"count {count.shape}"
            )
        if np.any(self._arrays["count"] > targets.shape[-2]) or np.any(self._arrays["count"] < 0):
            raise ValueError(f"data['count'] must lie in [0, {targets.shape[-2]}]")
        self.max_targets = targets.shape[-2]

    def __len__(self) -> int:
        return len(self._arrays["image"])

    def read(self, indices: np.ndarray) -> dict[str, np.ndarray]:
        """Frames ``indices`` as arrays (targets padded to ``max_targets``)."""
        return {name: value[indices] for name, value in self._arrays.items()}


class TFDSSource:
    """Frames of one split of a built dataset (ArrayRecord, read with ``as_data_source()``).

    ``data_source`` is ``builder.as_data_source()[split]``; :meth:`from_directory` opens a prepared
    dataset directory without its builder class. Records must be in frame order (the builders of
    ``datasets/`` write them so); for sequences every read checks each frame's ``trajectory`` and
    ``frame`` fields against its position and raises on a mismatch. Targets are padded to
    ``max_targets`` (5, or 4 for sequences); a record with more raises ``ValueError``.

    A record that cannot be read (a truncated or corrupt ArrayRecord file) raises
    :class:`csist_jax.data.io.DatasetFileError` naming the file and the record. With ``on_error="skip"``
    every record is read once here and the unreadable ones (and those with more than ``max_targets``
    targets) are left out (SeqCSIST: their whole trajectories), listed in ``report`` (a
    :class:`csist_jax.data.io.ReadReport`) and summarised in a warning; indices then count the kept frames.
    """

    def __init__(self, data_source, *, max_targets: int | None = None, on_error: str = "raise"):
        if on_error not in ("raise", "skip"):
            raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
        self._source = data_source
        self._files = _record_files(data_source)
        self._keep: np.ndarray | None = None  # the data source's indices of the kept frames ("skip")
        self.report: ReadReport | None = None
        self.max_targets = None if max_targets is None else _checks.positive_int("max_targets", max_targets)
        if len(data_source) == 0:
            raise ValueError("data_source is empty")
        if on_error == "skip":
            self._keep, self.report = self._scan()
        first = self._read_records([0])[0]
        missing = [f for f in (*_FIELDS, "id") if f not in first]
        if missing:
            raise ValueError(f"data_source records lack the field(s) {missing}; got {sorted(first)}")
        sequence = all(f in first for f in _SEQUENCE_FIELDS)
        if sequence:
            # frames count up from 0 in every trajectory: the first trajectory shows how many there are
            frames = [int(r["frame"]) for r in self._read_records(range(min(len(self), 64)))]
            if frames[0] != 0:
                raise ValueError(
                    f"data_source starts at frame {frames[0]}, not 0: records are not in frame order"
                )
            self.n_frames = max(frames) + 1
            if len(self) % self.n_frames:
                raise ValueError(
                    f"data_source holds {len(self)} frames, not a multiple of {self.n_frames} per trajectory"
                )
        else:
            self.n_frames = None
        if self.max_targets is None:
            self.max_targets = 4 if sequence else 5

    def _where(self, raw: int) -> tuple[str | None, str]:
        """``(file, "record r")`` of the data source's record ``raw`` (file None when not known)."""
        for lo, hi, filename, skip in self._files:
            if lo <= raw < hi:
                return filename, f"record {skip + raw - lo}"
        return None, f"record {raw}"

    def _error(self, raw: int, reason: str) -> Exception:
        filename, record = self._where(raw)
        if filename is None:
            return ValueError(f"data_source {record}: {reason}")
        return DatasetFileError(filename, f"{record}: {reason}")

    def _get(self, raw: list[int]) -> list:
        getitems = getattr(self._source, "__getitems__", None)
        return list(getitems(raw)) if getitems is not None else [self._source[i] for i in raw]

    def _read_raw(self, raw) -> list:
        """Records ``raw`` of the data source, unchecked; a failure to read names the file."""
        raw = [int(i) for i in raw]
        try:
            return self._get(raw)
        except Exception as err:  # noqa: BLE001 - find and name the record (and file) that fails
            for i in raw:
                try:
                    self._get([i])
                except Exception as one:  # noqa: BLE001
                    raise self._error(i, f"unreadable ({type(one).__name__}: {one})") from None
            raise err

    def _read_records(self, indices) -> list[dict]:
        """Records ``indices`` (of the kept frames), each checked to be readable."""
        raw = [int(i) for i in indices]
        if self._keep is not None:
            raw = self._keep[raw].tolist()
        records = self._read_raw(raw)
        for i, record in zip(raw, records):
            problem = _record_problem(record)
            if problem is not None:
                raise self._error(i, problem)
        return records

    def _scan(self, chunk: int = 4096) -> tuple[np.ndarray, ReadReport]:
        """``(kept indices, report)``: every record read once; unreadable ones (with their trajectories)
        and those with more than ``max_targets`` targets left out."""
        n = len(self._source)
        bad: dict[int, str] = {}
        frame = np.full(n, -1, np.int64)
        count = np.zeros(n, np.int64)
        for lo in range(0, n, chunk):
            part = range(lo, min(lo + chunk, n))
            try:
                records = list(zip(part, self._get(list(part))))
            except Exception:  # noqa: BLE001 - read one by one: only the unreadable ones are left out
                records = []
                for i in part:
                    try:
                        records.append((i, self._get([i])[0]))
                    except Exception as err:  # noqa: BLE001
                        bad[i] = f"unreadable ({type(err).__name__}: {err})"
            for i, record in records:
                problem = _record_problem(record)
                if problem is not None:
                    bad[i] = problem
                    continue
                frame[i] = int(record["frame"]) if "frame" in record else -1
                count[i] = len(record["targets"]) if "targets" in record else 0
        limit = self.max_targets or (4 if np.any(frame >= 0) else 5)
        for i in np.flatnonzero(count > limit):
            if int(i) not in bad:
                bad[int(i)] = f"{count[i]} targets, more than max_targets={limit}"
        keep = np.asarray([i for i in range(n) if i not in bad], np.int64)
        if np.any(frame >= 0):  # sequences: a bad frame leaves its whole trajectory out
            n_frames = int(frame.max()) + 1
            broken = {i // n_frames for i in bad}
            keep = keep[~np.isin(keep // n_frames, list(broken))]
        path = Path(self._files[0][2]).parent if self._files else Path(type(self._source).__name__)
        report = ReadReport(path=path, layout="ArrayRecord", n_read=len(keep))
        for i in sorted(bad):
            filename, record = self._where(i)
            report.skipped.append((filename or "data_source", f"{record}: {bad[i]}"))
        if len(keep) < n - len(bad):
            report.skipped.append(
                (str(path), f"{n - len(bad) - len(keep)} readable frames left out with their trajectories")
            )
        if not len(keep):
            raise ValueError(f"no readable record in the data source:\n{report.summary()}")
        if report.skipped:
            warnings.warn(report.summary(), stacklevel=3)
        return keep, report

    @classmethod
    def from_directory(cls, path: os.PathLike | str, split: str, **kwargs) -> TFDSSource:
        """Open split ``split`` of a prepared dataset directory (``<data_dir>/<name>/<config>/<version>``)."""
        import tensorflow_datasets as tfds

        builder = tfds.builder_from_directory(os.fspath(path))
        sources = builder.as_data_source()
        if split not in sources:
            raise ValueError(f"split {split!r} not in {os.fspath(path)}; it has {sorted(sources)}")
        return cls(sources[split], **kwargs)

    def __len__(self) -> int:
        return len(self._source) if self._keep is None else len(self._keep)

    def read(self, indices: np.ndarray) -> dict[str, np.ndarray]:
        """Frames ``indices`` as arrays (targets padded to ``max_targets``)."""
        indices = np.asarray(indices).reshape(-1)
        records = self._read_records(indices)
        raw = indices if self._keep is None else self._keep[indices]
        n = len(records)
        targets = np.zeros((n, self.max_targets, 3), np.float32)
        count = np.zeros((n,), np.int32)
        for i, record in enumerate(records):
            k = len(record["targets"])
            if k > self.max_targets:
                raise self._error(
                    int(raw[i]),
                    f"frame {indices[i]} (id {int(record['id'])}) has {k} targets, more than "
                    f"max_targets={self.max_targets}",
                )
            targets[i, :k] = record["targets"]
            count[i] = k
        out = {
            "image": np.stack([r["image"] for r in records]).astype(np.uint8),
            "targets": targets,
            "count": count,
        }
        if self.n_frames is not None:
            out["trajectory"] = np.asarray([r["trajectory"] for r in records], np.int64)
            out["frame"] = np.asarray([r["frame"] for r in records], np.int32)
            wrong = out["frame"] != indices % self.n_frames
            if np.any(wrong):
                i = int(np.argmax(wrong))
                raise self._error(
                    int(raw[i]),
                    f"records are not in trajectory-major frame order: frame {int(indices[i])} holds frame "
                    f"{int(out['frame'][i])} of trajectory {int(out['trajectory'][i])}; rebuild the dataset",
                )
        return out

    def to_arrays(self, batch: int = 4096) -> ArraySource:
        """Read every record once into an :class:`ArraySource` (SeqCSIST: regrouped into trajectories)."""
        parts = [self.read(np.arange(lo, min(lo + batch, len(self)))) for lo in range(0, len(self), batch)]
        flat = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
        if self.n_frames is None:
            return ArraySource(flat)
        t = self.n_frames
        data = {
            "image": flat["image"].reshape((-1, t) + flat["image"].shape[1:]),
            "targets": flat["targets"].reshape((-1, t) + flat["targets"].shape[1:]),
            "count": flat["count"][::t],
            "trajectory": flat["trajectory"][::t],
        }
        return ArraySource(data)


def _record_files(data_source) -> list[tuple[int, int, str, int]]:
    """``(first, end, file, skip)`` per ArrayRecord file of a TFDS data source: its records ``first ..
    end - 1`` are the file's records ``skip ..``; empty when the source does not say (a plain list)."""
    try:
        instructions = data_source.dataset_info.splits[data_source.split].file_instructions
    except Exception:  # noqa: BLE001 - not a TFDS data source: records are named by index only
        return []
    out, first = [], 0
    for instruction in instructions:
        out.append((first, first + instruction.take, os.fspath(instruction.filename), instruction.skip))
        first += instruction.take
    return out


def _record_problem(record) -> str | None:
    """Why ``record`` is unreadable (an ArrayRecord file truncated or corrupt there), or None."""
    if not isinstance(record, Mapping):
        return f"not a record (got {type(record).__name__})"
    empty = sorted(name for name, value in record.items() if value is None)
    if empty:
        return f"unreadable record (field(s) {empty} came back empty: the file is truncated or corrupt)"
    image, targets = record.get("image"), record.get("targets")
    if image is not None and np.ndim(image) != 2:
        return f"image of shape {np.shape(image)}, not [H, W]"
    if targets is not None and (np.ndim(targets) != 2 or np.shape(targets)[-1] != 3):
        return f"targets of shape {np.shape(targets)}, not [count, 3]"
    return None


@functools.partial(jax.jit, static_argnames=("c", "size", "image_dtype"))
def _on_device(batch, c, size, image_dtype):
    out = dict(batch)
    out["image"] = batch["image"].astype(image_dtype)
    if c is not None:
        out["label"] = grid.hr_label(batch["targets"], c, size)
    return out


class Pipeline:
    """Seeded, epoch-based batches of frames or windows from a source; iterate to get device batches.

    >>> from csist_jax.data import csist100k
    >>> pipe = Pipeline(ArraySource(csist100k.generate(0, 96)), batch_size=32, seed=0, c=3)
    >>> batch = next(iter(pipe))
    >>> batch["image"].shape, batch["label"].shape, pipe.steps_per_epoch
    ((32, 11, 11), (32, 33, 33), 3)
    """

    def __init__(
        self,
        source,
        *,
        batch_size: int,
        seed: int = 0,
        shuffle: bool = True,
        num_epochs: int | None = 1,
        window: int | None = None,
        c: int | None = None,
        remainder: str | None = None,
        num_devices: int | None = None,
        sharding: jax.sharding.Sharding | None = None,
        image_dtype=jnp.float32,
        start_step: int = 0,
    ):
        self.source = source
        self.batch_size = _checks.positive_int("batch_size", batch_size)
        self.seed = int(seed)
        self.shuffle = bool(shuffle)
        self.num_epochs = None if num_epochs is None else _checks.positive_int("num_epochs", num_epochs)
        self.c = None if c is None else _checks.positive_int("c", c)
        self.sharding = sharding
        self.image_dtype = jnp.dtype(image_dtype)
        self.start_step = _checks.positive_int("start_step", start_step, minimum=0)
        if num_devices is None:
            num_devices = len(sharding.device_set) if sharding is not None else jax.local_device_count()
        self.num_devices = _checks.positive_int("num_devices", num_devices)
        if self.batch_size % self.num_devices:
            raise ValueError(
                f"batch_size ({self.batch_size}) must be divisible by the device count ({self.num_devices}) "
                "so every device gets an equal shard"
            )
        self.n_frames = getattr(source, "n_frames", None)
        if window is not None:
            window = _checks.positive_int("window", window)
            if self.n_frames is None:
                raise ValueError(
                    "window needs a sequence source (SeqCSIST frames with n_frames per trajectory)"
                )
            if window % 2 == 0 or window > self.n_frames:
                raise ValueError(
                    f"window must be odd and <= {self.n_frames} (it predicts its centre), got {window}"
                )
        self.window = window
        per_trajectory = 1 if window is None else self.n_frames - window + 1
        self.num_samples = len(source) if window is None else (len(source) // self.n_frames) * per_trajectory
        if self.num_samples == 0:
            raise ValueError("the source holds no samples")
        rest = self.num_samples % self.batch_size
        if remainder not in (None, "drop", "pad"):
            raise ValueError(f"remainder must be 'drop' or 'pad', got {remainder!r}")
        if rest and remainder is None:
            raise ValueError(
                f"{self.num_samples} samples are not a multiple of batch_size {self.batch_size} "
                f"({rest} left over per epoch): pass remainder='drop' or remainder='pad'"
            )
        if remainder == "drop" and self.num_samples < self.batch_size:
            raise ValueError(
                f"remainder='drop' with {self.num_samples} samples < batch_size {self.batch_size} "
                "leaves no batch"
            )
        self.remainder = remainder
        if rest == 0 or remainder == "drop":
            self.steps_per_epoch = self.num_samples // self.batch_size
        else:
            self.steps_per_epoch = -(-self.num_samples // self.batch_size)

    def __len__(self) -> int:
        """Batches this pipeline yields (after ``start_step``); infinite pipelines have no length."""
        if self.num_epochs is None:
            raise TypeError("a pipeline with num_epochs=None is infinite")
        return max(0, self.num_epochs * self.steps_per_epoch - self.start_step)

    def epoch_order(self, epoch: int) -> np.ndarray:
        """Sample indices of epoch ``epoch`` in visiting order."""
        if not self.shuffle:
            return np.arange(self.num_samples)
        return np.random.default_rng([self.seed, epoch]).permutation(self.num_samples)

    def batch_indices(self, step: int) -> tuple[np.ndarray, np.ndarray]:
        """Sample indices ``[B]`` and mask ``[B]`` of global step ``step``."""
        epoch, i = divmod(step, self.steps_per_epoch)
        order = self.epoch_order(epoch)
        idx = order[i * self.batch_size : (i + 1) * self.batch_size]
        mask = np.ones(self.batch_size, bool)
        if len(idx) < self.batch_size:
            mask[len(idx) :] = False
            idx = np.concatenate([idx, np.resize(order, self.batch_size - len(idx))])
        return idx, mask

    def read_samples(self, indices: np.ndarray) -> dict[str, np.ndarray]:
        """Host arrays of samples ``indices`` (frames, or windows with the centre frame's labels)."""
        indices = np.asarray(indices)
        if self.window is None:
            out = self.source.read(indices)
        else:
            trajectory, frames = window_frames(indices, self.n_frames, self.window)
            frames = trajectory[:, None] * self.n_frames + frames
            raw = self.source.read(frames.reshape(-1))
            centre = self.window // 2
            out = {
                name: value.reshape((len(indices), self.window) + value.shape[1:])[:, centre]
                for name, value in raw.items()
                if name != "image"
            }
            out["image"] = raw["image"].reshape((len(indices), self.window) + raw["image"].shape[1:])
            frame = raw["frame"].reshape(len(indices), self.window)
            owner = raw["trajectory"].reshape(len(indices), self.window)
            broken = np.any(owner != owner[:, :1], axis=1) | np.any(np.diff(frame, axis=1) != 1, axis=1)
            if np.any(broken):
                i = int(np.argmax(broken))
                raise ValueError(
                    f"window {int(indices[i])} spans frames {frame[i].tolist()} of trajectories "
                    f"{owner[i].tolist()}: the source is not in trajectory-major frame order"
                )
        out["index"] = indices.astype(np.int64)
        return out

    def __iter__(self) -> Iterator[dict[str, jax.Array]]:
        step = self.start_step
        end = None if self.num_epochs is None else self.num_epochs * self.steps_per_epoch
        while end is None or step < end:
            idx, mask = self.batch_indices(step)
            batch = self.read_samples(idx)
            batch["mask"] = mask
            # ids fit int32; without x64 JAX would otherwise narrow them with a warning
            batch = {k: v.astype(np.int32) if v.dtype == np.int64 else v for k, v in batch.items()}
            size = batch["image"].shape[-1]
            batch = jax.device_put(batch, self.sharding)
            yield _on_device(batch, self.c, size, self.image_dtype)
            step += 1
