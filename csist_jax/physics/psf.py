"""The point-spread function: an isotropic Gaussian integrated exactly over each pixel (SPEC sec. 3).

A unit-flux target at ``(x, y)`` puts ``g(r - x) * g(q - y)`` into pixel ``(r, q)`` with

    g(d) = 1/2 [erf((d + 1/2) / (sqrt(2) sigma)) - erf((d - 1/2) / (sqrt(2) sigma))],

the Gaussian's mass over ``[d - 1/2, d + 1/2]``. The integral is separable, so every image and every
column of the sampling operator is an outer product of two such 1-D profiles.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from csist_jax import _checks
from csist_jax.physics import grid

DEFAULT_SIGMA = 0.5


def pixel_integrated_gaussian(d: Float[Array, "..."], sigma=DEFAULT_SIGMA) -> Float[Array, "..."]:
    """``g(d)``: mass of a unit 1-D Gaussian of width ``sigma`` over the pixel ``[d - 1/2, d + 1/2]``.

    Written as a difference of ``erfc`` on the far side of the peak so the tails keep full relative
    precision (a plain ``erf`` difference cancels to zero beyond ~6 sigma).
    """
    _checks.positive_scalar("sigma", sigma)
    _checks.finite("d", d)
    d = jnp.asarray(d)
    s = jnp.sqrt(2.0) * sigma
    a = jnp.abs(d)
    # mass over [a - 1/2, a + 1/2] of a symmetric density, a >= 0
    return 0.5 * (jax.scipy.special.erfc((a - 0.5) / s) - jax.scipy.special.erfc((a + 0.5) / s))


def separable_factor(c: int = 3, size: int = 11, sigma=DEFAULT_SIGMA) -> Float[Array, "size hr"]:
    """``G[r, I] = g(r - centre_I)``: the 1-D factor of the sampling operator, ``Phi = kron(G, G)``."""
    _checks.positive_int("c", c)
    _checks.positive_int("size", size)
    _checks.positive_scalar("sigma", sigma)
    centres = grid.hr_cell_centres(c, size)
    pixels = jnp.arange(size, dtype=centres.dtype)
    return pixel_integrated_gaussian(pixels[:, None] - centres[None, :], sigma)


def render(
    targets: Float[Array, "... k 3"], size: int = 11, sigma=DEFAULT_SIGMA
) -> Float[Array, "... size size"]:
    """The noise-free image of point targets: ``z[r, q] = sum_k b_k g(r - x_k) g(q - y_k)``.

    ``targets[..., k, :] = (x, y, brightness)`` in LR pixel units (``x`` = row); padding rows have
    brightness 0. Differentiable in positions, brightness and ``sigma``; any leading batch shape.

    >>> render(jnp.array([[3.0, 7.0, 1.0]]))[3, 7]  # a centred target keeps ~46.6 % of its flux
    """
    _checks.positive_int("size", size)
    _checks.positive_scalar("sigma", sigma)
    _checks.trailing_shape("targets", targets, (None, 3))
    _checks.finite("targets", targets)
    targets = jnp.asarray(targets)
    if not jnp.issubdtype(targets.dtype, jnp.floating):
        targets = targets.astype(jnp.float32)
    pixels = jnp.arange(size, dtype=targets.dtype)
    gx = pixel_integrated_gaussian(pixels - targets[..., 0:1], sigma)  # [..., k, size]
    gy = pixel_integrated_gaussian(pixels - targets[..., 1:2], sigma)
    return jnp.einsum("...k,...kr,...kq->...rq", targets[..., 2], gx, gy)
