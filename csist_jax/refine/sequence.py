r"""Multi-frame localisation: one fit over a window of frames in which the targets move together.

In SeqCSIST the targets of a trajectory ride on a reference point that moves a small step per frame
(0.04 px along ``x``, and along a smooth curve in ``y``); their own outward drift is at most 0.0014 px per
frame. Over a short window the motion is a common constant velocity ``v``, so frame ``t`` of a window
centred on frame ``t_c`` is modelled as

    m_t = render({(x_k + (t - t_c) v_x, y_k + (t - t_c) v_y, b_k)}),

``3 K + 2`` parameters for ``T`` frames of data (the censored residual of ``csist_jax.refine.fit`` in every
frame). The search: the single-frame fit (``localize_one``) of *every* frame of the window gives a model
order and a start (its positions taken as the centre frame's, ``v = 0``: the targets move at most a few
hundredths of a pixel per frame); the shared Levenberg-Marquardt solver (``csist_jax.refine.lm``) fits all
frames jointly from each start (Jacobian by ``jax.jacfwd`` through ``csist_jax.physics.render``), and the
fit with the least ``cost / v + penalty K`` is kept (``v`` the per-pixel variance, as in ``localize``).
Under read noise one frame's fit often misses a target or splits one; another frame's start then finds
the better optimum of the window. ``starts="centre"`` runs the centre frame's start alone (T times
cheaper; the search before 2026-12). With ``T`` frames the rounding noise
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
from csist_jax.refine.polish import _found_arrays
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
    _checks.positive_scalar("sigma", sigma)
    _checks.positive_scalar("saturation", saturation)
    _checks.positive_int("iterations", iterations, minimum=0)
    _checks.nonnegative("damping", damping)
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


#: the window searches of ``localize_window(s)``: starts from every frame's fit, or the centre frame's
STARTS = ("all", "centre")


def _window_points(frames, theta, count, sigma, noise_std, saturation, iterations, penalty=10.0):
    """Centre-frame points ``[K, 3]``, velocity ``[2]`` and model-order criterion ``cost / v + penalty K``
    of one window fitted from ``theta``, ``count``."""
    active = (jnp.arange(theta.shape[0]) < count).astype(frames.dtype)
    theta, velocity, cost, H = fit_window(
        theta, active, frames, sigma=sigma, saturation=saturation, iterations=iterations
    )
    variance = pixel_variance(frames, noise_std)
    _, score = position_score(H, active, variance)
    points = jnp.concatenate([theta[:, :2] * active[:, None], score[:, None]], axis=1)
    return points, velocity, cost / variance + penalty * count


def _best_start(frames, thetas, counts, sigma, noise_std, saturation, iterations, penalty):
    """The joint fit of one window from each start ``thetas`` ``[S, K, 3]`` / ``counts`` ``[S]``, the
    least criterion kept: ``(points, count, velocity, criterion)``."""
    points, velocity, criterion = jax.vmap(
        lambda t, k: _window_points(frames, t, k, sigma, noise_std, saturation, iterations, penalty)
    )(thetas, counts)
    pick = jnp.argmin(criterion)
    return points[pick], counts[pick], velocity[pick], criterion[pick]


def _check_window_options(sigma, noise_std, penalty, saturation, max_sources) -> None:
    """The options of ``localize_window(s)``, checked when concrete (before any fit runs, an empty batch
    included): ``sigma``, ``saturation`` > 0, ``noise_std``, ``penalty`` >= 0, all finite."""
    _checks.positive_scalar("sigma", sigma)
    _checks.nonnegative("noise_std", noise_std)
    _checks.nonnegative("penalty", penalty)
    _checks.positive_scalar("saturation", saturation)
    _checks.positive_int("max_sources", max_sources)


def _start_frames(t: int, starts: str) -> list[int]:
    if starts not in STARTS:
        raise ValueError(f"starts must be one of {list(STARTS)}, got {starts!r}")
    return list(range(t)) if starts == "all" else [t // 2]


def localize_window(
    frames: Float[Array, "t size size"],
    *,
    sigma=psf.DEFAULT_SIGMA,
    noise_std=0.0,
    max_sources: int = 5,
    iterations: int = 30,
    saturation=sensor.SATURATION,
    penalty=10.0,
    starts: str = "all",
) -> dict[str, Array]:
    """Detections in the centre frame of one window, fitted on all its frames: the per-window core.

    ``localize_one`` of each frame (``starts="all"``) or of the centre frame (``"centre"``) gives a model
    order and a start, ``fit_window`` the joint fit from each, and the least ``cost / v + penalty K`` is
    kept (module docstring). Pure, jittable and vmappable (``jax.jit(jax.vmap(localize_window))(windows)``);
    ``max_sources``, ``iterations`` and ``starts`` are static. ``localize_windows`` is the host-side
    convenience over the same steps.

    Returns:
      ``{"points": [max_sources, 3] (x, y, score), "count": int32 scalar, "velocity": [2], "criterion":
      the kept fit's cost / v + penalty K}``.
    """
    frames = jnp.asarray(frames)
    if frames.ndim != 3 or frames.shape[1] != frames.shape[2] or frames.shape[0] % 2 == 0:
        raise ValueError(f"frames must have shape [T, size, size] with T odd, got {tuple(frames.shape)}")
    if not jnp.issubdtype(frames.dtype, jnp.floating):
        frames = frames.astype(jnp.float32)
    iterations = _checks.positive_int("iterations", iterations)
    _check_window_options(sigma, noise_std, penalty, saturation, max_sources)
    _checks.finite("frames", frames)
    _checks.saturation_warning("frames", frames, saturation)
    index = jnp.asarray(_start_frames(frames.shape[0], starts))
    single = jax.vmap(
        lambda z: localize_one(
            z,
            sigma=sigma,
            noise_std=noise_std,
            max_sources=max_sources,
            saturation=saturation,
            penalty=penalty,
        )
    )(frames[index])
    thetas = jnp.concatenate([single["points"][..., :2], single["brightness"][..., None]], axis=-1)
    points, count, velocity, criterion = _best_start(
        frames, thetas, single["count"], sigma, noise_std, saturation, iterations, penalty
    )
    return {"points": points, "count": count, "velocity": velocity, "criterion": criterion}


@functools.partial(jax.jit, static_argnames=("iterations",))
def _localize_windows(windows, thetas, counts, sigma, noise_std, saturation, iterations, penalty):
    return jax.vmap(_best_start, in_axes=(0, 0, 0, None, None, None, None, None))(
        windows, thetas, counts, sigma, noise_std, saturation, iterations, penalty
    )


def localize_windows(
    windows: Float[Array, "n t size size"],
    *,
    sigma: float = psf.DEFAULT_SIGMA,
    noise_std: float = 0.0,
    max_sources: int = 5,
    iterations: int = 30,
    saturation: float = sensor.SATURATION,
    penalty: float = 10.0,
    starts: str = "all",
    batch_size: int = 1024,
) -> tuple[Float[Array, "n m 3"], Int[Array, " n"], Float[Array, "n 2"]]:
    """Detections ``(x, y, score)`` in the centre frame of each window, fitted on all its frames.

    Args:
      windows: ``[n, T, size, size]`` frames (``T`` odd; the centre frame ``T // 2`` is reported), e.g.
        ``csist_jax.data.seqcsist.windows(data)["image"]``.
      sigma, noise_std, max_sources, saturation, penalty: as in ``fit_sources``.
      iterations: joint Levenberg-Marquardt steps over the window.
      starts: ``"all"`` (default): a joint fit from every frame's single-frame fit, the best kept;
        ``"centre"``: from the centre frame's alone (``T`` times cheaper).
      batch_size: windows per jitted call of the joint fits (bounds memory).

    Every option is checked (NaN and infinity included) with an error naming it, also for an empty batch
    (``n = 0`` gives empty arrays). Windows above ``saturation`` (not stored on the 0..255 scale) get a
    ``SaturationWarning`` naming it.

    Returns:
      ``points`` ``[n, max_sources, 3]`` of the centre frame, ``point_count`` ``[n]`` (the model order
      of the kept start) and the fitted common velocity ``[n, 2]`` (px per frame).

    >>> from csist_jax.data import seqcsist
    >>> w = seqcsist.windows(seqcsist.generate(0, 2))
    >>> points, count, velocity = localize_windows(w["image"])
    """
    windows = np.asarray(windows)
    if windows.ndim != 4 or windows.shape[2] != windows.shape[3] or windows.shape[1] % 2 == 0:
        raise ValueError(f"windows must have shape [n, T, size, size] with T odd, got {tuple(windows.shape)}")
    _checks.finite("windows", windows)
    iterations = _checks.positive_int("iterations", iterations)
    _checks.positive_int("batch_size", batch_size)
    _check_window_options(sigma, noise_std, penalty, saturation, max_sources)
    _checks.saturation_warning("windows", windows, saturation)
    n, t, size = windows.shape[0], windows.shape[1], windows.shape[-1]
    index = _start_frames(t, starts)
    if n == 0:
        return (
            jnp.zeros((0, max_sources, 3), jnp.float32),
            jnp.zeros((0,), jnp.int32),
            jnp.zeros((0, 2), jnp.float32),
        )
    frames = windows.astype(np.float32)
    with _checks.no_saturation_warning():  # the windows were checked above
        single = fit_sources(
            frames[:, index].reshape(-1, size, size),
            sigma=sigma,
            noise_std=noise_std,
            max_sources=max_sources,
            saturation=saturation,
            penalty=penalty,
        )
    s = len(index)
    thetas = jnp.concatenate([single["points"][..., :2], single["brightness"][..., None]], axis=-1)
    thetas = thetas.reshape(n, s, max_sources, 3)
    counts = single["count"].reshape(n, s)
    parts = []
    for lo in range(0, n, batch_size):
        parts.append(
            _localize_windows(
                jnp.asarray(frames[lo : lo + batch_size]),
                thetas[lo : lo + batch_size],
                counts[lo : lo + batch_size],
                jnp.float32(sigma),
                jnp.float32(noise_std),
                float(saturation),
                iterations,
                jnp.float32(penalty),
            )
        )
    points, count, velocity, _ = (jnp.concatenate(p) for p in zip(*parts))
    return points, count, velocity


@functools.partial(jax.jit, static_argnames=("iterations",))
def _polish_windows(windows, theta, count, probability, sigma, noise_std, saturation, iterations):
    def one(frames, t, k, p):
        m = t.shape[0]
        active = (jnp.arange(m) < k).astype(frames.dtype)
        # unused slots parked inside the frame at unit brightness (they neither move nor render)
        start = jnp.where(active[:, None] > 0, t, jnp.array([0.0, 0.0, 1.0], frames.dtype))
        start = start.at[:, 2].set(jnp.maximum(start[:, 2], 1.0))
        points, _, criterion = _window_points(frames, start, k, sigma, noise_std, saturation, iterations, 0.0)
        return points.at[:, 2].multiply(p) * active[:, None], criterion

    return jax.vmap(one)(windows, theta, count, probability)


def polish_windows(
    windows: Float[Array, "n t size size"],
    found: dict,
    *,
    sigma: float = psf.DEFAULT_SIGMA,
    noise_std: float = 0.0,
    iterations: int = 10,
    max_cost: float | None = None,
    saturation: float = sensor.SATURATION,
) -> tuple[Float[Array, "n m 3"], Array]:
    """A detector's centre-frame points polished by one joint fit over each window (``fit_window``, the
    count kept), scored by the fit's predicted position error times the detector's probability.

    ``found``: ``"points"`` ``[n, M, 3]``, ``"count"`` ``[n]``, ``"brightness"`` ``[n, M]`` and optionally
    ``"probability"`` ``[n, M]`` (e.g. a window localiser's :func:`csist_jax.models.localizer.points`).
    The fit is kept where its cost (units of the pixel variance, summed over the ``T`` frames) is at most
    ``max_cost`` (None: always); elsewhere the detector's points stay. Returns ``(points, accepted [n])``.
    Options are checked (finite; ``sigma``, ``saturation``, ``max_cost`` > 0, ``noise_std`` >= 0) with an
    error naming them; windows above ``saturation`` warn; an empty batch gives empty arrays.
    """
    _checks.positive_scalar("sigma", sigma)
    _checks.nonnegative("noise_std", noise_std)
    _checks.positive_scalar("saturation", saturation)
    if max_cost is not None:
        _checks.positive_scalar("max_cost", max_cost)
    iterations = _checks.positive_int("iterations", iterations)
    missing = sorted({"points", "count", "brightness"} - set(found))
    if missing:
        raise ValueError(f"found must hold a detector's points, count and brightness; missing {missing}")
    windows = np.asarray(windows, np.float32)
    if windows.ndim != 4 or windows.shape[1] % 2 == 0 or windows.shape[2] != windows.shape[3]:
        raise ValueError(f"windows must have shape [n, T, size, size] with T odd, got {tuple(windows.shape)}")
    _checks.finite("windows", windows)
    _checks.saturation_warning("windows", windows, saturation)
    points = jnp.asarray(found["points"], jnp.float32)
    if points.ndim != 3 or points.shape[2] != 3:
        raise ValueError(f"found['points'] must have shape [n, M, 3], got {tuple(points.shape)}")
    n = points.shape[0]
    if n != len(windows):
        raise ValueError(f"found['points'] has {n} rows for {len(windows)} windows")
    count, brightness, probability = _found_arrays(found, points)
    if n == 0:  # an empty batch: nothing to fit (and nothing to compile)
        return points, jnp.zeros((0,), bool)
    theta = jnp.concatenate([points[..., :2], brightness[..., None]], -1)
    fitted, cost = _polish_windows(
        jnp.asarray(windows),
        theta,
        count,
        probability,
        jnp.float32(sigma),
        jnp.float32(noise_std),
        float(saturation),
        iterations,
    )
    accepted = jnp.ones((n,), bool) if max_cost is None else cost <= max_cost
    return jnp.where(accepted[:, None, None], fitted, points), accepted
