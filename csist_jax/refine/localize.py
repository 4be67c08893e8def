r"""Continuous sub-pixel localisation: ``localize(images) -> (points, point_count)``.

Every published CSIST method scores detections at the centres of a ``1/c``-pixel grid, which caps
CSO-mAP (about 0.486 for the exact label map at ``c = 3``). Here the targets are fitted as what they
are, point sources seen through the known sensor (``csist_jax.refine.fit``), one image at a time by
``localize_one`` (pure and jittable; ``fit_sources`` / ``localize`` are the host-side conveniences):

1. **Candidates.** Model order ``k = 1 .. max_sources`` is grown greedily: a new source starts at the
   peak of the residual ``z - m`` (centroid of its positive 3 x 3 neighbourhood), taking a third of the
   flux of the nearest source already placed (overlapping targets share flux). With ``hr_maps`` (any
   network's or the analytic solver's HR map) the ``k`` strongest local maxima of the map are a second
   start for order ``k``; the better fit of the two is kept.
2. **Joint fit.** Positions and intensities of all ``k`` sources are fitted together by
   Levenberg-Marquardt (``csist_jax.refine.fit.fit_one``), with the stored image's 8-bit rounding and
   255-saturation in the model.
3. **Escaping local minima.** From ``k = 2`` on, a fit can park a source on a faint spot while the
   others absorb its flux. The weakest source is moved next to the brightest, which is split in two
   (along each of ``repair_directions`` axes); the move is kept when it lowers the cost.
4. **Model order.** ``k`` minimises ``cost_k / v + penalty * k`` (``k = 0`` included), with ``v`` the
   per-pixel residual variance: ``1/12`` for rounded images (detected per image: all values integer),
   plus ``noise_std^2``, and a floor of ``1e-6`` for float images. The two best orders are fitted
   further and compared again.
5. **Scores.** Each detection is scored by its predicted localisation error, the Cramer-Rao-type
   standard deviation ``s = sqrt(C_xx + C_yy)`` from ``C = v (J^T W J)^{-1}`` at the solution:
   ``score = 1 / (1 + s / 0.05)`` in ``(0, 1]`` (``csist_jax.refine.score.position_score``). CSO-mAP
   pools detections over the dataset and ranks them by score, so confident, bright, well-separated
   detections come first and a weak spurious source, whose position is poorly determined, comes last.

All shapes are static (``max_sources`` slots, a count), so the whole pipeline is one function of one
image, jitted and vmapped over images (``jax.jit(jax.vmap(localize_one))``); an image's result never
depends on the other images of its batch (bit-identical under any permutation). It can depend on the
compiled chunk shape at the level of float rounding: XLA may order a reduction differently for another
batch size, and a nearly degenerate fit can amplify that.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int

from csist_jax import _checks
from csist_jax.physics import grid, psf, sensor
from csist_jax.refine import fit
from csist_jax.refine.score import SCORE_SCALE, VARIANCE_FLOOR, pixel_variance, position_score, position_std

__all__ = [
    "SCORE_SCALE",
    "VARIANCE_FLOOR",
    "fit_sources",
    "localize",
    "localize_one",
    "pixel_variance",
    "position_std",
]

_DIRECTIONS = ((1.0, 0.0), (0.0, 1.0), (0.70710678, 0.70710678), (0.70710678, -0.70710678))


def _one_hot_window(centre, size: int, width: int, dtype):
    """``[size, width]`` selection of the ``width`` pixels centred on ``centre`` (clamped to the frame)."""
    start = jnp.clip(centre - width // 2, 0, size - width)
    return (jnp.arange(size)[:, None] == start + jnp.arange(width)[None, :]).astype(dtype), start


def _model(theta, active, sigma, size):
    return psf.render(
        theta * jnp.stack([jnp.ones_like(active), jnp.ones_like(active), active], -1), size, sigma
    )


def _insert(theta, active, k, z, sigma, peak_fraction):
    """Activate slot ``k`` at the peak of the positive residual; it borrows flux from its nearest source."""
    size = z.shape[-1]
    r = z - _model(theta, active, sigma, size)
    peak = jnp.argmax(r)
    i, j = peak // size, peak % size
    Er, r0 = _one_hot_window(i, size, 3, z.dtype)
    Eq, q0 = _one_hot_window(j, size, 3, z.dtype)
    win = jnp.maximum(Er.T @ r @ Eq, 0.0)
    total = jnp.sum(win) + 1e-9
    x = r0 + jnp.sum(win.sum(1) * jnp.arange(3.0)) / total
    y = q0 + jnp.sum(win.sum(0) * jnp.arange(3.0)) / total
    dist = jnp.hypot(theta[:, 0] - x, theta[:, 1] - y) + jnp.where(active > 0, 0.0, jnp.inf)
    near = jnp.argmin(dist)
    share = jnp.where(jnp.any(active > 0), theta[near, 2] / 3.0, 0.0)
    theta = theta.at[near, 2].add(-share)
    b = jnp.maximum(r[i, j] / peak_fraction, 20.0) + share
    return theta.at[k].set(jnp.stack([x, y, b]).astype(theta.dtype)), active.at[k].set(1.0)


def _relocate(theta, active, direction, delta: float = 0.25):
    """Move the weakest active source next to the brightest and split the brightest's flux between them."""
    b = theta[:, 2]
    weak = jnp.argmin(jnp.where(active > 0, b, jnp.inf))
    bright = jnp.argmax(jnp.where(active > 0, b, -jnp.inf))
    x, y, flux = theta[bright, 0], theta[bright, 1], theta[bright, 2]
    dx, dy = delta * direction[0], delta * direction[1]
    theta = theta.at[weak].set(jnp.stack([x + dx, y + dy, flux / 2]))
    return theta.at[bright].set(jnp.stack([x - dx, y - dy, flux / 2]))


