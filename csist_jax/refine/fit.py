r"""Joint least-squares fit of point sources to one stored image, through the sensor model.

The model of an image with sources ``theta[k] = (x_k, y_k, b_k)`` (``active[k]`` in {0, 1}) is the
rendering of ``csist_jax.physics.render``,

    m[r, q] = sum_k active_k b_k g(r - x_k) g(q - y_k),

with ``g`` the pixel-integrated Gaussian of ``csist_jax.physics.pixel_integrated_gaussian``. The stored
image ``z`` is ``clip(round(m + noise), 0, 255)``; a pixel stored at the saturation level only tells that
the model is at least ``saturation - 1/2``, so the residual is censored there:

    res[p] = m[p] - z[p]                          if z[p] < saturation,
    res[p] = min(m[p] - (saturation - 1/2), 0)    otherwise,

and ``fit_one`` minimises ``cost = sum_p res[p]^2`` by the project's one Levenberg-Marquardt solver
(``csist_jax.refine.lm``) with a fixed number of iterations (static shapes: it jits, vmaps and
differentiates). Quantisation leaves a residual variance of ``1/12`` per pixel, plus
``noise_std^2`` with read noise; model orders are compared in units of that variance.

Every Jacobian column is separable, ``J[(k, x)] = b_k g'_x(k) (x) g_y(k)`` and so on, so the normal matrix
is ``J^T J = (U U^T) * (V V^T)`` (element-wise) for the stacked 1-D factors ``U``, ``V``: ``O(K^2 size)``
instead of ``O(K^2 size^2)``. Saturated pixels whose censored residual is inactive carry no weight; their
rows are subtracted again inside a small window around the brightest pixel (in CSIST-100K at most one
pixel saturates).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from csist_jax import _checks
from csist_jax.physics import psf, sensor
from csist_jax.refine import lm

QUANTIZATION_VARIANCE = 1.0 / 12.0


def profiles(coord, sigma, size: int):
    """``g(r - coord_k)`` and its derivative with respect to ``coord_k``, both ``[K, size]``."""
    pixels = jnp.arange(size, dtype=coord.dtype)
    d = pixels[None, :] - coord[:, None]
    return jax.jvp(lambda u: psf.pixel_integrated_gaussian(u, sigma), (d,), (-jnp.ones_like(d),))


def _evaluate(theta, active, z, sigma, saturation):
    """Profiles, model and censored residual of one image at ``theta``."""
    size = z.shape[-1]
    gx, dgx = profiles(theta[:, 0], sigma, size)
    gy, dgy = profiles(theta[:, 1], sigma, size)
    b = theta[:, 2] * active
    m = jnp.einsum("k,kr,kq->rq", b, gx, gy)
    res = censored_residual(m, z, saturation)
    return (gx, dgx, gy, dgy), m, res


def censored_residual(m, z, saturation):
    """``m - z`` where ``z`` is below ``saturation``, ``min(m - (saturation - 1/2), 0)`` where it is at it."""
    sat = z >= saturation
    return jnp.where(sat, jnp.minimum(m - (saturation - 0.5), 0.0), m - z)


def _factors(theta, active, prof):
    """Row factors ``U``, ``V`` ``[3K, size]``: Jacobian column ``(k, p)`` is ``outer(U[3k+p], V[3k+p])``."""
    gx, dgx, gy, dgy = prof
    b = (theta[:, 2] * active)[:, None]
    a = active[:, None]
    U = jnp.stack([b * dgx, b * gx, a * gx], axis=1)
    V = jnp.stack([gy, dgy, gy], axis=1)
    return U.reshape(-1, gx.shape[-1]), V.reshape(-1, gy.shape[-1])


def normal_equations(theta, active, z, prof, m, res, saturation, censor_window: int):
    """``(J^T W J, J^T W res)`` with ``W`` zero on saturated pixels whose censored residual is inactive.

    The zero weights are applied inside the ``censor_window`` x ``censor_window`` block around the
    brightest pixel (saturation can only happen there for compact blobs); a saturated pixel outside it
    keeps weight 1 in ``J^T W J`` (a slightly stiffer Gauss-Newton matrix, the gradient stays exact).
    """
    size = z.shape[-1]
    U, V = _factors(theta, active, prof)
    H = (U @ U.T) * (V @ V.T)
    grad = jnp.sum(U * (V @ res.T), axis=1)
    if censor_window:
        w = censor_window
        peak = jnp.argmax(z)
        r0 = jnp.clip(peak // size - w // 2, 0, size - w)
        q0 = jnp.clip(peak % size - w // 2, 0, size - w)
        # one-hot selections instead of gathers: gathers are slow under vmap on XLA:CPU
        pixels = jnp.arange(size)[:, None]
        Er = (pixels == r0 + jnp.arange(w)[None, :]).astype(z.dtype)  # [size, w]
        Eq = (pixels == q0 + jnp.arange(w)[None, :]).astype(z.dtype)
        zw, mw = Er.T @ z @ Eq, Er.T @ m @ Eq
        off = ((zw >= saturation) & (mw >= saturation - 0.5)).reshape(-1)
        Uw, Vw = U @ Er, V @ Eq
        Js = (Uw[:, :, None] * Vw[:, None, :]).reshape(U.shape[0], -1) * off[None, :]
        H = H - Js @ Js.T
    return H, grad


def source_bounds(size: int, dtype, min_brightness: float = 1.0) -> tuple[Array, Array]:
    """The box of one source's ``(x, y, brightness)``: inside the frame ``[-1/2, size - 1/2]``, brightness
    ``>= min_brightness``; ``(lower [3], upper [3])``."""
    lower = jnp.array([-0.5, -0.5, min_brightness], dtype)
    upper = jnp.array([size - 0.5, size - 0.5, jnp.inf], dtype)
    return lower, upper


def fit_one(
    theta: Float[Array, "k 3"],
    active: Float[Array, " k"],
    image: Float[Array, "size size"],
    *,
    sigma=psf.DEFAULT_SIGMA,
    saturation=sensor.SATURATION,
    iterations: int = 20,
    censor_window: int = 3,
    damping: float = 1e-3,
    min_brightness: float = 1.0,
) -> tuple[Float[Array, "k 3"], Float[Array, ""], Float[Array, "p p"]]:
    """Fit ``K`` point sources to one image from the start ``theta``: the per-image fitting core.

    ``iterations`` steps of ``csist_jax.refine.lm.levenberg_marquardt`` on the censored least-squares
    cost (module docstring), with the separable normal equations. Brightness stays ``>= min_brightness``
    and positions inside the frame ``[-1/2, size - 1/2]``; sources with ``active[k] = 0`` do not move and
    do not render. Pure, jittable, vmappable and differentiable (in ``theta``, ``image`` and ``sigma``);
    ``iterations`` and ``censor_window`` are static.

    Args:
      theta: ``[K, 3]`` start ``(x, y, brightness)`` per source slot.
      active: ``[K]`` 1 for a source, 0 for an unused slot.
      image: ``[size, size]`` stored image (0..255 scale).
      sigma: PSF width (px). saturation: the stored saturation level.
      damping: the initial Marquardt ``lam``.

    Returns:
      ``(theta [K, 3], cost, H [3K, 3K])``: the fit, its cost ``sum res^2`` and the Gauss-Newton matrix
      ``J^T W J`` at the fit (rows ``3k + (x, y, b)``).

    >>> from csist_jax.physics import render
    >>> truth = jnp.array([[5.0, 5.2, 230.0]])
    >>> theta, cost, H = fit_one(truth + jnp.array([0.2, -0.1, 20.0]), jnp.ones(1), render(truth))
    """
    # concrete options only (inside jit they are traced or static and pass)
    _checks.positive_scalar("sigma", sigma)
    _checks.positive_scalar("saturation", saturation)
    _checks.positive_int("iterations", iterations, minimum=0)
    _checks.positive_int("censor_window", censor_window, minimum=0)
    _checks.nonnegative("damping", damping)
    _checks.finite_scalar("min_brightness", min_brightness)
    lo, hi = source_bounds(image.shape[-1], theta.dtype, min_brightness)

    def evaluate(th):
        prof, m, res = _evaluate(th, active, image, sigma, saturation)
        return jnp.sum(res * res), (prof, m, res)

    def normal(th, aux):
        return normal_equations(th, active, image, *aux, saturation, censor_window)

    theta, cost, aux = lm.levenberg_marquardt(
        evaluate,
        normal,
        theta,
        iterations=iterations,
        damping=damping,
        free=jnp.repeat(active, 3) > 0,
        lower=lo,
        upper=hi,
    )
    H, _ = normal(theta, aux)
    return theta, cost, H


# the name the experiments and benchmarks were written against
lm_fit = fit_one
