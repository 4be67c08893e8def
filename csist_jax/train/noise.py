r"""Read noise in training, drawn on the device per frame: the sensor model of ``physics.sensor.observe``.

``config.data.noise_std = (lo, hi)`` (grey levels) and ``config.data.background = (lo, hi)``: every
training sample (a frame, or a window of frames) of every step gets its own read-noise level
``std ~ U(lo, hi)`` and background offset ``b ~ U(lo, hi)``, and is stored again as the sensor would,

    image = clip(round(stored + b + N(0, std^2)), 0, 255)              (per pixel; every frame of a window)

(:func:`csist_jax.physics.sensor.observe_batch`). The stored frames are the noise-free 8-bit frames of the
dataset, so a rounding already applied is applied once more: the added variance of that second rounding
is at most ``1/12``. ``(0, 0)`` for both (the default) leaves the frames untouched and compiles no draw.

The noise of step ``s`` (0-based) is drawn from ``fold_in(fold_in(PRNGKey(config.seed), NOISE_STREAM),
s)``: a pure function of the seed and the step, so a resumed run sees the noise an uninterrupted one
would, on any number of devices. Validation frames get one fixed draw of the same distribution on the
host (:func:`noisy_split`, seeded by ``config.data.seed``), so the best checkpoint is the best on noisy
frames.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from csist_jax import _checks
from csist_jax.physics import sensor

#: folded into the seed's key for the per-step noise (the batch order uses stream 1)
NOISE_STREAM = 2
#: folded into ``data.seed``'s key for the one draw on each validation split
SPLIT_STREAM = {"train": 3, "val": 4, "test": 5}


@dataclasses.dataclass(frozen=True)
class Noise:
    """The training noise of a config: read-noise std and background ranges (grey levels)."""

    std: tuple[float, float] = (0.0, 0.0)
    background: tuple[float, float] = (0.0, 0.0)

    def __post_init__(self):
        for name, (lo, hi) in (
            ("config.data.noise_std", self.std),
            ("config.data.background", self.background),
        ):
            _checks.finite(name, np.asarray([lo, hi], np.float64))
            if not 0.0 <= lo <= hi:
                raise ValueError(f"{name} must be a range (lo, hi) with 0 <= lo <= hi, got ({lo}, {hi})")

    @property
    def off(self) -> bool:
        return self.std == (0.0, 0.0) and self.background == (0.0, 0.0)

    def draw(self, key, images: jax.Array) -> jax.Array:
        """``images`` ``[n, ...]`` (float, 0..255) with each sample's own noise level and background."""
        if self.off:
            return images
        n = images.shape[0]
        std = jax.random.uniform(jax.random.fold_in(key, 0), (n,), jnp.float32, *self.std)
        background = jax.random.uniform(jax.random.fold_in(key, 1), (n,), jnp.float32, *self.background)
        return sensor.observe_batch(jax.random.fold_in(key, 2), images, std, background).astype(images.dtype)

    def at_step(self, seed, step, images: jax.Array) -> jax.Array:
        """Inside the jitted step: the noise of global step ``step`` (0-based) on ``images``."""
        if self.off:
            return images
        key = jax.random.fold_in(jax.random.fold_in(jax.random.PRNGKey(seed), NOISE_STREAM), step)
        return self.draw(key, images)


def _pair(value, name: str) -> tuple[float, float]:
    if value is None:
        return (0.0, 0.0)
    if np.ndim(value) == 0:
        return (float(value), float(value))
    value = tuple(float(v) for v in value)
    if len(value) != 2:
        raise ValueError(f"{name} must be a number or a range (lo, hi), got {value}")
    return value


def from_config(config) -> Noise:
    """The :class:`Noise` of ``config.data`` (fields ``noise_std`` and ``background``; absent: none)."""
    data = config.data
    return Noise(
        _pair(data.get("noise_std"), "config.data.noise_std"),
        _pair(data.get("background"), "config.data.background"),
    )


def noisy_split(arrays: dict, noise: Noise, seed: int, split: str) -> dict:
    """``arrays`` with one fixed draw of ``noise`` on its ``image`` (uint8 kept), for a held-out split."""
    if noise.off:
        return arrays
    key = jax.random.fold_in(jax.random.PRNGKey(int(seed)), SPLIT_STREAM[split])
    images = np.asarray(noise.draw(key, jnp.asarray(arrays["image"], jnp.float32)))
    return dict(arrays, image=images.astype(np.uint8))


__all__ = ["NOISE_STREAM", "Noise", "from_config", "noisy_split"]