def _map_peaks(hr_map, k, c: int, size: int, max_sources: int):
    """The ``k`` strongest local maxima of an HR map: ``[max_sources, 3]`` rows (x, y, brightness)."""
    hr_map = jnp.maximum(hr_map, 0.0)
    pooled = jax.lax.reduce_window(hr_map, -jnp.inf, jax.lax.max, (3, 3), (1, 1), "SAME")
    peaks = jnp.where(hr_map >= pooled, hr_map, 0.0).reshape(-1)
    value, idx = jax.lax.top_k(peaks, max_sources)
    centres = grid.hr_cell_centres(c, size).astype(hr_map.dtype)
    hr = size * c
    rows = jnp.stack([centres[idx // hr], centres[idx % hr], jnp.maximum(value, 20.0)], -1)
    return jnp.where((jnp.arange(max_sources) < k)[:, None], rows, 0.0)


def _static_int(name: str, value, minimum: int = 1) -> int:
    if isinstance(value, jax.core.Tracer):
        raise TypeError(
            f"{name} is a structural option and must be a Python int, got a traced value (bind it with "
            "functools.partial before jax.jit / jax.vmap instead of passing it as a traced argument)"
        )
    return _checks.positive_int(name, value, minimum=minimum)


_STRUCTURAL = (
    "c",
    "max_sources",
    "iterations",
    "repair_iterations",
    "polish_iterations",
    "repair_directions",
)


def _check_options(sigma, noise_std, penalty, saturation, *structural) -> None:
    """The options shared by ``localize_one`` and ``fit_sources``: the structural ones (Python ints, in
    the order of ``_STRUCTURAL``) always, ``sigma``, ``noise_std``, ``penalty`` and ``saturation`` when
    concrete (finite; ``sigma``, ``saturation`` > 0, ``noise_std``, ``penalty`` >= 0: NaN fails)."""
    _checks.positive_scalar("sigma", sigma)
    _checks.positive_scalar("saturation", saturation)
    for name, value in zip(_STRUCTURAL, structural, strict=True):
        _static_int(name, value, minimum=0 if name in ("repair_iterations", "repair_directions") else 1)
    repair_directions = structural[-1]
    if repair_directions > len(_DIRECTIONS):
        raise ValueError(f"repair_directions must be in 0..{len(_DIRECTIONS)}, got {repair_directions!r}")
    _checks.nonnegative("noise_std", noise_std)
    _checks.nonnegative("penalty", penalty)


def localize_one(
    image: Float[Array, "size size"],
    hr_map: Float[Array, "hr hr"] | None = None,
    *,
    sigma=psf.DEFAULT_SIGMA,
    c: int = 3,
    max_sources: int = 5,
    noise_std=0.0,
    penalty=10.0,
    iterations: int = 10,
    repair_iterations: int = 10,
    polish_iterations: int = 15,
    repair_directions: int = 2,
    saturation=sensor.SATURATION,
) -> dict[str, Array]:
    """Point sources in one image: the per-image localisation core (module docstring: the method).

    Pure, jittable, vmappable and differentiable: ``jax.jit(jax.vmap(localize_one))(images)`` localises a
    batch, ``jax.grad`` runs through the fits (the discrete choices, model order, which start is kept
    and which steps are accepted, are held fixed). The structural options (``c``, ``max_sources``, the
    iteration counts, ``repair_directions``) must be Python ints: bind them with ``functools.partial``
    before ``jit``/``vmap``. ``sigma``, ``noise_std``, ``penalty`` and ``saturation`` may be traced.
    ``fit_sources`` / ``localize`` are the host-side conveniences over it (validation, chunking) and give
    the same results (bit for bit at the same batch size).

    Args:
      image: ``[size, size]`` stored image on the 0..255 scale (an integer dtype is fitted in float32).
        A rounded image (every value an integer) is fitted with the quantisation variance ``1/12``.
      hr_map: optional ``[size*c, size*c]`` HR map whose local maxima seed every model order.
      sigma, c, max_sources, noise_std, penalty, iterations, repair_iterations, polish_iterations,
      repair_directions, saturation: as in :func:`fit_sources`.

    Returns:
      ``{"points": [M, 3] (x, y, score), "count": int32 scalar, "brightness": [M], "position_std": [M]
      (px), "cost": scalar (in units of the pixel variance)}``, ``M = max_sources``; rows beyond
      ``count`` are zero.

    >>> from csist_jax.data import csist100k
    >>> images = jnp.asarray(csist100k.generate(seed=0, n=8)["image"], jnp.float32)
    >>> result = jax.jit(jax.vmap(localize_one))(images)  # result["points"]: [8, 5, 3]
    """
    structural = (c, max_sources, iterations, repair_iterations, polish_iterations, repair_directions)
    _check_options(sigma, noise_std, penalty, saturation, *structural)
    z = jnp.asarray(image)
    if z.ndim != 2 or z.shape[0] != z.shape[1] or z.shape[0] < 3:
        raise ValueError(f"image must have shape [size, size] with size >= 3, got {tuple(z.shape)}")
    if not jnp.issubdtype(z.dtype, jnp.floating):
        z = z.astype(jnp.float32)
    _checks.finite("image", z)
    _checks.saturation_warning("image", z, saturation)
    size = z.shape[-1]
    dtype = z.dtype
    # Python numbers become constants that XLA folds into the arithmetic (a division turns into a
    # multiplication, ...), which moves float rounding; behind a barrier they compile as the traced
    # values of ``fit_sources`` do, so both give the same result
    sigma, noise_std, penalty, saturation = (
        v if isinstance(v, jax.core.Tracer) else jax.lax.optimization_barrier(jnp.asarray(v, dtype))
        for v in (sigma, noise_std, penalty, saturation)
    )
    if hr_map is not None:
        hr_map = jnp.asarray(hr_map, dtype)
        if hr_map.shape != (size * c, size * c):
            raise ValueError(
                f"hr_map must have shape [{size * c}, {size * c}] (size*c, size*c), got {list(hr_map.shape)}"
            )
        _checks.finite("hr_map", hr_map)
    lm = functools.partial(fit.fit_one, image=z, sigma=sigma, saturation=saturation, damping=1e-2)
    variance = pixel_variance(z, noise_std)
    peak_fraction = psf.pixel_integrated_gaussian(jnp.zeros((), dtype), sigma) ** 2
    blank = jnp.sum(fit.censored_residual(jnp.zeros_like(z), z, saturation) ** 2)
    directions = jnp.asarray(_DIRECTIONS[:repair_directions], dtype)

    def keep_better(current, candidate):
        better = candidate[1] < current[1]
        return jax.tree.map(lambda b, a: jnp.where(better, b, a), candidate, current)

    def grow(carry, k, slots=max_sources, repair=True):
        # order k + 1 is fitted on the first ``slots`` slots (a smaller system for the low orders)
        theta, active = _insert(*carry, k, z, sigma, peak_fraction)
        part, on = theta[:slots], active[:slots]
        best = lm(part, on, iterations=iterations)[:2]
        if hr_map is not None:
            seeded = _map_peaks(hr_map, k + 1, c, size, max_sources)[:slots]
            best = keep_better(best, lm(seeded, on, iterations=iterations)[:2])
        if repair and repair_directions:
            # escape moves side by side (one vmapped fit)
            moved = jax.vmap(lambda d: _relocate(best[0], on, d))(directions)
            moved, moved_cost, _ = jax.vmap(lambda t: lm(t, on, iterations=repair_iterations))(moved)
            pick = jnp.argmin(moved_cost)
            best = keep_better(best, (moved[pick], moved_cost[pick]))
        theta = theta.at[:slots].set(best[0])
        return (theta, active), (theta, best[1])

    # order 1 has no local minimum to escape and a small system: unrolled; orders 2 and up share one
    # compiled step of a scan, escape moves included (a 2-source fit can also park a source on a faint spot)
    carry = (jnp.zeros((max_sources, 3), dtype), jnp.zeros((max_sources,), dtype))
    carry, (fit_1, cost_1) = grow(carry, 0, slots=1, repair=False)
    fits, costs = fit_1[None], cost_1[None]
    if max_sources > 1:
        _, (high_fits, high_costs) = jax.lax.scan(grow, carry, jnp.arange(1, max_sources))
        fits = jnp.concatenate([fits, high_fits])
        costs = jnp.concatenate([costs, high_costs])
    fits = jnp.concatenate([jnp.zeros((1, max_sources, 3), dtype), fits])
    costs = jnp.concatenate([blank[None], costs])
    # the two best orders are fitted further before the final choice: a not-yet-converged fit of the
    # true order would otherwise lose to one with a spurious extra source
    orders = jnp.arange(max_sources + 1)
    criterion = costs / variance + penalty * orders
    first = jnp.argmin(criterion)
    second = jnp.argmin(jnp.where(orders == first, jnp.inf, criterion))
    pair = jnp.stack([first, second])
    actives = (jnp.arange(max_sources)[None, :] < pair[:, None]).astype(dtype)
    thetas, final_costs, Hs = jax.vmap(lambda t, a: lm(t, a, iterations=polish_iterations))(
        fits[pair], actives
    )
    final = final_costs / variance + penalty * pair
    pick = jnp.argmin(final)
    theta, active, H, order = thetas[pick], actives[pick], Hs[pick], pair[pick]
    std, score = position_score(H, active, variance)
    return {
        "points": jnp.concatenate([theta[:, :2] * active[:, None], score[:, None]], axis=1),
        "count": order.astype(jnp.int32),
        "brightness": theta[:, 2] * active,
        "position_std": std,
        "cost": final_costs[pick] / variance,
    }


@functools.partial(jax.jit, static_argnames=(*_STRUCTURAL, "saturation"))
def _localize(
    images,
    hr_maps,
    sigma,
    noise_std,
    penalty,
    *,
    c,
    max_sources,
    iterations,
    repair_iterations,
    polish_iterations,
    repair_directions,
    saturation,
):
    one = functools.partial(
        localize_one,
        sigma=sigma,
        c=c,
        max_sources=max_sources,
        noise_std=noise_std,
        penalty=penalty,
        iterations=iterations,
        repair_iterations=repair_iterations,
        polish_iterations=polish_iterations,
        repair_directions=repair_directions,
        saturation=saturation,
    )
    if hr_maps is None:
        return jax.vmap(one)(images)
    return jax.vmap(one)(images, hr_maps)


def fit_sources(
    images: Float[Array, "n size size"],
    *,
    sigma: float = psf.DEFAULT_SIGMA,
    hr_maps: Float[Array, "n hr hr"] | None = None,
    c: int = 3,
    max_sources: int = 5,
    noise_std: float = 0.0,
    penalty: float = 10.0,
    iterations: int = 10,
    repair_iterations: int = 10,
    polish_iterations: int = 15,
    repair_directions: int = 2,
    saturation: float = sensor.SATURATION,
    batch_size: int = 4096,
) -> dict[str, Array]:
    """Fit point sources to each image: the full result behind ``localize``.

    Args:
      images: ``[n, size, size]`` stored images (uint8 or float on the 0..255 scale). Rounded images
        (every value an integer) are fitted with the quantisation variance ``1/12``.
      sigma: PSF width in pixels.
      hr_maps: optional ``[n, size*c, size*c]`` HR maps (a network's or ``csist_jax.solvers.fista``'s);
        their local maxima seed the fit of every model order besides the greedy start.
      c: the HR maps' up-sampling ratio.
      max_sources: the largest model order tried (``M``, the number of point slots).
      noise_std: standard deviation of additive read noise (grey levels), if any.
      penalty: model-order penalty per source, in units of the per-pixel residual variance.
      iterations, repair_iterations, polish_iterations: Levenberg-Marquardt steps per order, per
        local-minimum escape move, and for the chosen order.
      repair_directions: how many split directions (1..4) the escape move tries.
      saturation: the stored saturation level (pixels at it only bound the model from below). Frames
        with values above it (not stored on the 0..255 scale) get a ``SaturationWarning`` naming this
        option: pass ``saturation`` at least their largest value.
      batch_size: images per jitted call (bounds memory; chunks are equal, a multiple of 8, so a call
        compiles at most one shape).

    Returns:
      ``{"points": [n, M, 3] (x, y, score), "count": [n] int32, "brightness": [n, M] (fitted fluxes),
      "position_std": [n, M] (predicted position error, px), "cost": [n] (final weighted residual,
      in units of the per-pixel variance)}``; rows beyond ``count`` are zero.

    >>> from csist_jax.data import csist100k
    >>> data = csist100k.generate(seed=0, n=8)
    >>> result = fit_sources(data["image"])
    """
    structural = (c, max_sources, iterations, repair_iterations, polish_iterations, repair_directions)
    _check_options(sigma, noise_std, penalty, saturation, *structural)
    _checks.positive_int("batch_size", batch_size)
    images = np.asarray(images) if not isinstance(images, jax.Array) else images
    if images.ndim != 3 or images.shape[1] != images.shape[2]:
        raise ValueError(f"images must have shape [n, size, size], got {tuple(images.shape)}")
    size = images.shape[-1]
    if size < 3:
        raise ValueError(f"images must be at least 3 x 3, got {size} x {size}")
    _checks.finite("images", images)
    _checks.saturation_warning("images", images, saturation)
    if hr_maps is not None:
        hr_maps = np.asarray(hr_maps) if not isinstance(hr_maps, jax.Array) else hr_maps
        want = (images.shape[0], size * c, size * c)
        if tuple(hr_maps.shape) != want:
            raise ValueError(
                f"hr_maps must have shape {list(want)} (n, size*c, size*c), got {list(hr_maps.shape)}"
            )
        _checks.finite("hr_maps", hr_maps)
    static = dict(zip(_STRUCTURAL, structural), saturation=float(saturation))
    n = images.shape[0]
    if n == 0:
        return {
            "points": jnp.zeros((0, max_sources, 3), jnp.float32),
            "count": jnp.zeros((0,), jnp.int32),
            "brightness": jnp.zeros((0, max_sources), jnp.float32),
            "position_std": jnp.zeros((0, max_sources), jnp.float32),
            "cost": jnp.zeros((0,), jnp.float32),
        }
    # equal chunks (a multiple of 8) so that at most one shape is compiled per call
    chunks = -(-n // batch_size)
    chunk = -(-n // chunks // 8) * 8
    parts = []
    for lo in range(0, n, chunk):
        z = _pad(jnp.asarray(images[lo : lo + chunk], jnp.float32), chunk)
        s = None if hr_maps is None else _pad(jnp.asarray(hr_maps[lo : lo + chunk], jnp.float32), chunk)
        out = _localize(z, s, jnp.float32(sigma), jnp.float32(noise_std), jnp.float32(penalty), **static)
        keep = min(chunk, n - lo)
        parts.append(jax.tree.map(lambda x, keep=keep: x[:keep], out))
    return jax.tree.map(lambda *xs: jnp.concatenate(xs), *parts)


def localize(
    images: Float[Array, "n size size"],
    *,
    sigma: float = psf.DEFAULT_SIGMA,
    hr_maps: Float[Array, "n hr hr"] | None = None,
    c: int = 3,
    **options,
) -> tuple[Float[Array, "n m 3"], Int[Array, " n"]]:
    """Continuous detections ``(x, y, score)`` of the point targets in each image.

    ``localize(images)`` is ``fit_sources(images)``'s ``points`` and ``count``; every option of
    ``fit_sources`` (``max_sources``, ``noise_std``, ``penalty``, iteration counts, ...) is accepted.

    Args:
      images: ``[n, size, size]`` stored images (uint8 or float on the 0..255 scale).
      sigma: PSF width in pixels.
      hr_maps: optional ``[n, size*c, size*c]`` HR maps (any network's or the analytic solver's) whose
        local maxima seed the fit besides the greedy start.
      c: the HR maps' up-sampling ratio.

    Returns:
      ``points`` ``[n, M, 3]`` (rows ``(x, y, score)``, valid rows first, zeros after) and
      ``point_count`` ``[n]`` int32, ready for ``csist_jax.metrics.cso_map_from_points``.

    >>> from csist_jax.data import csist100k
    >>> data = csist100k.generate(seed=0, n=8)
    >>> points, point_count = localize(data["image"])
    """
    result = fit_sources(images, sigma=sigma, hr_maps=hr_maps, c=c, **options)
    return result["points"], result["count"]


def _pad(x, rows: int):
    return jnp.pad(x, ((0, rows - x.shape[0]),) + ((0, 0),) * (x.ndim - 1))
