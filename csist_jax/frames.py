r"""Whole sensor frames: ``unmix_frames(frames)`` -> every target of every frame, in frame coordinates.

A sensor frame (any ``H x W`` of at least 11 x 11) holds a background level, read noise and many blobs:
closely-spaced groups and isolated targets. The pipeline:

1. **The sensor** (:func:`sensor_background`, host): a plane per frame (the level and its gradient) fitted
   to robust levels of 32 x 32 tiles (the mean of each tile's 25-75 % quantiles: the blobs, a few pixels
   of a tile, do not move it); the read-noise std of the whole call by the maximum-likelihood fit of
   :func:`csist_jax.refine.estimate_noise` on the pixels away from every bright pixel, levelled by the
   plane. A given ``noise_std`` / ``background`` (a flat level) is used as is.
2. **Candidate groups** (:func:`detect_groups`, pure and jittable, a fixed ``max_candidates`` per frame):
   the frame less its background, correlated with the PSF (a matched filter normalised so that read noise
   gives a response of std ``noise_std``); local maxima of the response over 5 x 5 pixels above
   ``max(threshold * noise_std, min_response)`` grey levels (5 sigma: about 0.02 false candidates per
   256 x 256 frame of pure noise); greedy suppression of the weaker of two maxima closer than
   ``radius`` (2.5 px: one candidate per group, whose targets lie within about 1 px of each other).
3. **Windows** (:func:`crop_windows`, jittable): the 11 x 11 window centred on each candidate, shifted to
   stay inside the frame at its borders (the group then sits off the window's centre, as CSIST-100K's
   groups do: their centre pixels range over 2..8).
4. **Unmixing**: every window of the call through :func:`csist_jax.unmix` (the shipped networks and the
   polish for the noise level, the window's own background level removed).
5. **Merging** (:func:`merge_windows`, jittable): a detection is kept by the window whose candidate is
   nearest to it, so a group seen by several overlapping windows is reported once, by its own window;
   each frame's detections are sorted by score.

:func:`unmix_at` runs steps 3-5 from given group centres (e.g. the true ones: ``experiments/frames_table.py``
measures what detection and cropping cost against perfect windows).

>>> points, count = csist_jax.unmix_frames(frames)        # frames [n, H, W], uint8 or float 0..255
>>> points, count, details = csist_jax.unmix_frames(frames, return_details=True)
>>> details["brightness"], details["position_std"]       # [n, M] each
"""

from __future__ import annotations

import functools
import warnings

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float, Int
from tqdm.auto import tqdm

from csist_jax import _checks, unmixing
from csist_jax.physics import psf

#: the window size the shipped networks read
WINDOW = unmixing.SIZE
#: a candidate's response must reach this many noise stds (and at least ``MIN_RESPONSE``)
THRESHOLD = 5.0
#: the least response of a candidate on noise-free frames, grey levels (a target of brightness 220 gives
#: about 113)
MIN_RESPONSE = 8.0
#: of two candidates closer than this (px), the weaker is dropped
RADIUS = 2.5
#: a window is masked against its this many nearest candidates
NEIGHBOURS = 8
#: tile side of the background fit, px
TILE = 32
_HALF = WINDOW // 2
_KERNEL = 2  # the matched filter spans 2 px on each side


# ----------------------------------------------------------------------------------------------------
# the sensor


def _tile_levels(frames: np.ndarray, tile: int):
    """Robust level of each tile (mean of its 25-75 % quantiles) ``[n, t]``; tile centres ``[t, 2]``."""
    n, h, w = frames.shape
    th, tw = min(tile, h), min(tile, w)
    rows, cols = h // th, w // tw
    cut = frames[:, : rows * th, : cols * tw].reshape(n, rows, th, cols, tw).transpose(0, 1, 3, 2, 4)
    values = np.sort(cut.reshape(n, rows * cols, th * tw), axis=-1)
    lo, hi = values.shape[-1] // 4, max(values.shape[-1] // 4 + 1, (3 * values.shape[-1]) // 4)
    levels = values[..., lo:hi].mean(axis=-1)
    r = (np.arange(rows) + 0.5) * th - 0.5
    q = (np.arange(cols) + 0.5) * tw - 0.5
    centres = np.stack(np.meshgrid(r, q, indexing="ij"), axis=-1).reshape(-1, 2)
    return levels, centres


