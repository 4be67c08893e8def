"""The training split on the device: put there once, shuffled there, batches gathered inside the step.

The whole split is small (CSIST-100K: 80,000 frames of uint8 ``[11, 11]`` and float32 ``[5, 3]``
targets, 12 MB), so it lives on every device, *replicated*: a shuffled batch draws rows from anywhere in
the split, and a replicated copy lets each device gather its own rows of the batch with no
communication. Per epoch one jitted permutation (``order``) is drawn on the device; the step gathers its
batch ``order[i B : (i + 1) B]`` (``i`` the step within the epoch, read from the training state's step
counter) and shards the indices over the ``("data",)`` mesh, so each device gathers only its shard.

SeqCSIST windows (``window=L``): the split is held as trajectories ``image`` ``[n, T, H, W]``; a sample
is one window of ``L`` consecutive frames, cut inside the step by the dataset's one windowing rule
(:func:`csist_jax.data.seqcsist.window_frames`), so the ``n (T - L + 1)`` windows are never stored.

The order of epoch ``e`` is ``jax.random.permutation(fold_in(fold_in(PRNGKey(seed), 1), e), n)``: a
pure function of ``(seed, epoch)``, the same on any device count, so a resumed run sees the batches an
uninterrupted one would. The last ``n mod B`` frames of each epoch's order are left out.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from csist_jax.data.seqcsist import window_frames

#: folded into the seed's key so the batch order does not share a stream with parameter init
ORDER_STREAM = 1


def _replicate(array: np.ndarray, sharding: NamedSharding) -> jax.Array:
    """``array`` on every device of ``sharding`` (every process passes the same host array)."""
    array = np.ascontiguousarray(array)
    return jax.make_array_from_callback(array.shape, sharding, lambda index: array[index])


@functools.lru_cache(maxsize=16)
def _permutation(n: int, sharding: NamedSharding):
    """The jitted order of ``n`` frames, placed with ``sharding`` (one compilation per process)."""

    def order(seed, epoch):
        key = jax.random.fold_in(jax.random.fold_in(jax.random.PRNGKey(seed), ORDER_STREAM), epoch)
        return jax.random.permutation(key, n).astype(jnp.int32)

    return jax.jit(order, out_shardings=sharding)


class DeviceDataset:
    """Frames ``image`` uint8 ``[n, H, W]`` and ``targets`` float32 ``[n, K, 3]`` on every mesh device;
    with ``window=L``, trajectories ``image`` ``[n, T, H, W]`` and ``targets`` ``[n, T, K, 3]`` whose
    samples are their windows of ``L`` frames.

    ``arrays`` is the device pytree to pass to the jitted step; :meth:`batch` runs inside it.
    ``num_frames`` counts samples (frames, or windows).
    """

    def __init__(self, arrays: dict, *, batch_size: int, seed: int, mesh: Mesh, window: int = 0):
        images = np.asarray(arrays["image"])
        targets = np.asarray(arrays["targets"], np.float32)
        if images.dtype != np.uint8:
            raise TypeError(f"training images must be uint8 (the stored frames), got {images.dtype}")
        if len(targets) != len(images):
            raise ValueError(f"{len(images)} training images but {len(targets)} target rows")
        self.window = int(window)
        if self.window:
            if images.ndim != 4 or targets.ndim != 4 or not 3 <= self.window <= images.shape[1]:
                raise ValueError(
                    f"window={self.window} needs trajectories image [n, T, H, W] with T >= window and "
                    f"targets [n, T, K, 3], got {images.shape} and {targets.shape}"
                )
            self.n_frames = images.shape[1]
            self.num_frames = len(images) * (self.n_frames - self.window + 1)
        else:
            self.n_frames = None
            self.num_frames = len(images)
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.steps_per_epoch = self.num_frames // self.batch_size
        if self.steps_per_epoch == 0:
            unit = "windows" if self.window else "frames"
            raise ValueError(
                f"config.optim.batch_size ({self.batch_size}) exceeds the {self.num_frames} training {unit} "
                "(config.data.train_size): no batch fits in an epoch"
            )
        self.replicated = NamedSharding(mesh, P())
        self.batch_sharding = NamedSharding(mesh, P("data"))
        self.arrays = {
            "image": _replicate(images, self.replicated),
            "targets": _replicate(targets, self.replicated),
        }
        self._order = _permutation(self.num_frames, self.replicated)

    def epoch_order(self, epoch: int) -> jax.Array:
        """The visiting order ``[n]`` (int32, replicated) of epoch ``epoch`` (0-based), drawn on device."""
        return self._order(np.uint32(self.seed), np.uint32(epoch))

    def host_batch_indices(self, step: int) -> np.ndarray:
        """The frame indices of global step ``step`` (0-based), computed on the device, read back (tests)."""
        order = self.epoch_order(step // self.steps_per_epoch)
        i = step % self.steps_per_epoch
        return np.asarray(order[i * self.batch_size : (i + 1) * self.batch_size])

    def batch(self, arrays: dict, order: jax.Array, step: jax.Array) -> dict:
        """Inside the jitted step: the batch of global step ``step`` (0-based), sharded over the mesh's
        ``"data"`` axis: ``image`` float32 ``[B, H, W]`` (windows: ``[B, L, H, W]``), raw 0..255,
        ``targets`` ``[B, K, 3]`` (of the centre frames) and, for windows, ``frame`` int32 ``[B]`` (the
        centre frames' indices in their trajectories)."""
        position = (step % self.steps_per_epoch) * self.batch_size
        index = jax.lax.dynamic_slice_in_dim(order, position, self.batch_size)
        index = jax.lax.with_sharding_constraint(index, self.batch_sharding)
        if not self.window:
            images = arrays["image"].at[index].get(mode="promise_in_bounds")
            targets = arrays["targets"].at[index].get(mode="promise_in_bounds")
            return {"image": images.astype(jnp.float32), "targets": targets}
        trajectory, frames = window_frames(index, self.n_frames, self.window)
        centre = frames[:, self.window // 2]
        images = arrays["image"].at[trajectory[:, None], frames].get(mode="promise_in_bounds")
        targets = arrays["targets"].at[trajectory, centre].get(mode="promise_in_bounds")
        return {"image": images.astype(jnp.float32), "targets": targets, "frame": centre}
