r"""One short fit from given detections: a learned localiser's points polished through the sensor model.

``refine.localize`` searches the model order (nested fits of 1..M sources, escape moves, the two best
orders fitted further). A detector that already gives the count and a close start (the learned localiser
of :mod:`csist_jax.models.localizer`) needs none of that: ``polish_one`` runs one Levenberg-Marquardt fit
(:func:`csist_jax.refine.fit_one`) of the given sources from their given positions and brightnesses, and
scores each by the fit's predicted position error (:func:`csist_jax.refine.position_score`) times the
detector's probability. The count is kept: a polish moves points, it never adds or drops one. A wrong
count shows as a large final residual: :func:`polish` keeps the fit only where its cost is at most
``max_cost`` and otherwise the detector's points (or, with ``fallback=True``, refits those images with
the full search of :func:`csist_jax.refine.fit_sources`).

>>> from csist_jax.models import localizer
>>> found = localizer.points(net.apply(variables, images))
>>> polished = polish(images, found)          # same keys; points moved, scores from the fit
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
from csist_jax.refine.localize import fit_sources
from csist_jax.refine.score import pixel_variance, position_score

#: Levenberg-Marquardt steps of the polish (the start is close: a few suffice)
ITERATIONS = 8
#: the largest final cost (units of the pixel variance) at which :func:`polish` keeps a fit
MAX_COST = 25.0


def polish_one(
    image: Float[Array, "size size"],
    sources: Float[Array, "m 3"],
    count: Int[Array, ""],
    probability: Float[Array, " m"] | None = None,
    *,
    sigma=psf.DEFAULT_SIGMA,
    noise_std=0.0,
    iterations: int = ITERATIONS,
    saturation=sensor.SATURATION,
) -> dict[str, Array]:
    """Fit the first ``count`` of ``sources`` (rows ``(x, y, brightness)``) to ``image``, from themselves.

    Pure, jittable, vmappable and differentiable in ``image`` and ``sources`` (``iterations`` static).
    ``probability`` ``[M]`` (None: ones) multiplies the fit's score. Returns ``{"points": [M, 3] (x, y,
    score), "count", "brightness": [M], "position_std": [M] (px), "cost"}`` (in units of the pixel
    variance); rows beyond ``count`` are zero. Concrete options are checked (``sigma``, ``saturation``
    > 0, ``noise_std`` >= 0, finite); a concrete image above ``saturation`` warns (:func:`polish`).
    """
    _checks.positive_scalar("sigma", sigma)
    _checks.nonnegative("noise_std", noise_std)
    _checks.positive_scalar("saturation", saturation)
    z = jnp.asarray(image)
    z = z if jnp.issubdtype(z.dtype, jnp.floating) else z.astype(jnp.float32)
    _checks.saturation_warning("image", z, saturation)
    sources = jnp.asarray(sources, z.dtype)
    m = sources.shape[0]
    active = (jnp.arange(m) < count).astype(z.dtype)
    # inactive slots are parked inside the frame at unit brightness: they neither move nor render
    start = jnp.where(active[:, None] > 0, sources, jnp.array([0.0, 0.0, 1.0], z.dtype))
    start = start.at[:, 2].set(jnp.maximum(start[:, 2], 1.0))
    theta, cost, H = fit.fit_one(
        start, active, z, sigma=sigma, saturation=saturation, iterations=iterations, damping=1e-2
    )
    variance = pixel_variance(z, noise_std)
    std, score = position_score(H, active, variance)
    if probability is not None:
        score = score * jnp.asarray(probability, z.dtype)
    return {
        "points": jnp.concatenate([theta[:, :2], score[:, None]], axis=1) * active[:, None],
        "count": jnp.asarray(count, jnp.int32),
        "brightness": theta[:, 2] * active,
        "position_std": std * active,
        "cost": cost / variance,
    }


def _found_arrays(found: dict, points) -> tuple[Array, Array, Array]:
    """A detector's ``count`` ``[n]`` (in ``[0, M]``), ``brightness`` ``[n, M]`` and ``probability``
    ``[n, M]`` (ones when absent), checked against ``points`` ``[n, M, 3]``: shapes, and every row below
    its image's count finite (``ValueError`` naming the key)."""
    n, m = points.shape[0], points.shape[1]
    count = np.asarray(found["count"])
    integral = count.dtype.kind in "iu" or (
        count.dtype.kind == "f" and bool(np.all(np.isfinite(count) & (count == np.round(count))))
    )
    if count.shape != (n,) or not integral:
        raise ValueError(f"found['count'] must be [{n}] integers, got {count.dtype} {count.shape}")
    count = count.astype(np.int64)
    if np.any((count < 0) | (count > m)):
        raise ValueError(
            f"found['count'] must lie in [0, {m}] (it exceeds the {m} point slots or is negative), "
            f"got {count.min()}..{count.max()}"
        )
    used = np.arange(m)[None, :] < count[:, None]
    arrays = {"points": points}
    for key in ("brightness", "probability"):
        value = found.get(key)
        if value is None:
            continue
        if tuple(np.shape(value)) != (n, m):
            raise ValueError(f"found[{key!r}] must have shape [{n}, {m}], got {tuple(np.shape(value))}")
        arrays[key] = value
    for key, value in arrays.items():
        rows = np.asarray(value, np.float64)
        rows = rows.reshape(n, m, int(np.prod(rows.shape[2:])))  # explicit sizes: n may be 0
        if not np.all(np.isfinite(rows[used])):
            raise ValueError(f"found[{key!r}] holds NaN or infinite values in rows below the count")
    probability = found.get("probability")
    probability = (
        jnp.ones((n, m), jnp.float32) if probability is None else jnp.asarray(probability, jnp.float32)
    )
    return jnp.asarray(count, jnp.int32), jnp.asarray(found["brightness"], jnp.float32), probability


