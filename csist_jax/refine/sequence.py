r"""Multi-frame localisation: one fit over a window of frames in which the targets move together.

In SeqCSIST the targets of a trajectory ride on a reference point that moves a small step per frame
(0.04 px along ``x``, and along a smooth curve in ``y``); their own outward drift is at most 0.0014 px per
frame. Over a short window the motion is a common constant velocity ``v``, so frame ``t`` of a window
centred on frame ``t_c`` is modelled as

    m_t = render({(x_k + (t - t_c) v_x, y_k + (t - t_c) v_y, b_k)}),

``3 K + 2`` parameters for ``T`` frames of data (the censored residual of ``csist_jax.refine.fit`` in every
frame). The single-frame ``fit_sources`` of the centre frame gives the model order and the start
(``v = 0``); Levenberg-Marquardt then fits all frames jointly (Jacobian by ``jax.jacfwd`` through
``csist_jax.physics.render``). With ``T`` frames the rounding noise averages down, so positions and
scores (the predicted position error, as in ``localize``) are sharper than from the centre frame alone.
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
from csist_jax.refine.localize import SCORE_SCALE, fit_sources, pixel_variance


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


def _window_fit(theta, active, frames, sigma, saturation, iterations):
    K = active.shape[0]
    free = jnp.concatenate([jnp.repeat(active, 3), jnp.ones(2, frames.dtype)]) > 0
    residual = functools.partial(
        _window_residual, active=active, frames=frames, sigma=sigma, saturation=saturation
    )
    lo = jnp.concatenate(
        [jnp.tile(jnp.array([-0.5, -0.5, 1.0], frames.dtype), K), jnp.full(2, -0.5, frames.dtype)]
    )
    size = frames.shape[-1]
    hi = jnp.concatenate(
        [
            jnp.tile(jnp.array([size - 0.5, size - 0.5, jnp.inf], frames.dtype), K),
            jnp.full(2, 0.5, frames.dtype),
        ]
    )

    def normal(p):
        r = residual(p)
        J = jax.jacfwd(residual)(p) * free[None, :]
        return J.T @ J, J.T @ r, jnp.sum(r * r)

    def body(_, carry):
        p, lam, cost = carry
        H, g, _ = normal(p)
        d = jnp.diagonal(H)
        A = H + jnp.diag(jnp.where(free, lam * d + 1e-9 * (1.0 + d), 1.0))
        trial = jnp.clip(p - jnp.linalg.solve(A, g), lo, hi)
        r = residual(trial)
        new = jnp.sum(r * r)
        better = new < cost
        return (
            jnp.where(better, trial, p),
            jnp.where(better, lam * 0.2, lam * 5.0),
            jnp.where(better, new, cost),
        )

    p0 = jnp.concatenate([theta.reshape(-1), jnp.zeros(2, frames.dtype)])
    r0 = residual(p0)
    p, _, cost = jax.lax.fori_loop(
        0, iterations, body, (p0, jnp.asarray(1e-2, frames.dtype), jnp.sum(r0 * r0))
    )
    H, _, _ = normal(p)
    return p, cost, H, free


@functools.partial(jax.jit, static_argnames=("iterations",))
def _localize_windows(windows, theta, count, sigma, noise_std, saturation, iterations):
    K = theta.shape[1]

    def one(frames, th, k):
        active = (jnp.arange(K) < k).astype(frames.dtype)
        p, cost, H, free = _window_fit(th, active, frames, sigma, saturation, iterations)
        variance = pixel_variance(frames, noise_std)
        Hr = H + jnp.diag(jnp.where(free, 1e-6 * jnp.diagonal(H) + 1e-9, 1.0))
        C = variance * jnp.diagonal(jnp.linalg.inv(Hr))[: 3 * K].reshape(K, 3)
        std = jnp.sqrt(C[:, 0] + C[:, 1])
        std = jnp.where(jnp.isfinite(std) & (C[:, 0] + C[:, 1] >= 0), std, jnp.inf)
        score = jnp.where(active > 0, 1.0 / (1.0 + std / SCORE_SCALE), 0.0)
        xy = p[: 3 * K].reshape(K, 3)[:, :2] * active[:, None]
        return jnp.concatenate([xy, score[:, None]], axis=1), p[3 * K :]

    return jax.vmap(one)(windows, theta, count)


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
