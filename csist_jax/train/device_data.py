"""The training split on the device: put there once, shuffled there, batches gathered inside the step.

The whole split is small (CSIST-100K: 80,000 frames of uint8 ``[11, 11]`` and float32 ``[5, 3]``
targets, 12 MB), so it lives on every device, *replicated*: a shuffled batch draws rows from anywhere in
the split, and a replicated copy lets each device gather its own rows of the batch with no
communication. Per epoch one jitted permutation (``order``) is drawn on the device; the step gathers its
batch ``order[i B : (i + 1) B]`` (``i`` the step within the epoch, read from the training state's step
counter) and shards the indices over the ``("data",)`` mesh, so each device gathers only its shard.

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
    """Frames ``image`` uint8 ``[n, H, W]`` and ``targets`` float32 ``[n, K, 3]`` on every mesh device.

    ``arrays`` is the device pytree to pass to the jitted step; :meth:`batch` runs inside it.
    """

    def __init__(self, arrays: dict, *, batch_size: int, seed: int, mesh: Mesh):
        images = np.asarray(arrays["image"])
        targets = np.asarray(arrays["targets"], np.float32)
        if images.dtype != np.uint8:
            raise TypeError(f"training images must be uint8 (the stored frames), got {images.dtype}")
        if len(targets) != len(images):
            raise ValueError(f"{len(images)} training images but {len(targets)} target rows")
        self.num_frames = len(images)
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.steps_per_epoch = self.num_frames // self.batch_size
        if self.steps_per_epoch == 0:
            raise ValueError(
                f"config.batch_size ({self.batch_size}) exceeds the {self.num_frames} training frames "
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

    def batch(self, arrays: dict, order: jax.Array, step: jax.Array):
        """Inside the jitted step: ``(images float32 [B, H, W] raw 0..255, targets [B, K, 3])`` of global
        step ``step`` (0-based), sharded over the mesh's ``"data"`` axis."""
        position = (step % self.steps_per_epoch) * self.batch_size
        index = jax.lax.dynamic_slice_in_dim(order, position, self.batch_size)
        index = jax.lax.with_sharding_constraint(index, self.batch_sharding)
        images = arrays["image"].at[index].get(mode="promise_in_bounds").astype(jnp.float32)
        targets = arrays["targets"].at[index].get(mode="promise_in_bounds")
        return images, targets