def _plane(levels: np.ndarray, centres: np.ndarray, h: int, w: int) -> np.ndarray:
    """Least-squares plane through the tile levels: ``[n, 3]`` (level at the frame centre, row and column
    slopes); a single tile row or column gives no slope along it."""
    offsets = centres - np.array([(h - 1) / 2, (w - 1) / 2])
    design = np.concatenate([np.ones((len(centres), 1)), offsets], axis=1)
    for axis in (0, 1):
        if np.ptp(offsets[:, axis]) == 0:
            design[:, 1 + axis] = 0.0
    coef, *_ = np.linalg.lstsq(design, levels.T, rcond=None)
    return coef.T


def background_map(plane, height: int, width: int) -> np.ndarray:
    """``[n, H, W]`` the background of a plane ``[n, 3]`` (level at the centre, row and column slopes)."""
    plane = np.asarray(plane, np.float64)
    r = np.arange(height) - (height - 1) / 2
    q = np.arange(width) - (width - 1) / 2
    return plane[:, 0, None, None] + plane[:, 1, None, None] * r[:, None] + plane[:, 2, None, None] * q


def sensor_background(frames, *, tile: int = TILE, noise_std=None, background=None) -> dict:
    """The background plane of each frame and the read noise of the call (module docstring, step 1).

    Returns ``{"plane": [n, 3] (level at the frame's centre, row slope, column slope; grey levels, per
    px), "noise_std": float, "mask": [n, H, W] bool (the pixels the noise was estimated from)}``.
    """
    from scipy import ndimage

    from csist_jax.refine.noise import estimate_noise

    frames = np.asarray(frames, np.float64)
    n, h, w = frames.shape
    if background is None:
        levels, centres = _tile_levels(frames, tile)
        plane = _plane(levels, centres, h, w)
    else:
        plane = np.zeros((n, 3))
        plane[:, 0] = _checks.nonnegative_scalar("background", background)
    residual = frames - background_map(plane, h, w)
    spread = 1.4826 * np.median(
        np.abs(residual - np.median(residual, axis=(1, 2), keepdims=True)), axis=(1, 2)
    )
    bright = residual > (5.0 * spread + 3.0)[:, None, None]
    mask = ~ndimage.maximum_filter(bright, size=(1, 7, 7))  # 3 px around every bright pixel left out
    if noise_std is None:
        # levelled to the mean level of each frame, so a gradient does not widen the histogram
        level = np.round(plane[:, 0])[:, None, None]
        levelled = frames - np.round(background_map(plane, h, w)) + level
        if not mask.any():
            raise ValueError("frames: no background pixel left to estimate the read noise from")
        noise = estimate_noise(np.clip(levelled, 0, 255), mask=mask)["noise_std"]
    else:
        noise = _checks.nonnegative_scalar("noise_std", noise_std)
    return {"plane": plane.astype(np.float32), "noise_std": float(noise), "mask": mask}


# ----------------------------------------------------------------------------------------------------
# the jittable cores


def _matched_profile(sigma) -> Array:
    """The 1-D factor of the matched filter: the PSF's pixel profile over 5 px, with unit norm (the 2-D
    filter, its outer product with itself, then has unit norm too)."""
    d = jnp.arange(-_KERNEL, _KERNEL + 1, dtype=jnp.float32)
    g = psf.pixel_integrated_gaussian(d, sigma)
    return g / jnp.linalg.norm(g)


