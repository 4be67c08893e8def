r"""Calibration by gradient: the PSF width ``sigma`` (and a constant background) from the images alone.

Every image ``i`` has its own sources ``theta_i`` (found by ``fit_sources`` at the current ``sigma``); the
global parameters ``g = (sigma, background)`` are shared. The joint least-squares problem

    min_{g, theta_1..theta_n}  sum_i || res(render(theta_i, sigma) + background, z_i) ||^2

(``res`` the censored residual of ``csist_jax.refine.fit``) is solved by Gauss-Newton on all parameters
at once, eliminating each image's block by its Schur complement (the bundle-adjustment structure):

    S = sum_i (C_i - B_i^T A_i^{-1} B_i),    s = sum_i (J_g,i^T r_i - B_i^T A_i^{-1} J_theta,i^T r_i),
    step_g = -S^{-1} s,    step_theta_i = -A_i^{-1} (J_theta,i^T r_i + B_i step_g),

with ``A = J_theta^T J_theta``, ``B = J_theta^T J_g``, ``C = J_g^T J_g`` and every Jacobian by ``jax.jacfwd``
through ``csist_jax.physics.render`` (differentiable in ``sigma``). ``S / v`` is the Fisher information of
``g`` with the sources profiled out, so ``sqrt(diag(v S^{-1}))`` is its standard error, ``v`` the residual
variance estimated from the fit. The source lists are re-detected at the new ``sigma`` for ``rounds``
rounds (a wrong ``sigma`` can change the model order).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from csist_jax import _checks
from csist_jax.physics import psf, sensor
from csist_jax.refine import fit
from csist_jax.refine.localize import fit_sources


def _residual(theta, active, g, z, saturation):
    """Censored residual of one image with global parameters ``g = (sigma, background)``."""
    targets = theta * jnp.stack([jnp.ones_like(active), jnp.ones_like(active), active], -1)
    m = psf.render(targets, z.shape[-1], g[0]) + g[1]
    return fit.censored_residual(m, z, saturation).reshape(-1)


def _blocks(theta, active, g, z, saturation, free_g):
    """One image's Gauss-Newton blocks ``(A, B, C, J_theta^T r, J_g^T r, cost)``."""
    r = _residual(theta, active, g, z, saturation)
    Jt = jax.jacfwd(_residual)(theta, active, g, z, saturation).reshape(r.shape[0], -1)
    Jg = jax.jacfwd(_residual, argnums=2)(theta, active, g, z, saturation) * free_g[None, :]
    keep = jnp.repeat(active, 3) > 0
    A = Jt.T @ Jt
    A = jnp.where(keep[:, None] & keep[None, :], A, jnp.eye(A.shape[0], dtype=A.dtype))
    return A, Jt.T @ Jg, Jg.T @ Jg, jnp.where(keep, Jt.T @ r, 0.0), Jg.T @ r, jnp.sum(r * r)


@functools.partial(jax.jit, static_argnames=("iterations",))
def _gauss_newton(theta, active, g, images, saturation, free_g, damping, iterations):
    blocks = jax.vmap(_blocks, in_axes=(0, 0, None, 0, None, None))

    def schur(theta, g, lam):
        A, B, C, gt, gg, cost = blocks(theta, active, g, images, saturation, free_g)
        A = A + lam * jnp.eye(A.shape[-1], dtype=A.dtype) * (1.0 + jnp.diagonal(A, axis1=1, axis2=2))[:, None]
        Ainv_B = jnp.linalg.solve(A, B)
        Ainv_gt = jnp.linalg.solve(A, gt[..., None])[..., 0]
        S = jnp.sum(C - jnp.einsum("nij,nik->njk", B, Ainv_B), axis=0)
        s = jnp.sum(gg - jnp.einsum("nij,ni->nj", B, Ainv_gt), axis=0)
        S = S + jnp.diag(jnp.where(free_g > 0, 0.0, 1.0))  # a fixed global parameter does not move
        return S, s, Ainv_B, Ainv_gt, jnp.sum(cost)

    def total_cost(theta, g):
        r = jax.vmap(_residual, in_axes=(0, 0, None, 0, None))(theta, active, g, images, saturation)
        return jnp.sum(r * r)

    def body(_, carry):
        theta, g, lam, cost = carry
        S, s, Ainv_B, Ainv_gt, _ = schur(theta, g, lam)
        step_g = -jnp.linalg.solve(S + lam * jnp.diag(jnp.diagonal(S)), s) * free_g
        step_t = -(Ainv_gt + jnp.einsum("nij,j->ni", Ainv_B, step_g))
        new_theta = theta + step_t.reshape(theta.shape) * jnp.repeat(active, 3, axis=-1).reshape(theta.shape)
        new_g = g + step_g
        new_g = new_g.at[0].set(jnp.maximum(new_g[0], 0.05))
        new_cost = total_cost(new_theta, new_g)
        better = new_cost < cost
        return (
            jnp.where(better, new_theta, theta),
            jnp.where(better, new_g, g),
            jnp.where(better, lam * 0.3, lam * 5.0),
            jnp.where(better, new_cost, cost),
        )

    theta, g, _, cost = jax.lax.fori_loop(
        0, iterations, body, (theta, g, jnp.asarray(damping, g.dtype), total_cost(theta, g))
    )
    S, _, _, _, _ = schur(theta, g, jnp.asarray(1e-6, g.dtype))
    return theta, g, cost, S


