r"""Multi-frame localisation: one fit over a window of frames in which the targets move together.

In SeqCSIST the targets of a trajectory ride on a reference point that moves a small step per frame
(0.04 px along ``x``, and along a smooth curve in ``y``); their own outward drift is at most 0.0014 px per
frame. Over a short window the motion is a common constant velocity ``v``, so frame ``t`` of a window
centred on frame ``t_c`` is modelled as

    m_t = render({(x_k + (t - t_c) v_x, y_k + (t - t_c) v_y, b_k)}),

``3 K + 2`` parameters for ``T`` frames of data (the censored residual of ``csist_jax.refine.fit`` in every
frame). The single-frame fit of the centre frame (``localize_one``) gives the model order and the start
(``v = 0``); the shared Levenberg-Marquardt solver (``csist_jax.refine.lm``) then fits all frames jointly
(Jacobian by ``jax.jacfwd`` through ``csist_jax.physics.render``). With ``T`` frames the rounding noise
averages down, so positions and scores (the predicted position error of
``csist_jax.refine.score.position_score``, as in ``localize``) are sharper than from the centre frame
alone.

``fit_window`` (one window from a start) and ``localize_window`` (one window from its frames alone) are
the pure, jittable per-window cores; ``localize_windows`` is the host-side convenience over a batch.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int

from csist_jax import _checks
from csist_jax.physics import psf, sensor
from csist_jax.refine import fit, lm
from csist_jax.refine.localize import fit_sources, localize_one
from csist_jax.refine.score import pixel_variance, position_score


def _window_residual(params, active, frames, sigma, saturation):
    K = active.shape[0]
    theta = params[: 3 * K].reshape(K, 3)
    v = params[3 * K :]
    T = frames.shape[0]
    shift = (jnp.arange(T, dtype=frames.dtype) - T // 2)[:, None, None] * jnp.concatenate(
        [v, jnp.zeros(1, v.dtype)]
    )
    targets = (theta[None] + shift) * jnp.stack([jnp.ones_like(active), jnp.ones_like(active), active], -1)
    m = psf.render(targets, frames.shape[-1], sigma)
    return fit.censored_residual(m, frames, saturation).reshape(-1)


def fit_window(
    theta: Float[Array, "k 3"],
    active: Float[Array, " k"],
    frames: Float[Array, "t size size"],
    *,
    sigma=psf.DEFAULT_SIGMA,
    saturation=sensor.SATURATION,
    iterations: int = 30,
    damping: float = 1e-2,
) -> tuple[Float[Array, "k 3"], Float[Array, " 2"], Float[Array, ""], Float[Array, "p p"]]:
    """Fit ``K`` sources moving with one common velocity to a window of frames: the per-window fitting core.

    ``iterations`` steps of ``csist_jax.refine.lm.levenberg_marquardt`` on the censored residual of every
    frame (module docstring: the model), from ``theta`` at the centre frame and ``v = 0``; the Jacobian by
    ``jax.jacfwd`` through ``csist_jax.physics.render``. The velocity is bounded to ``|v| <= 1/2`` px per
    frame. Pure, jittable, vmappable and differentiable; ``iterations`` is static.

    Args:
      theta: ``[K, 3]`` start ``(x, y, brightness)`` in the centre frame ``T // 2``.
      active: ``[K]`` 1 for a source, 0 for an unused slot.
      frames: ``[T, size, size]`` the window (0..255 scale).

    Returns:
      ``(theta [K, 3], velocity [2], cost, H [3K + 2, 3K + 2])``: the centre-frame fit, the velocity
      (px per frame), the cost ``sum res^2`` and the Gauss-Newton matrix (velocity rows last).
    """
    K = active.shape[0]
    size = frames.shape[-1]
    dtype = frames.dtype
    residual = functools.partial(
        _window_residual, active=active, frames=frames, sigma=sigma, saturation=saturation
    )
    free = jnp.concatenate([jnp.repeat(active, 3), jnp.ones(2, dtype)]) > 0
    lower, upper = fit.source_bounds(size, dtype)  # per source; the velocity within 1/2 px per frame
    lo = jnp.concatenate([jnp.tile(lower, K), jnp.full(2, -0.5, dtype)])
    hi = jnp.concatenate([jnp.tile(upper, K), jnp.full(2, 0.5, dtype)])

    def evaluate(p):
        r = residual(p)
        return jnp.sum(r * r), r

    def normal(p, r):
        J = jax.jacfwd(residual)(p) * free[None, :]
        return J.T @ J, J.T @ r

    p0 = jnp.concatenate([theta.reshape(-1), jnp.zeros(2, dtype)])
    p, cost, r = lm.levenberg_marquardt(
        evaluate, normal, p0, iterations=iterations, damping=damping, free=free, lower=lo, upper=hi
    )
    H, _ = normal(p, r)
    return p[: 3 * K].reshape(K, 3), p[3 * K :], cost, H


def _window_points(frames, theta, count, sigma, noise_std, saturation, iterations):
    """Centre-frame points ``[K, 3]`` and velocity ``[2]`` of one window fitted from ``theta``, ``count``."""
    active = (jnp.arange(theta.shape[0]) < count).astype(frames.dtype)
    theta, velocity, _, H = fit_window(
        theta, active, frames, sigma=sigma, saturation=saturation, iterations=iterations
    )
    _, score = position_score(H, active, pixel_variance(frames, noise_std))
    return jnp.concatenate([theta[:, :2] * active[:, None], score[:, None]], axis=1), velocity


def localize_window(
    frames: Float[Array, "t size size"],
    *,
    sigma=psf.DEFAULT_SIGMA,
    noise_std=0.0,
    max_sources: int = 5,
    iterations: int = 30,
    saturation=sensor.SATURATION,
) -> dict[str, Array]:
    """Detections in the centre frame of one window, fitted on all its frames: the per-window core.

    ``localize_one`` of the centre frame gives the model order and the start, ``fit_window`` the joint
    fit. Pure, jittable and vmappable (``jax.jit(jax.vmap(localize_window))(windows)``); ``max_sources``
    and ``iterations`` are static. ``localize_windows`` is the host-side convenience over the same steps.

    Returns:
      ``{"points": [max_sources, 3] (x, y, score), "count": int32 scalar, "velocity": [2]}``.
    """
    frames = jnp.asarray(frames)
    if frames.ndim != 3 or frames.shape[1] != frames.shape[2] or frames.shape[0] % 2 == 0:
        raise ValueError(f"frames must have shape [T, size, size] with T odd, got {tuple(frames.shape)}")
    if not jnp.issubdtype(frames.dtype, jnp.floating):
        frames = frames.astype(jnp.float32)
    iterations = _checks.positive_int("iterations", iterations)
    centre = localize_one(
        frames[frames.shape[0] // 2],
        sigma=sigma,
        noise_std=noise_std,
        max_sources=max_sources,
        saturation=saturation,
    )
    theta = jnp.concatenate([centre["points"][:, :2], centre["brightness"][:, None]], axis=-1)
    points, velocity = _window_points(
        frames, theta, centre["count"], sigma, noise_std, saturation, iterations
    )
    return {"points": points, "count": centre["count"], "velocity": velocity}


@functools.partial(jax.jit, static_argnames=("iterations",))
def _localize_windows(windows, theta, count, sigma, noise_std, saturation, iterations):
    return jax.vmap(_window_points, in_axes=(0, 0, 0, None, None, None, None))(
        windows, theta, count, sigma, noise_std, saturation, iterations
    )


def localize_windows(
    windows: Float[Array, "n t size size"],
    *,
    sigma: float = psf.DEFAULT_SIGMA,
    noise_std: float = 0.0,
    max_sources: int = 5,
    iterations: int = 30,
    saturation: float = sensor.SATURATION,
) -> tuple[Float[Array, "n m 3"], Int[Array, " n"], Float[Array, "n 2"]]:
    """Detections ``(x, y, score)`` in the centre frame of each window, fitted on all its frames.

    Args:
      windows: ``[n, T, size, size]`` frames (``T`` odd; the centre frame ``T // 2`` is reported), e.g.
        ``csist_jax.data.seqcsist.windows(data)["image"]``.
      sigma, noise_std, max_sources, saturation: as in ``fit_sources``.
      iterations: joint Levenberg-Marquardt steps over the window.

    Returns:
      ``points`` ``[n, max_sources, 3]`` of the centre frame, ``point_count`` ``[n]`` (the centre
      frame's single-frame model order) and the fitted common velocity ``[n, 2]`` (px per frame).

    >>> from csist_jax.data import seqcsist
    >>> w = seqcsist.windows(seqcsist.generate(0, 2))
    >>> points, count, velocity = localize_windows(w["image"])
    """
    windows = np.asarray(windows)
    if windows.ndim != 4 or windows.shape[2] != windows.shape[3] or windows.shape[1] % 2 == 0:
        raise ValueError(f"windows must have shape [n, T, size, size] with T odd, got {tuple(windows.shape)}")
    _checks.finite("windows", windows)
    iterations = _checks.positive_int("iterations", iterations)
    frames = windows.astype(np.float32)
    centre = fit_sources(
        frames[:, frames.shape[1] // 2],
        sigma=sigma,
        noise_std=noise_std,
        max_sources=max_sources,
        saturation=saturation,
    )
    theta = jnp.concatenate([centre["points"][..., :2], centre["brightness"][..., None]], axis=-1)
    points, velocity = _localize_windows(
        jnp.asarray(frames),
        theta,
        centre["count"],
        jnp.float32(sigma),
        jnp.float32(noise_std),
        float(saturation),
        iterations,
    )
    return points, centre["count"], velocity
