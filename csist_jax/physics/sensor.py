"""The sensor: optional noise, then 8-bit storage (round, saturate at 255) (SPEC sec. 3).

Noise is drawn from explicit PRNG keys. Neither released dataset carries noise; the robustness
studies add it.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, UInt8

from csist_jax import _checks

SATURATION = 255.0


def _check_uint8_saturation(saturation) -> None:
    _checks.in_range(
        "saturation", saturation, 0.0, SATURATION, low_open=True, note="8-bit storage holds 0..255"
    )


def quantize(image: Float[Array, "..."], saturation: float = SATURATION) -> UInt8[Array, "..."]:
    """Store as the sensor would: ``clip(round(image), 0, saturation)`` as ``uint8``.

    ``saturation`` must lie in ``(0, 255]`` (``uint8`` holds no more; :func:`quantize_float` keeps a
    higher level). A concrete ``image`` must be finite."""
    _checks.finite("image", image)
    _check_uint8_saturation(saturation)
    return jnp.clip(jnp.round(image), 0.0, saturation).astype(jnp.uint8)


def quantize_float(image: Float[Array, "..."], saturation: float = SATURATION) -> Float[Array, "..."]:
    """``quantize`` kept in float (for models of the stored image inside a fit); any finite
    ``saturation > 0``."""
    _checks.finite("image", image)
    _checks.positive_scalar("saturation", saturation)
    return jnp.clip(jnp.round(image), 0.0, saturation)


def gaussian_noise(key, image: Float[Array, "..."], std) -> Float[Array, "..."]:
    """``image + N(0, std^2)`` per pixel (additive read noise); a concrete ``std`` must be finite, >= 0."""
    _checks.nonnegative("std", std)
    return image + std * jax.random.normal(key, jnp.shape(image), jnp.result_type(image, jnp.float32))


def poisson_noise(key, image: Float[Array, "..."], gain: float = 1.0) -> Float[Array, "..."]:
    """Shot noise: ``gain * Poisson(image / gain)`` (``gain`` = grey levels per photo-electron)."""
    _checks.positive_scalar("gain", gain)
    _checks.finite("image", image)
    lam = jnp.maximum(image, 0.0) / gain
    return gain * jax.random.poisson(key, lam, jnp.shape(image)).astype(jnp.result_type(image, jnp.float32))


def observe(
    key,
    clean: Float[Array, "..."],
    *,
    noise_std: float = 0.0,
    background: float = 0.0,
    poisson_gain: float | None = None,
    saturation: float = SATURATION,
) -> UInt8[Array, "..."]:
    """The stored image of a clean rendering: optional background, Poisson then Gaussian noise, then
    ``quantize``.

    ``clip(round(gain * Poisson((clean + background) / gain) + N(0, noise_std^2)), 0, saturation)`` per
    pixel, same shape as ``clean`` (one image or a stack of frames). The read noise is drawn from
    ``fold_in(key, 1)`` and the shot noise from ``fold_in(key, 2)`` (the generators pass the key each
    image was drawn from). ``noise_std`` and ``background`` may be traced (inside ``jit``); a concrete 0
    skips the draw. A background offset keeps the clipping at 0 from half-rectifying the read noise.
    Concrete arguments are checked, with an error naming the argument: ``clean`` and ``background``
    finite, ``noise_std >= 0``, ``poisson_gain > 0``, ``saturation`` in ``(0, 255]`` (8-bit storage).
    """
    _checks.finite("clean", clean)
    _checks.nonnegative("noise_std", noise_std)
    _checks.finite_scalar("background", background)
    if poisson_gain is not None:
        _checks.positive_scalar("poisson_gain", poisson_gain)
    _check_uint8_saturation(saturation)
    image = clean
    if not (_checks.is_concrete(background) and float(background) == 0.0):
        image = image + background
    if poisson_gain is not None:
        image = poisson_noise(jax.random.fold_in(key, 2), image, poisson_gain)
    if not (_checks.is_concrete(noise_std) and float(noise_std) == 0.0):
        image = gaussian_noise(jax.random.fold_in(key, 1), image, noise_std)
    return quantize(image, saturation)


def observe_batch(
    key,
    frames: Float[Array, "n ..."],
    noise_std: Float[Array, " n"],
    background: Float[Array, " n"] | float = 0.0,
    *,
    saturation: float = SATURATION,
) -> Float[Array, "n ..."]:
    """:func:`observe` of every sample of ``frames`` (first axis; a sample may be one frame or a window
    of frames) with its own read-noise ``noise_std[i]`` and ``background[i]``, from the key
    ``split(key, n)[i]``; returned as float32 (the stored 0..255 values). Jittable and batched (one
    vmapped program): the on-device noise of training (``csist_jax.train.noise``)."""
    frames = jnp.asarray(frames)
    n = frames.shape[0]
    std = jnp.broadcast_to(jnp.asarray(noise_std, jnp.float32), (n,))
    offset = jnp.broadcast_to(jnp.asarray(background, jnp.float32), (n,))
    keys = jax.random.split(key, n)

    def one(k, f, s, b):
        return observe(k, f.astype(jnp.float32), noise_std=s, background=b, saturation=saturation)

    return jax.vmap(one)(keys, frames, std, offset).astype(jnp.float32)