@functools.partial(jax.jit, static_argnames=("iterations", "saturation"))
def _polish(images, sources, count, probability, sigma, noise_std, iterations, saturation):
    one = functools.partial(polish_one, iterations=iterations, saturation=saturation)
    return jax.vmap(lambda z, s, k, p: one(z, s, k, p, sigma=sigma, noise_std=noise_std))(
        images, sources, count, probability
    )


def polish(
    images: Float[Array, "n size size"],
    found: dict,
    *,
    sigma: float = psf.DEFAULT_SIGMA,
    noise_std: float = 0.0,
    iterations: int = ITERATIONS,
    max_cost: float = MAX_COST,
    fallback: bool = False,
    saturation: float = sensor.SATURATION,
    **fit_options,
) -> dict[str, Array]:
    """:func:`polish_one` over a batch, kept where the fit explains the image.

    Args:
      images: ``[n, size, size]`` stored images (0..255).
      found: a detector's result with ``"points"`` ``[n, M, 3]``, ``"count"`` ``[n]``, ``"brightness"``
        ``[n, M]`` and optionally ``"probability"`` ``[n, M]`` (the output of
        :func:`csist_jax.models.localizer.points`).
      sigma, noise_std, iterations, saturation: as for :func:`polish_one`.
      max_cost: the polish of an image is kept when its final cost is at most this (units of the
        pixel variance); otherwise the detector's points stay. A detector's wrong count leaves a large
        residual: the default (:data:`MAX_COST`) keeps 99 % of the right-count fits of CSIST-100K's
        validation frames and few wrong ones (``experiments/localizer_table.py`` prints the sweep).
      fallback: refit the images whose polish was not kept with :func:`csist_jax.refine.fit_sources`
        (the full model-order search; ``fit_options`` go to it) instead of keeping the detector's points.

    Every option is checked (finite; ``sigma``, ``saturation``, ``max_cost`` > 0, ``noise_std`` >= 0) with
    an error naming it, and the used rows of ``found`` must be finite. Images above ``saturation`` (not
    stored on the 0..255 scale) get a ``SaturationWarning`` naming it. An empty batch (``n = 0``) gives
    empty arrays of the same keys.

    Returns the keys of ``found`` that a fit gives (``"points"``, ``"count"``, ``"brightness"``,
    ``"position_std"``) plus ``"cost"`` ``[n]`` and ``"accepted"`` ``[n]`` bool (the polish kept), ready
    for ``csist_jax.metrics.cso_map_from_points(out["points"], out["count"], ...)``. With ``fallback`` the
    slots are ``max(M, max_sources)``.
    """
    _checks.positive_int("iterations", iterations)
    _checks.positive_scalar("max_cost", max_cost)
    _checks.positive_scalar("sigma", sigma)
    _checks.nonnegative("noise_std", noise_std)
    _checks.positive_scalar("saturation", saturation)
    missing = sorted({"points", "count", "brightness"} - set(found))
    if missing:
        raise ValueError(f"found must hold a detector's points, count and brightness; missing {missing}")
    images = jnp.asarray(images)
    if images.ndim != 3 or images.shape[1] != images.shape[2]:
        raise ValueError(f"images must have shape [n, size, size], got {tuple(images.shape)}")
    points = jnp.asarray(found["points"], jnp.float32)
    n, m = images.shape[0], points.shape[1]
    if points.ndim != 3 or points.shape[0] != n or points.shape[2] != 3:
        raise ValueError(f"found['points'] must have shape [{n}, M, 3], got {tuple(points.shape)}")
    _checks.finite("images", images)
    _checks.saturation_warning("images", images, saturation)
    count, brightness, probability = _found_arrays(found, points)
    if n == 0:  # an empty batch: nothing to fit (and nothing to compile)
        empty = jnp.zeros((0, m), jnp.float32)
        return {
            "points": points,
            "count": count,
            "brightness": brightness,
            "position_std": empty,
            "cost": jnp.zeros((0,), jnp.float32),
            "accepted": jnp.zeros((0,), bool),
        }
    fitted = _polish(
        images.astype(jnp.float32),
        jnp.concatenate([points[..., :2], brightness[..., None]], -1),
        count,
        jnp.asarray(probability, jnp.float32),
        jnp.float32(sigma),
        jnp.float32(noise_std),
        iterations=int(iterations),
        saturation=float(saturation),
    )
    accepted = fitted["cost"] <= max_cost
    start = {
        "points": points,
        "count": count,
        "brightness": brightness,
        "position_std": jnp.asarray(found.get("position_std", jnp.zeros((n, m))), jnp.float32),
    }
    out = {k: jnp.where(accepted.reshape((n,) + (1,) * (v.ndim - 1)), fitted[k], v) for k, v in start.items()}
    out["cost"], out["accepted"] = fitted["cost"], accepted
    rejected = np.flatnonzero(~np.asarray(accepted))
    if fallback and len(rejected):
        with _checks.no_saturation_warning():  # the images were checked above
            refit = fit_sources(
                np.asarray(images)[rejected],
                sigma=sigma,
                noise_std=noise_std,
                saturation=saturation,
                **fit_options,
            )
        slots = max(m, refit["points"].shape[1])
        widen = lambda a: jnp.pad(a, ((0, 0), (0, slots - a.shape[1])) + ((0, 0),) * (a.ndim - 2))  # noqa: E731
        for key in ("points", "brightness", "position_std"):
            out[key] = widen(out[key]).at[rejected].set(widen(refit[key]))
        out["count"] = out["count"].at[rejected].set(refit["count"])
        out["cost"] = out["cost"].at[rejected].set(refit["cost"])
    return out


__all__ = ["ITERATIONS", "MAX_COST", "polish", "polish_one"]