def detect_groups(
    residual: Float[Array, "h w"],
    noise_std,
    *,
    sigma=psf.DEFAULT_SIGMA,
    threshold=THRESHOLD,
    min_response=MIN_RESPONSE,
    radius=RADIUS,
    max_candidates: int = 64,
) -> tuple[Int[Array, "k 2"], Bool[Array, " k"], Int[Array, ""]]:
    """Candidate group centres of one background-free frame (module docstring, step 2).

    Pure and jittable (``max_candidates`` static); vmap it over frames. Returns ``(centres [K, 2]`` int32
    pixel ``(row, column)`` by descending response, ``valid [K]``, ``found``: the local maxima above the
    threshold before the cap at ``K`` and the suppression; ``found > K`` means some were left out).
    """
    z = jnp.asarray(residual, jnp.float32)
    h, w = z.shape
    g = _matched_profile(sigma)
    # the PSF is separable: the matched filter is two 1-D correlations (shifted multiply-adds)
    padded = jnp.pad(z, _KERNEL)
    rows = sum(g[i] * padded[i : i + h, :] for i in range(2 * _KERNEL + 1))
    response = sum(g[j] * rows[:, j : j + w] for j in range(2 * _KERNEL + 1))
    local = jax.lax.reduce_window(response, -jnp.inf, jax.lax.max, (5, 1), (1, 1), "SAME")
    local = jax.lax.reduce_window(local, -jnp.inf, jax.lax.max, (1, 5), (1, 1), "SAME")
    level = jnp.maximum(threshold * noise_std, min_response)
    peak = (response >= local) & (response > level)
    scores = jnp.where(peak, response, -jnp.inf).reshape(-1)
    top, index = jax.lax.top_k(scores, max_candidates)
    valid = jnp.isfinite(top)
    centres = jnp.stack([index // w, index % w], axis=1).astype(jnp.int32)
    d = jnp.linalg.norm((centres[:, None, :] - centres[None, :, :]).astype(jnp.float32), axis=-1)
    close = d < radius

    def visit(i, keep):
        # the stronger candidates come first: keep i unless a kept one is within the radius
        beaten = jnp.any(keep & close[i] & (jnp.arange(max_candidates) < i))
        return keep.at[i].set(valid[i] & ~beaten)

    keep = jax.lax.fori_loop(0, max_candidates, visit, jnp.zeros((max_candidates,), bool))
    order = jnp.argsort(~keep, stable=True)  # kept candidates first, still by response
    return centres[order], keep[order], jnp.sum(peak).astype(jnp.int32)


def window_origins(centres: Int[Array, "... 2"], height: int, width: int) -> Int[Array, "... 2"]:
    """The top-left pixel of the 11 x 11 window of each centre: centred, shifted inside the frame."""
    top = jnp.array([height - WINDOW, width - WINDOW])
    return jnp.clip(centres - _HALF, 0, top).astype(jnp.int32)


def crop_windows(
    frame: Float[Array, "h w"],
    centres: Int[Array, "k 2"],
    valid: Bool[Array, " k"] | None = None,
    fill: Float[Array, " k"] | None = None,
) -> Float[Array, "k 11 11"]:
    """The 11 x 11 windows of ``centres`` (:func:`window_origins`) of one frame. Pure and jittable.

    With ``valid`` and ``fill``, each window shows its own group alone: a pixel nearer to another valid
    candidate (one of the ``NEIGHBOURS`` nearest) than to the window's own (and more than ``RADIUS`` px
    from its own) is set to the window's
    background level ``fill[k]``, so a neighbouring group that reaches into the window is not unmixed
    twice, nor mistaken for part of this one.
    """
    origins = window_origins(centres, *frame.shape)
    windows = jax.vmap(lambda o: jax.lax.dynamic_slice(frame, (o[0], o[1]), (WINDOW, WINDOW)))(origins)
    if valid is None or fill is None:
        return windows
    grid = jnp.stack(jnp.meshgrid(jnp.arange(WINDOW), jnp.arange(WINDOW), indexing="ij"), axis=-1)
    pixels = (origins[:, None, None, :] + grid[None]).astype(jnp.float32)  # [k, 11, 11, 2]
    c = centres.astype(jnp.float32)
    k = len(c)
    # each window looks at its NEIGHBOURS nearest valid candidates only (memory linear in k)
    between = jnp.linalg.norm(c[:, None, :] - c[None, :, :], axis=-1)
    between = jnp.where(valid[None, :] & ~jnp.eye(k, dtype=bool), between, jnp.inf)
    near, index = jax.lax.top_k(-between, min(NEIGHBOURS, k))  # [k, j]
    d = jnp.linalg.norm(pixels[:, :, :, None, :] - c[index][:, None, None, :, :], axis=-1)  # [k, 11, 11, j]
    other = jnp.min(jnp.where(jnp.isfinite(near)[:, None, None, :], d, jnp.inf), axis=-1)
    own = jnp.linalg.norm(pixels - c[:, None, None, :], axis=-1)
    foreign = (other < own) & (own > RADIUS)
    return jnp.where(foreign, jnp.asarray(fill, windows.dtype)[:, None, None], windows)


def merge_windows(
    points: Float[Array, "k m 3"],
    count: Int[Array, " k"],
    centres: Int[Array, "k 2"],
    valid: Bool[Array, " k"],
    extra: Float[Array, "k m e"] | None = None,
):
    """One frame's detections from its windows (module docstring, step 5). Pure and jittable.

    ``points`` are in frame coordinates (window rows ``(x, y, score)`` plus the window's origin). A
    detection is kept when its window is valid, it is within the window's ``count`` and none of the
    ``NEIGHBOURS`` valid candidates nearest to its window's is nearer to it than its own. Returns
    ``(points [K m, 3]`` sorted by score with the kept first, ``count``, ``extra [K m, e]`` in the same
    order, or None).
    """
    k, m, _ = points.shape
    slot = jnp.arange(m)[None, :] < count[:, None]
    c = centres.astype(points.dtype)
    # a window's detections are compared with its own candidate and its NEIGHBOURS nearest valid ones
    between = jnp.linalg.norm(c[:, None, :] - c[None, :, :], axis=-1)
    between = jnp.where(valid[None, :] & ~jnp.eye(k, dtype=bool), between, jnp.inf)
    near, index = jax.lax.top_k(-between, min(NEIGHBOURS, k - 1)) if k > 1 else (None, None)
    own_d = jnp.linalg.norm(points[..., :2] - c[:, None, :], axis=-1)  # [k, m]
    if index is None:
        own = jnp.ones((k, m), bool)
    else:
        d = jnp.linalg.norm(points[:, :, None, :2] - c[index][:, None, :, :], axis=-1)  # [k, m, j]
        d = jnp.where(jnp.isfinite(near)[:, None, :], d, jnp.inf)
        own = own_d <= jnp.min(d, axis=-1)
    keep = (slot & own & valid[:, None]).reshape(-1)
    flat = points.reshape(-1, 3)
    order = jnp.lexsort((-flat[:, 2], ~keep))  # kept first, then by descending score (stable)
    kept = keep[order]
    out = jnp.where(kept[:, None], flat[order], 0.0)
    total = jnp.sum(keep).astype(jnp.int32)
    if extra is None:
        return out, total, None
    e = extra.reshape(k * m, -1)[order]
    return out, total, jnp.where(kept[:, None], e, 0.0)


@functools.partial(
    jax.jit, static_argnames=("sigma", "threshold", "min_response", "radius", "max_candidates")
)
def _detect(frames, background, noise_std, *, sigma, threshold, min_response, radius, max_candidates):
    residual = frames - background
    detect = functools.partial(
        detect_groups,
        sigma=sigma,
        threshold=threshold,
        min_response=min_response,
        radius=radius,
        max_candidates=max_candidates,
    )
    return jax.vmap(detect, in_axes=(0, None))(residual, noise_std)


@jax.jit
def _crop(frames, centres, valid, fill):
    return jax.vmap(crop_windows)(frames, centres, valid, fill)


_merge = jax.jit(jax.vmap(merge_windows))


# ----------------------------------------------------------------------------------------------------
# host wrappers


def _check_frames(frames) -> np.ndarray:
    if isinstance(frames, (list, tuple)):
        shapes = sorted({tuple(np.shape(f)) for f in frames})
        if len(shapes) > 1:
            raise ValueError(
                f"frames of different sizes in one call: {shapes}; unmix_frames takes one size per call "
                "(call it once per size; `python -m csist_jax unmix` groups files by size)"
            )
    array = np.asarray(frames)
    if array.ndim != 3 or min(array.shape[1:]) < WINDOW:
        raise ValueError(
            f"frames must have shape [n, H, W] with H, W >= {WINDOW} (one size per call: group frames of "
            f"other sizes into their own calls), got {tuple(array.shape)}"
        )
    return unmixing._frames("frames", array, 3, "[n, H, W]", size=None)


def _bucket(n: int) -> int:
    """Windows per network call padded to a power of two (at least 64): few shapes compile."""
    return max(64, 1 << (max(n, 1) - 1).bit_length())


def unmix_at(
    frames,
    centres,
    valid,
    *,
    noise_std: float,
    plane,
    sigma: float = 0.5,
    method: str = "auto",
    batch_size: int = 2048,
):
    """Unmix the groups at ``centres`` ``[n, K, 2]`` (those with ``valid`` ``[n, K]``) of ``frames`` ``[n, H,
    W]`` whose background planes are ``plane`` ``[n, 3]`` (:func:`sensor_background`) and read noise
    ``noise_std``: steps 3-5 of the module docstring. Returns ``(points [n, M, 3], count [n], details)``
    with ``details["brightness"]``, ``details["position_std"]`` ``[n, M]``."""
    frames = np.asarray(frames, np.float32)
    n, h, w = frames.shape
    centres = np.asarray(centres, np.int32)
    valid = np.asarray(valid, bool)
    if (
        centres.ndim != 3
        or centres.shape[0] != n
        or centres.shape[2] != 2
        or valid.shape != centres.shape[:2]
    ):
        raise ValueError(
            f"centres must be [n, K, 2] and valid [n, K] for {n} frames, got {centres.shape}, {valid.shape}"
        )
    k = centres.shape[1]
    if n == 0 or k == 0:
        return np.zeros((n, 1, 3), np.float32), np.zeros((n,), np.int32), _empty_details(n)
    # each window's background: the plane at its centre pixel, rounded to a level (unmix removes it)
    offsets = np.asarray(plane, np.float64)
    centre_rc = np.asarray(window_origins(centres, h, w)) + _HALF
    level = offsets[:, None, 0] + offsets[:, None, 1] * (centre_rc[..., 0] - (h - 1) / 2)
    level = np.maximum(np.round(level + offsets[:, None, 2] * (centre_rc[..., 1] - (w - 1) / 2)), 0.0)
    windows = _crop(
        jnp.asarray(frames), jnp.asarray(centres), jnp.asarray(valid), jnp.asarray(level, jnp.float32)
    )
    windows = np.asarray(windows)  # [n, K, 11, 11]
    slots = 8 if unmixing._method(method, float(sigma), float(noise_std)) != "fit" else 5
    points = np.zeros((n, k, slots, 3), np.float32)
    extra = np.zeros((n, k, slots, 2), np.float32)
    count = np.zeros((n, k), np.int32)
    for value in np.unique(level[valid]):
        where = np.nonzero(valid & (level == value))
        batch = windows[where]
        padded = _bucket(len(batch))
        batch = np.concatenate([batch, np.full((padded - len(batch), WINDOW, WINDOW), value, np.float32)])
        run = functools.partial(
            unmixing.unmix,
            noise_std=noise_std,
            sigma=sigma,
            background=float(value),
            batch_size=batch_size,
            return_details=True,
        )
        p, c, info = run(batch, method=method)
        m = min(p.shape[1], slots)
        rows = len(where[0])
        found = [
            p[:rows, :m],
            np.minimum(c[:rows], m),
            info["brightness"][:rows, :m],
            info["position_std"][:rows, :m],
        ]
        empty = np.flatnonzero(found[1] == 0)
        if len(empty) and method != "fit":
            # a candidate is a >= 5 sigma source: where the network reports none, the fit finds it
            refit = windows[where][empty]
            size = 1 << (len(refit) - 1).bit_length()  # few: a power of two, not the network's 64
            refit = np.concatenate([refit, np.full((size - len(refit), WINDOW, WINDOW), value, np.float32)])
            q, d, more = run(refit, method="fit")
            j = min(q.shape[1], m)
            for array, new in zip(
                found, (q[:, :j], np.minimum(d, j), more["brightness"][:, :j], more["position_std"][:, :j])
            ):
                if array.ndim == 1:
                    array[empty] = new[: len(empty)]
                else:
                    array[empty] = 0.0
                    array[empty, :j] = new[: len(empty)]
        points[where[0], where[1], :m] = found[0]
        count[where] = found[1]
        extra[where[0], where[1], :m, 0] = found[2]
        extra[where[0], where[1], :m, 1] = found[3]
    origin = np.asarray(window_origins(centres, h, w), np.float32)
    points[..., :2] += origin[:, :, None, :]
    merged, total, merged_extra = _merge(
        jnp.asarray(points), jnp.asarray(count), jnp.asarray(centres), jnp.asarray(valid), jnp.asarray(extra)
    )
    total = np.asarray(total, np.int32)
    width = max(int(total.max()), 1)
    merged_extra = np.asarray(merged_extra)[:, :width]
    details = {"brightness": merged_extra[..., 0], "position_std": merged_extra[..., 1]}
    return np.asarray(merged)[:, :width], total, details


def _empty_details(n: int) -> dict:
    return {"brightness": np.zeros((n, 1), np.float32), "position_std": np.zeros((n, 1), np.float32)}


def _pad_to(x: np.ndarray, width: int) -> np.ndarray:
    return np.pad(x, [(0, 0), (0, width - x.shape[1])] + [(0, 0)] * (x.ndim - 2))


def unmix_frames(
    frames,
    *,
    noise_std: float | None = None,
    sigma: float = 0.5,
    method: str = "auto",
    background: float | None = None,
    threshold: float = THRESHOLD,
    max_candidates: int | None = None,
    chunk: int = 16,
    batch_size: int = 2048,
    return_details: bool = False,
    progress: bool = False,
):
    """Point targets in whole sensor frames: ``(points [n, M, 3] rows (x, y, score), count [n])``.

    Args:
      frames: ``[n, H, W]``, uint8 or float on the 0..255 scale, ``H, W >= 11``; frames of one size per
        call (call once per size).
      noise_std: the read-noise std, grey levels; None: estimated from the frames (once per call).
      sigma: the PSF width, px (the shipped networks know 0.5; another width runs the fit).
      method: as :func:`csist_jax.unmix` (``"auto"``: the best for the noise level).
      background: a flat background level for every frame, grey levels; None: a plane per frame,
        estimated (a flat level or a gentle gradient).
      threshold: candidates need a matched-filter response of ``threshold`` noise stds (module docstring).
      max_candidates: candidate groups per frame at most (None: ``H W / 512 + 16``, 144 for 256 x 256); a
        frame with more warns, naming the frame and the number found.
      chunk: frames per detection call (memory); batch_size: windows per network call.
      return_details: also return a dict: ``"brightness"``, ``"position_std"`` ``[n, M]``, ``"noise_std"``,
        ``"background"`` ``[n, 3]`` (the planes), ``"candidates"`` ``[n]`` (windows unmixed per frame),
        ``"method"``.
      progress: a progress bar over chunks.

    Returns ``points`` in frame coordinates (x the row, y the column, pixel centres at integers; rows
    beyond ``count`` zero) sorted by score, and ``count``: ready for
    :func:`csist_jax.metrics.frame_scores` and :func:`csist_jax.metrics.cso_map_from_points`.
    """
    frames = _check_frames(frames)
    n, h, w = frames.shape
    _checks.positive_scalar("sigma", sigma)
    _checks.positive_scalar("threshold", threshold)
    chunk = _checks.positive_int("chunk", chunk)
    max_candidates = (
        h * w // 256 + 16
        if max_candidates is None
        else _checks.positive_int("max_candidates", max_candidates)
    )
    if n == 0:
        points, count, details = np.zeros((0, 1, 3), np.float32), np.zeros((0,), np.int32), _empty_details(0)
        details.update(
            noise_std=float(noise_std or 0.0),
            background=np.zeros((0, 3), np.float32),
            candidates=np.zeros((0,), np.int32),
            method=method,
        )
        return (points, count, details) if return_details else (points, count)
    sensor = sensor_background(frames, noise_std=noise_std, background=background)
    noise, plane = sensor["noise_std"], sensor["plane"]
    chosen = unmixing._method(method, float(sigma), noise)
    chunk = min(chunk, 1 << (n - 1).bit_length())  # a power of two: few compiled shapes, small calls small
    parts = []
    candidates = np.zeros((n,), np.int32)
    for lo in tqdm(range(0, n, chunk), desc="unmix_frames", unit="chunk", disable=not progress):
        hi = min(n, lo + chunk)
        block = np.zeros((chunk, h, w), np.float32)  # one compiled shape: the last chunk padded
        block[: hi - lo] = frames[lo:hi]
        bg = np.zeros((chunk, h, w), np.float32)
        bg[: hi - lo] = background_map(plane[lo:hi], h, w)
        centres, valid, found = _detect(
            jnp.asarray(block),
            jnp.asarray(bg),
            jnp.float32(noise),
            sigma=float(sigma),
            threshold=float(threshold),
            min_response=MIN_RESPONSE,
            radius=RADIUS,
            max_candidates=max_candidates,
        )
        centres, valid, found = (np.asarray(x)[: hi - lo] for x in (centres, valid, found))
        for i in np.flatnonzero(found > max_candidates):
            warnings.warn(
                f"frames[{lo + i}]: {int(found[i])} local maxima above the threshold, more than "
                f"max_candidates={max_candidates}; the weakest were left out (raise max_candidates)",
                stacklevel=2,
            )
        candidates[lo:hi] = valid.sum(axis=1)
        parts.append(
            unmix_at(
                frames[lo:hi],
                centres,
                valid,
                noise_std=noise,
                plane=plane[lo:hi],
                sigma=sigma,
                method=chosen,
                batch_size=batch_size,
            )
        )
    width = max(p[0].shape[1] for p in parts)
    points = np.concatenate([_pad_to(p[0], width) for p in parts])
    count = np.concatenate([p[1] for p in parts])
    if not return_details:
        return points, count
    details = {
        key: np.concatenate([_pad_to(p[2][key], width) for p in parts])
        for key in ("brightness", "position_std")
    }
    details.update(noise_std=noise, background=plane, candidates=candidates, method=chosen)
    return points, count, details


__all__ = [
    "MIN_RESPONSE",
    "RADIUS",
    "THRESHOLD",
    "background_map",
    "crop_windows",
    "detect_groups",
    "merge_windows",
    "sensor_background",
    "unmix_at",
    "unmix_frames",
    "window_origins",
]
