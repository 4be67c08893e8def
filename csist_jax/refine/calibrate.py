r"""Calibration by gradient: the PSF width ``sigma`` (and a constant background) from the images alone.

Every image ``i`` has its own sources ``theta_i`` (found by ``fit_sources`` at the current ``sigma``); the
global parameters ``g = (sigma, background)`` are shared. The joint least-squares problem

    min_{g, theta_1..theta_n}  sum_i || res(render(theta_i, sigma) + background, z_i) ||^2

(``res`` the censored residual of ``csist_jax.refine.fit``) is solved on all parameters at once by the
shared Levenberg-Marquardt solver (``csist_jax.refine.lm``), whose damped system is solved by
eliminating each image's block by its Schur complement (the bundle-adjustment structure):

    S = C - sum_i B_i^T A_i^{-1} B_i,    s = sum_i (J_g,i^T r_i - B_i^T A_i^{-1} J_theta,i^T r_i),
    step_g = -S^{-1} s,    step_theta_i = -A_i^{-1} (J_theta,i^T r_i + B_i step_g),

with ``A_i = J_theta,i^T J_theta,i``, ``B_i = J_theta,i^T J_g,i``, ``C = sum_i J_g,i^T J_g,i`` (``A_i`` and
``C`` carrying Marquardt's damping) and every Jacobian by ``jax.jacfwd`` through
``csist_jax.physics.render`` (differentiable in ``sigma``). Undamped, ``S / v`` is the Fisher information
of ``g`` with the sources profiled out, so ``sqrt(diag(v S^{-1}))`` is its standard error, ``v`` the
residual variance estimated from the fit. The source lists are re-detected at the new ``sigma`` for
``rounds`` rounds (a wrong ``sigma`` can change the model order).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from csist_jax import _checks
from csist_jax.physics import psf, sensor
from csist_jax.refine import fit, lm
from csist_jax.refine.localize import fit_sources


def _residual(theta, active, g, z, saturation):
    """Censored residual of one image with global parameters ``g = (sigma, background)``."""
    targets = theta * jnp.stack([jnp.ones_like(active), jnp.ones_like(active), active], -1)
    m = psf.render(targets, z.shape[-1], g[0]) + g[1]
    return fit.censored_residual(m, z, saturation).reshape(-1)


def _blocks(theta, active, g, z, saturation, free_g):
    """One image's Gauss-Newton blocks ``(A, B, C, J_theta^T r, J_g^T r)``."""
    r = _residual(theta, active, g, z, saturation)
    Jt = jax.jacfwd(_residual)(theta, active, g, z, saturation).reshape(r.shape[0], -1)
    Jg = jax.jacfwd(_residual, argnums=2)(theta, active, g, z, saturation) * free_g[None, :]
    keep = jnp.repeat(active, 3) > 0
    A = Jt.T @ Jt
    A = jnp.where(keep[:, None] & keep[None, :], A, jnp.eye(A.shape[0], dtype=A.dtype))
    return A, Jt.T @ Jg, Jg.T @ Jg, jnp.where(keep, Jt.T @ r, 0.0), Jg.T @ r


def _schur(system, lam, free):
    """The damped joint system with every image's block eliminated: ``(S, s, A^{-1} B, A^{-1} J_theta^T r)``.

    ``system = (A [n, P, P], B [n, P, 2], C [2, 2], J_theta^T r [n, P], J_g^T r [2])`` (``C`` and
    ``J_g^T r`` summed over images), ``free = (keep [n, P], free_g [2])``; every diagonal block is damped
    as in ``csist_jax.refine.lm.damped``, so the step is the dense damped step of the joint system.
    """
    A, B, C, gt, gg = system
    keep, free_g = free
    A = jax.vmap(lm.damped, in_axes=(0, None, 0))(A, lam, keep)
    Ainv_B = jnp.linalg.solve(A, B)
    Ainv_gt = jnp.linalg.solve(A, gt[..., None])[..., 0]
    S = lm.damped(C, lam, free_g) - jnp.einsum("nij,nik->jk", B, Ainv_B)
    s = gg - jnp.einsum("nij,ni->j", B, Ainv_gt)
    return S, s, Ainv_B, Ainv_gt