def calibrate_psf(
    images: Float[Array, "n size size"],
    *,
    sigma0: float = psf.DEFAULT_SIGMA,
    fit_background: bool = False,
    background0: float = 0.0,
    rounds: int = 4,
    iterations: int = 20,
    max_sources: int = 5,
    saturation: float = sensor.SATURATION,
) -> dict[str, float]:
    """Estimate the PSF width (and optionally a constant background) shared by a set of images.

    Args:
      images: ``[n, size, size]`` images of point targets (uint8 or float, 0..255 scale). A few hundred
        images pin ``sigma`` to well below 1 %.
      sigma0: starting PSF width (px).
      fit_background: also estimate a constant additive background (else it stays ``background0``).
      rounds: detect sources at the current estimate, then refine jointly; repeated ``rounds`` times.
      iterations: joint Gauss-Newton iterations per round.
      max_sources: largest model order per image.

    Returns:
      ``{"sigma", "sigma_std", "background", "background_std", "residual_variance", "images"}``: the
      estimates, their standard errors from the profiled Fisher information, the fitted residual
      variance per pixel and the number of images used.

    >>> from csist_jax.data import csist100k
    >>> data = csist100k.generate(seed=0, n=200, sigma=0.55, return_clean=True)
    >>> calibrate_psf(data["clean"], sigma0=0.5)["sigma"]  # ~0.55
    """
    _checks.positive_scalar("sigma0", sigma0)
    rounds = _checks.positive_int("rounds", rounds)
    iterations = _checks.positive_int("iterations", iterations)
    images = np.asarray(images)
    if images.ndim != 3 or images.shape[1] != images.shape[2] or images.shape[0] == 0:
        raise ValueError(f"images must have shape [n, size, size] with n >= 1, got {tuple(images.shape)}")
    _checks.finite("images", images)
    z = jnp.asarray(images, jnp.float32)
    g = jnp.array([sigma0, background0], jnp.float32)
    free_g = jnp.array([1.0, 1.0 if fit_background else 0.0], jnp.float32)
    for _ in range(rounds):
        # detection sees the background removed by a whole number of grey levels, so rounded images stay
        # rounded (the fit's quantisation variance applies); the remainder is small
        shift = np.round(float(g[1]))
        found = fit_sources(
            np.asarray(z) - shift, sigma=float(g[0]), max_sources=max_sources, saturation=saturation - shift
        )
        active = (jnp.arange(max_sources)[None, :] < found["count"][:, None]).astype(jnp.float32)
        theta = jnp.concatenate([found["points"][..., :2], found["brightness"][..., None]], axis=-1)
        theta, g, cost, S = _gauss_newton(theta, active, g, z, float(saturation), free_g, 1e-3, iterations)
    n_params = 3 * float(jnp.sum(active)) + float(jnp.sum(free_g))
    dof = max(z.size - n_params, 1.0)
    variance = float(cost) / dof
    cov = variance * jnp.linalg.inv(S)
    return {
        "sigma": float(g[0]),
        "sigma_std": float(jnp.sqrt(cov[0, 0])),
        "background": float(g[1]),
        "background_std": float(jnp.sqrt(cov[1, 1])) if fit_background else 0.0,
        "residual_variance": variance,
        "images": int(z.shape[0]),
    }
