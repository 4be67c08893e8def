r"""Analytic sparse recovery: ISTA and FISTA for ``min_s 1/2 ||Phi s - z||^2 + lam ||s||_1``.

One iteration is the gradient step shared with every unfolding network (SPEC sec. 7),

    r = x - t Phi^T (Phi x - z),        x_next = prox_{t lam ||.||_1}(r),

with the step ``t = 1 / ||Phi||_2^2`` from the operator norm (power iteration), and the proximal map the
soft threshold (``nonneg=False``) or its non-negative version ``max(r - t lam, 0)`` (``nonneg=True``,
targets have non-negative brightness). FISTA adds Nesterov momentum (Beck and Teboulle, 2009).

The networks in ``csist_jax.models`` run the same ``gradient_step`` with the step and the proximal map
learned; here nothing is trained. Images are raw 0..255 values, maps come out on the same scale.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from csist_jax import _checks


def soft_threshold(x: Float[Array, "..."], theta) -> Float[Array, "..."]:
    """``sign(x) max(|x| - theta, 0)``: the proximal map of ``theta ||.||_1``."""
    return jnp.sign(x) * jnp.maximum(jnp.abs(x) - theta, 0.0)


def nonneg_soft_threshold(x: Float[Array, "..."], theta) -> Float[Array, "..."]:
    """``max(x - theta, 0)``: the proximal map of ``theta ||.||_1`` plus the constraint ``x >= 0``."""
    return jnp.maximum(x - theta, 0.0)


def gradient_step(x: Float[Array, "... hr hr"], z: Float[Array, "... m m"], operator, step) -> Array:
    """``r = x - step * Phi^T (Phi x - z)``: a gradient step on the data term ``1/2 ||Phi x - z||^2``."""
    return x - step * operator.adjoint(operator.forward(x) - z)


def default_step(operator) -> Array:
    """``1 / ||Phi||_2^2``: the largest step for which ISTA is guaranteed to converge."""
    return 1.0 / operator.norm_squared()


def _prepare(images, operator, lam, iterations, step):
    """Validate the arguments; return ``(images, operator, lam, step)`` for the jitted kernels."""
    _checks.trailing_shape("images", images, operator.out_shape, min_ndim=3)
    _checks.finite("images", images)
    _checks.positive_int("iterations", iterations)
    if _checks.is_concrete(lam) and float(lam) < 0:
        raise ValueError(f"lam must be >= 0, got {lam!r}")
    images = jnp.asarray(images, operator.dtype)
    step = default_step(operator) if step is None else step
    return images, operator, jnp.asarray(lam, images.dtype), step


@functools.partial(jax.jit, static_argnames=("iterations", "nonneg"))
def _ista(images, operator, lam, step, iterations, nonneg):
    prox = nonneg_soft_threshold if nonneg else soft_threshold

    def one(z):
        def body(x, _):
            return prox(gradient_step(x, z, operator, step), step * lam), None

        x, _ = jax.lax.scan(body, jnp.zeros(operator.in_shape, z.dtype), None, length=iterations)
        return x

    return jax.vmap(one)(images)


@functools.partial(jax.jit, static_argnames=("iterations", "nonneg"))
def _fista(images, operator, lam, step, iterations, nonneg):
    prox = nonneg_soft_threshold if nonneg else soft_threshold

    def one(z):
        def body(carry, _):
            x, y, t = carry
            x_next = prox(gradient_step(y, z, operator, step), step * lam)
            t_next = 0.5 * (1.0 + jnp.sqrt(1.0 + 4.0 * t * t))
            y_next = x_next + ((t - 1.0) / t_next) * (x_next - x)
            return (x_next, y_next, t_next), None

        x0 = jnp.zeros(operator.in_shape, z.dtype)
        (x, _, _), _ = jax.lax.scan(body, (x0, x0, jnp.ones((), z.dtype)), None, length=iterations)
        return x

    return jax.vmap(one)(images)


def ista(
    images: Float[Array, "n m m"],
    operator,
    lam: float,
    iterations: int = 100,
    *,
    step=None,
    nonneg: bool = True,
) -> Float[Array, "n hr hr"]:
    """``iterations`` ISTA steps from ``x = 0`` for every image (vmapped; each image independent).

    ``lam`` is the l1 weight on the 0..255 scale; the threshold applied per step is ``step * lam``.
    ``step`` defaults to ``1 / ||Phi||_2^2``.

    >>> from csist_jax import physics
    >>> op = physics.sampling_operator(3)
    >>> maps = ista(jnp.zeros((2, 11, 11)), op, lam=10.0, iterations=20)  # [2, 33, 33]
    """
    return _ista(*_prepare(images, operator, lam, iterations, step), iterations, bool(nonneg))


def fista(
    images: Float[Array, "n m m"],
    operator,
    lam: float,
    iterations: int = 100,
    *,
    step=None,
    nonneg: bool = True,
) -> Float[Array, "n hr hr"]:
    """``iterations`` FISTA steps (ISTA with Nesterov momentum); same arguments as :func:`ista`."""
    return _fista(*_prepare(images, operator, lam, iterations, step), iterations, bool(nonneg))


def objective(
    maps: Float[Array, "n hr hr"], images: Float[Array, "n m m"], operator, lam
) -> Float[Array, " n"]:
    """``1/2 ||Phi s - z||^2 + lam ||s||_1`` per image (for convergence checks)."""
    residual = operator.forward(maps) - images
    return 0.5 * jnp.sum(residual**2, axis=(-2, -1)) + lam * jnp.sum(jnp.abs(maps), axis=(-2, -1))