def _schur_step(system, lam, free):
    S, s, Ainv_B, Ainv_gt = _schur(system, lam, free)
    step_g = -jnp.linalg.solve(S, s)
    return -(Ainv_gt + jnp.einsum("nij,j->ni", Ainv_B, step_g)), step_g


@functools.partial(jax.jit, static_argnames=("iterations",))
def _joint_fit(theta, active, g, images, saturation, free_g, damping, iterations):
    """Levenberg-Marquardt on ``(theta [n, K, 3], g [2])``; returns ``(theta, g, cost, S)``."""
    free = (jnp.repeat(active, 3, axis=-1) > 0, free_g > 0)

    def evaluate(params):
        theta, g = params
        r = jax.vmap(_residual, in_axes=(0, 0, None, 0, None))(theta, active, g, images, saturation)
        return jnp.sum(r * r), None

    def normal(params, _):
        theta, g = params
        blocks = jax.vmap(_blocks, in_axes=(0, 0, None, 0, None, None))
        A, B, C, gt, gg = blocks(theta, active, g, images, saturation, free_g)
        return A, B, jnp.sum(C, axis=0), gt, jnp.sum(gg, axis=0)

    lower = (-jnp.inf, jnp.array([0.05, -jnp.inf], g.dtype))  # sigma >= 0.05 px
    (theta, g), cost, _ = lm.levenberg_marquardt(
        evaluate,
        normal,
        (theta, g),
        iterations=iterations,
        damping=damping,
        free=free,
        lower=lower,
        solve=_schur_step,
    )
    # a relative 1e-6 keeps a nearly singular image block (an unresolved pair) from swamping S
    S = _schur(normal((theta, g), None), 1e-6, free)[0]
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
      iterations: joint Levenberg-Marquardt iterations per round.
      max_sources: largest model order per image.
      saturation: the stored saturation level; images above it (not on the 0..255 scale) get a
        ``SaturationWarning`` naming this option.

    Every option is checked (finite, ``sigma0`` and ``saturation`` > 0) with an error naming it; an empty
    batch is a ``ValueError`` (nothing to calibrate on).

    Returns:
      ``{"sigma", "sigma_std", "background", "background_std", "residual_variance", "images"}``: the
      estimates, their standard errors from the profiled Fisher information, the fitted residual
      variance per pixel and the number of images used.

    >>> from csist_jax.data import csist100k
    >>> data = csist100k.generate(seed=0, n=200, sigma=0.55, return_clean=True)
    >>> calibrate_psf(data["clean"], sigma0=0.5)["sigma"]  # ~0.55
    """
    _checks.positive_scalar("sigma0", sigma0)
    _checks.finite_scalar("background0", background0)
    _checks.positive_scalar("saturation", saturation)
    rounds = _checks.positive_int("rounds", rounds)
    iterations = _checks.positive_int("iterations", iterations)
    max_sources = _checks.positive_int("max_sources", max_sources)
    images = np.asarray(images)
    if images.ndim != 3 or images.shape[1] != images.shape[2] or images.shape[0] == 0:
        raise ValueError(f"images must have shape [n, size, size] with n >= 1, got {tuple(images.shape)}")
    _checks.finite("images", images)
    _checks.saturation_warning("images", images, saturation)
    z = jnp.asarray(images, jnp.float32)
    g = jnp.array([sigma0, background0], jnp.float32)
    free_g = jnp.array([1.0, 1.0 if fit_background else 0.0], jnp.float32)
    for _ in range(rounds):
        # detection sees the background removed by a whole number of grey levels, so rounded images stay
        # rounded (the fit's quantisation variance applies); the remainder is small
        shift = np.round(float(g[1]))
        with _checks.no_saturation_warning():  # the images were checked above
            found = fit_sources(
                np.asarray(z) - shift,
                sigma=float(g[0]),
                max_sources=max_sources,
                saturation=saturation - shift,
            )
        active = (jnp.arange(max_sources)[None, :] < found["count"][:, None]).astype(jnp.float32)
        theta = jnp.concatenate([found["points"][..., :2], found["brightness"][..., None]], axis=-1)
        theta, g, cost, S = _joint_fit(theta, active, g, z, float(saturation), free_g, 1e-3, iterations)
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
