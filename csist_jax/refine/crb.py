r"""The Cramer-Rao bound on localisation: how well any unbiased estimator can place the targets.

For targets ``theta = (x_k, y_k, b_k)`` and stored pixels ``z = m(theta) + e`` with independent noise of
variance ``v`` per pixel, the Fisher information is ``I = J^T W J / v`` with ``J = dm/dtheta`` (autodiff
through ``csist_jax.physics.render``) and ``W`` dropping saturated pixels (a clipped pixel says almost
nothing about the parameters). Every unbiased estimator has ``Cov >= I^{-1}``; the bound on a target's
position error is ``sqrt([I^{-1}]_{xx} + [I^{-1}]_{yy})``.

Rounding to 8 bits is modelled as additive uniform noise (variance ``1/12``) on top of any Gaussian read
noise (``noise_std^2``). That is exact for the variance, but the quantisation error is neither Gaussian
nor independent of the signal, so at zero read noise the bound is a guide, not a theorem.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int

from csist_jax import _checks
from csist_jax.physics import psf, sensor
from csist_jax.refine import fit


def fisher_information(targets, *, size, sigma, variance, saturation):
    """``J^T W J / v`` of one image's targets ``[K, 3]`` (padding rows, brightness 0, get unit entries).

    Concrete options are checked: ``size`` a positive int, ``sigma``, ``variance``, ``saturation`` finite
    and > 0."""
    _checks.positive_int("size", size)
    _checks.positive_scalar("sigma", sigma)
    _checks.positive_scalar("variance", variance)
    _checks.positive_scalar("saturation", saturation)
    K = targets.shape[0]
    real = targets[:, 2] > 0

    def model(flat):
        return psf.render(flat.reshape(K, 3), size, sigma).reshape(-1)

    flat = targets.reshape(-1)
    J = jax.jacfwd(model)(flat)
    w = (model(flat) < saturation - 0.5).astype(J.dtype)
    info = (J * w[:, None]).T @ J / variance
    keep = jnp.repeat(real, 3)
    return jnp.where(keep[:, None] & keep[None, :], info, jnp.eye(3 * K, dtype=info.dtype))


@functools.partial(jax.jit, static_argnames=("size",))
def _bound(targets, sigma, variance, saturation, size):
    def one(t):
        info = fisher_information(t, size=size, sigma=sigma, variance=variance, saturation=saturation)
        cov = jnp.diagonal(jnp.linalg.inv(info)).reshape(-1, 3)
        var = cov[:, 0] + cov[:, 1]
        # a singular information matrix (positions not identifiable) bounds nothing: infinite error
        bound = jnp.where(jnp.isfinite(var) & (var >= 0), jnp.sqrt(var), jnp.inf)
        return jnp.where(t[:, 2] > 0, bound, 0.0)

    return jax.vmap(one)(targets)


def position_crb(
    targets: Float[Array, "n k 3"],
    *,
    sigma: float = psf.DEFAULT_SIGMA,
    noise_std: float = 0.0,
    quantized: bool = True,
    size: int = 11,
    saturation: float = sensor.SATURATION,
) -> Float[Array, "n k"]:
    """Cramer-Rao bound (px) on each target's position error ``sqrt(E|p - p_true|^2)``.

    Args:
      targets: ``[n, K, 3]`` true ``(x, y, brightness)``; padding rows (brightness 0) get 0.
      noise_std: Gaussian read-noise standard deviation (grey levels).
      quantized: add the rounding variance ``1/12`` (8-bit storage).
      saturation: pixels whose noise-free value reaches ``saturation - 1/2`` carry no information.
    """
    _checks.trailing_shape("targets", targets, (None, 3), min_ndim=3)
    _checks.finite("targets", targets)
    _checks.positive_scalar("sigma", sigma)
    size = _checks.positive_int("size", size)
    _checks.nonnegative("noise_std", noise_std)
    _checks.positive_scalar("saturation", saturation)
    variance = noise_std**2 + (fit.QUANTIZATION_VARIANCE if quantized else 0.0)
    if variance <= 0:
        raise ValueError("the bound needs noise: pass noise_std > 0 or quantized=True")
    if np.shape(targets)[0] == 0:  # an empty batch: an empty bound (nothing to compile)
        return jnp.zeros(tuple(np.shape(targets)[:2]), jnp.float32)
    return _bound(jnp.asarray(targets, jnp.float32), sigma, variance, saturation, size)


def rmse_bound(bound: Float[Array, "n k"], count: Int[Array, " n"], below: float | None = None) -> float:
    """``sqrt(mean bound^2)`` over the real targets: the bound on a dataset's localisation RMSE.

    With ``below``, only targets whose bound is under ``below`` px count (the resolvable ones; compare
    with an RMSE over detections matched within that distance; a finite number > 0). 0 without targets.
    """
    if below is not None:
        _checks.positive_scalar("below", below)
    bound = jnp.asarray(bound)
    real = jnp.arange(bound.shape[1])[None, :] < jnp.asarray(count)[:, None]
    if below is not None:
        real = real & (bound < below)
    return float(jnp.sqrt(jnp.sum(jnp.where(real, bound**2, 0.0)) / jnp.maximum(jnp.sum(real), 1)))
