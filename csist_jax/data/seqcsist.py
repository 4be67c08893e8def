"""SeqCSIST (multi-frame, SPEC sec. 5): a seeded, vectorised generator of trajectories and 5-frame windows.

A trajectory is ``n_frames`` (20) frames of one group of 2-4 targets following a moving reference point.
Every rule is a keyword argument of :func:`generate`; defaults are the published values, and where the
paper leaves a rule open (marked *chosen*) the default is this project's choice:

* reference start ``x0``: a uniform integer in ``x0_range`` (``[1, 9]``: not on the border of the
  11-pixel frame); ``y0 = f(x0)`` uniform in ``y0_range`` (``[2, 8]``, *chosen*);
* the reference moves ``step`` (0.04) px per frame along ``x``: ``+x`` if ``x0 < turn_x`` (5), else
  ``-x``; its ``y`` follows a random curve ``f`` through ``(x0, y0)`` (kinds and parameters *chosen*),
  with ``u = x - x0`` the signed displacement:

  - ``line`` (code 0): ``y = y0 + m u``, ``m ~ U(-max_slope, max_slope)``;
  - ``quadratic`` (code 1): ``y = y0 + m u + a u^2``, ``a ~ U(-max_curvature, max_curvature)``;
  - ``circle`` (code 2): radius ``R ~ U(radius_range)``, centre ``h ~ U(0, R - L)`` px ahead of ``x0``
    along the motion (``L = step (n_frames - 1)`` is the path length, so the path never reaches the
    vertical tangent), ``y = y0 + s (sqrt(R^2 - (|u| - h)^2) - sqrt(R^2 - h^2))`` with a random branch
    ``s = +-1``;

  the kind is drawn with probabilities ``curve_probs`` (equal);
* the target count is uniform in ``count_range`` (``{2, 3, 4}``), fixed along the trajectory;
* target ``k`` sits ``offset`` (0.3) px from the reference in its own direction (up = ``-x``, down =
  ``+x``, left = ``-y``, right = ``+y``; codes 0-3), the directions distinct and fixed along the
  trajectory, and drifts outwards: with ``drift_mode="rate"`` (default, *chosen*) at a constant rate
  ``U(drift_range)`` px/frame drawn once per target (``drift_range = [0, 0.0014]``); with
  ``drift_mode="steps"`` by a fresh ``U(drift_range)`` step every frame;
* brightness ``U(brightness_range)`` (``[220, 250]``) per target, fixed along the trajectory;
* frames are rendered with the pixel-integrated Gaussian PSF (``sigma`` = 0.5) and stored as the sensor
  would (:func:`csist_jax.physics.sensor.observe`: optional Gaussian read noise ``noise_std``, 0 as
  released, then 8-bit, rounded, saturated at 255).

Frame indices are 0-based here (the paper's frames 1-20 are 0-19). Trajectory ``i`` depends only on
``(seed, start + i)`` (key ``fold_in(PRNGKey(seed), start + i)``), so chunking and batching never change
the data; :data:`SPLIT_START` / :data:`SPLIT_SIZE` lay the published 3,500 / 750 / 750 trajectory split
over that stream. :func:`windows` cuts trajectories into the published samples: every run of ``length`` (5)
consecutive frames, predicting its centre frame, with the true centre-frame index carried along.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from csist_jax import _checks
from csist_jax.physics import psf, sensor

MAX_TARGETS = 4
N_FRAMES = 20
WINDOW = 5
#: first trajectory index of each split of the published 3,500 / 750 / 750 layout (one seeded stream)
SPLIT_START = {"train": 0, "val": 3_500, "test": 4_250}
#: trajectories in each split
SPLIT_SIZE = {"train": 3_500, "val": 750, "test": 750}
#: ``(dx, dy)`` of each direction code: up, down, left, right (``x`` is the row, so "up" is ``-x``).
DIRECTIONS = np.array([[-1.0, 0.0], [1.0, 0.0], [0.0, -1.0], [0.0, 1.0]], np.float32)
DIRECTION_NAMES = ("up", "down", "left", "right")
CURVE_NAMES = ("line", "quadratic", "circle")
_CHUNK = 2048


def _one_trajectory(key, p, *, size, n_frames):
    """One trajectory; ``p`` holds the protocol's numbers as traced values, so one compile serves all."""
    keys = jax.random.split(key, 12)
    x0 = jax.random.randint(keys[0], (), p["x0_range"][0], p["x0_range"][1] + 1).astype(jnp.float32)
    y0 = jax.random.uniform(keys[1], (), minval=p["y0_range"][0], maxval=p["y0_range"][1])
    sign = jnp.where(x0 < p["turn_x"], 1.0, -1.0)
    u = sign * p["step"] * jnp.arange(n_frames, dtype=jnp.float32)  # signed displacement along x

    kind = jax.random.choice(keys[2], len(CURVE_NAMES), p=p["curve_probs"])
    slope = jax.random.uniform(keys[3], (), minval=-p["max_slope"], maxval=p["max_slope"])
    curvature = jax.random.uniform(keys[4], (), minval=-p["max_curvature"], maxval=p["max_curvature"])
    radius = jax.random.uniform(keys[5], (), minval=p["radius_range"][0], maxval=p["radius_range"][1])
    path = p["step"] * (n_frames - 1)
    ahead = jax.random.uniform(keys[6], (), minval=0.0, maxval=radius - path)
    branch = jnp.where(jax.random.bernoulli(keys[7]), 1.0, -1.0)
    line = slope * u
    quadratic = slope * u + curvature * u**2
    circle = branch * (jnp.sqrt(radius**2 - (jnp.abs(u) - ahead) ** 2) - jnp.sqrt(radius**2 - ahead**2))
    dy = jnp.select([kind == 0, kind == 1], [line, quadratic], circle)
    reference = jnp.stack([x0 + u, y0 + dy], axis=-1)  # [T, 2]

    n = jax.random.randint(keys[8], (), p["count_range"][0], p["count_range"][1] + 1)
    valid = jnp.arange(MAX_TARGETS) < n
    direction = jax.random.permutation(keys[9], MAX_TARGETS)
    unit = jnp.asarray(DIRECTIONS)[direction]  # [K, 2]
    lo, hi = p["drift_range"][0], p["drift_range"][1]
    per_frame = jax.random.uniform(keys[10], (n_frames - 1, MAX_TARGETS), minval=lo, maxval=hi)
    # "rate": the first draw is each target's constant rate; "steps": a fresh draw every frame
    increments = jnp.where(p["steps"], per_frame, jnp.broadcast_to(per_frame[:1], per_frame.shape))
    drift = jnp.concatenate([jnp.zeros((1, MAX_TARGETS)), jnp.cumsum(increments, axis=0)], axis=0)
    distance = jnp.where(valid, p["offset"] + drift, 0.0)  # [T, K]
    position = reference[:, None, :] + distance[..., None] * unit[None]
    lo, hi = p["brightness_range"][0], p["brightness_range"][1]
    bright = jax.random.uniform(keys[11], (MAX_TARGETS,), minval=lo, maxval=hi)
    bright = jnp.where(valid, bright, 0.0)
    targets = jnp.concatenate(
        [
            jnp.where(valid[None, :, None], position, 0.0),
            jnp.broadcast_to(bright, (n_frames, MAX_TARGETS))[..., None],
        ],
        axis=-1,
    )
    clean = psf.render(targets, size, p["sigma"])
    return {
        "targets": targets,
        "count": n.astype(jnp.int32),
        "clean": clean,
        "reference": reference,
        "direction": jnp.where(valid, direction, -1).astype(jnp.int32),
        "distance": distance,
        "curve": kind.astype(jnp.int32),
    }


@functools.partial(jax.jit, static_argnames=("size", "n_frames"))
def _chunk(seed, indices, noise_std, params, size, n_frames):
    keys = jax.vmap(jax.random.fold_in, in_axes=(None, 0))(jax.random.PRNGKey(seed), indices)
    one = functools.partial(_one_trajectory, size=size, n_frames=n_frames)
    out = jax.vmap(one, in_axes=(0, None))(keys, params)
    # one sensor key per trajectory, drawing the noise of all its frames at once (as the generator always
    # has: noisy data sets made before stay reproducible)
    out["image"] = jax.vmap(functools.partial(sensor.observe, noise_std=noise_std))(keys, out["clean"])
    return out


def generate(
    seed: int,
    n_trajectories: int,
    *,
    start: int = 0,
    size: int = 11,
    sigma: float = psf.DEFAULT_SIGMA,
    n_frames: int = N_FRAMES,
    x0_range: tuple[int, int] = (1, 9),
    y0_range: tuple[float, float] = (2.0, 8.0),
    turn_x: float = 5.0,
    step: float = 0.04,
    curve_probs: tuple[float, float, float] = (1 / 3, 1 / 3, 1 / 3),
    max_slope: float = 1.0,
    max_curvature: float = 1.0,
    radius_range: tuple[float, float] = (1.0, 3.0),
    count_range: tuple[int, int] = (2, 4),
    offset: float = 0.3,
    drift_range: tuple[float, float] = (0.0, 0.0014),
    drift_mode: str = "rate",
    brightness_range: tuple[float, float] = (220.0, 250.0),
    noise_std: float = 0.0,
    return_clean: bool = False,
    progress: bool | None = None,
) -> dict[str, np.ndarray]:
    """Generate ``n_trajectories`` SeqCSIST trajectories (``start .. start + n_trajectories - 1``).

    Returns, with ``n = n_trajectories``, ``T = n_frames``, ``K = 4``:

    * ``image`` uint8 ``[n, T, size, size]`` (as stored);
    * ``targets`` float32 ``[n, T, K, 3]`` of ``(x, y, brightness)``, zero-padded beyond ``count``;
    * ``count`` int32 ``[n]`` (fixed along a trajectory);
    * ``trajectory`` int64 ``[n]``: the trajectory id ``start + i``;
    * ``reference`` float32 ``[n, T, 2]``: the reference point per frame;
    * ``direction`` int32 ``[n, K]``: each target's direction code (0 up, 1 down, 2 left, 3 right;
      -1 padding), see ``DIRECTIONS``;
    * ``distance`` float32 ``[n, T, K]``: each target's distance from the reference (``offset`` plus drift);
    * ``curve`` int32 ``[n]``: the curve kind (0 line, 1 quadratic, 2 circle), see ``CURVE_NAMES``;
    * with ``return_clean``, ``clean`` float32 ``[n, T, size, size]``: noise-free, unquantised frames.

    >>> data = generate(seed=0, n_trajectories=2)
    >>> data["image"].shape, data["targets"].shape, data["count"].shape
    ((2, 20, 11, 11), (2, 20, 4, 3), (2,))
    """
    n = _checks.positive_int("n_trajectories", n_trajectories, minimum=0)
    start = _checks.positive_int("start", start, minimum=0)
    size = _checks.positive_int("size", size)
    n_frames = _checks.positive_int("n_frames", n_frames, minimum=2)
    _checks.positive_scalar("sigma", sigma)
    _checks.positive_scalar("step", step)
    if not 0 <= x0_range[0] <= x0_range[1] < size:
        raise ValueError(f"x0_range must lie inside [0, {size - 1}], got {x0_range}")
    if not y0_range[0] <= y0_range[1]:
        raise ValueError(f"y0_range must be (low, high) with low <= high, got {y0_range}")
    if not 1 <= count_range[0] <= count_range[1] <= MAX_TARGETS:
        raise ValueError(f"count_range must satisfy 1 <= lo <= hi <= {MAX_TARGETS}, got {count_range}")
    probs = np.asarray(curve_probs, np.float64)
    if probs.shape != (len(CURVE_NAMES),) or np.any(probs < 0) or not np.isclose(probs.sum(), 1.0):
        raise ValueError(
            f"curve_probs must be 3 non-negative numbers summing to 1 (line, quadratic, circle), "
            f"got {curve_probs}"
        )
    path = step * (n_frames - 1)
    if not path < radius_range[0] <= radius_range[1]:
        raise ValueError(
            f"radius_range must satisfy step * (n_frames - 1) = {path:g} < low <= high, got {radius_range}"
        )
    if max_slope < 0 or max_curvature < 0:
        raise ValueError(f"max_slope and max_curvature must be >= 0, got {max_slope}, {max_curvature}")
    if offset < 0:
        raise ValueError(f"offset must be >= 0, got {offset}")
    if not 0 <= drift_range[0] <= drift_range[1]:
        raise ValueError(f"drift_range must be (low, high) with 0 <= low <= high, got {drift_range}")
    if drift_mode not in ("rate", "steps"):
        raise ValueError(f"drift_mode must be 'rate' or 'steps', got {drift_mode!r}")
    if not 0 <= brightness_range[0] <= brightness_range[1]:
        raise ValueError(
            f"brightness_range must be (low, high) with 0 <= low <= high, got {brightness_range}"
        )
    if noise_std < 0:
        raise ValueError(f"noise_std must be >= 0, got {noise_std}")
    f32 = functools.partial(jnp.asarray, dtype=jnp.float32)
    i32 = functools.partial(jnp.asarray, dtype=jnp.int32)
    params = {
        "sigma": f32(sigma),
        "x0_range": i32(x0_range),
        "y0_range": f32(y0_range),
        "turn_x": f32(turn_x),
        "step": f32(step),
        "curve_probs": f32(probs),
        "max_slope": f32(max_slope),
        "max_curvature": f32(max_curvature),
        "radius_range": f32(radius_range),
        "count_range": i32(count_range),
        "offset": f32(offset),
        "drift_range": f32(drift_range),
        "steps": jnp.asarray(drift_mode == "steps"),
        "brightness_range": f32(brightness_range),
    }
    shapes = {
        "image": ((n_frames, size, size), np.uint8),
        "targets": ((n_frames, MAX_TARGETS, 3), np.float32),
        "count": ((), np.int32),
        "reference": ((n_frames, 2), np.float32),
        "direction": ((MAX_TARGETS,), np.int32),
        "distance": ((n_frames, MAX_TARGETS), np.float32),
        "curve": ((), np.int32),
    }
    if return_clean:
        shapes["clean"] = ((n_frames, size, size), np.float32)
    parts = {name: [] for name in shapes}
    # one compiled shape for many sizes: the next power of two, at least 4, at most _CHUNK (each
    # sample depends on its index alone, so the extra ones are dropped; a single trajectory is computed
    # in the batch of four, so its float targets equal those of any longer call bit for bit, where a
    # batch of one compiled apart could differ from them by one float32 rounding, 5e-7 px)
    chunk = min(_CHUNK, max(4, 1 << (max(n, 1) - 1).bit_length()))
    show = progress if progress is not None else n > 4 * _CHUNK
    for lo in tqdm(range(0, n, chunk), desc="seqcsist", unit="chunk", disable=not show):
        idx = np.arange(start + lo, start + lo + chunk, dtype=np.int64)
        out = _chunk(seed, jnp.asarray(idx, jnp.uint32), float(noise_std), params, size, n_frames)
        keep = min(chunk, n - lo)
        for name in shapes:
            parts[name].append(np.asarray(out[name][:keep]))
    result = {
        name: np.concatenate(parts[name]).astype(dtype) if parts[name] else np.zeros((0,) + shape, dtype)
        for name, (shape, dtype) in shapes.items()
    }
    result["trajectory"] = np.arange(start, start + n, dtype=np.int64)
    return result


def window_starts(n_frames: int = N_FRAMES, length: int = WINDOW) -> np.ndarray:
    """First frame of every window of ``length`` consecutive frames: ``0 .. n_frames - length``."""
    n_frames = _checks.positive_int("n_frames", n_frames)
    length = _checks.positive_int("length", length)
    if length > n_frames:
        raise ValueError(f"length ({length}) must be <= n_frames ({n_frames})")
    return np.arange(n_frames - length + 1)


def window_frames(sample, n_frames: int = N_FRAMES, length: int = WINDOW):
    """The one windowing rule: sample ``i`` is window ``i mod W`` of trajectory ``i // W``
    (``W = n_frames - length + 1``, trajectory-major). Returns ``(trajectory, frames)``: the trajectory
    index (shape of ``sample``) and the frame indices ``[..., length]`` of the window; the centre frame is
    ``frames[..., length // 2]``. Works on numpy and JAX integer arrays alike (inside jitted steps too).
    """
    per = n_frames - length + 1
    trajectory, first = sample // per, sample % per
    return trajectory, first[..., None] + np.arange(length, dtype=np.int32)


def windows(data: dict[str, np.ndarray], length: int = WINDOW) -> dict[str, np.ndarray]:
    """Cut trajectories into every window of ``length`` consecutive frames, each predicting its centre.

    ``data`` is a :func:`generate` (or ``csist_jax.data.io.read_dir``) output with ``image``
    ``[n, T, H, W]``, ``targets`` ``[n, T, K, 3]`` and ``count`` ``[n]``. With ``W = T - length + 1``
    windows per trajectory (16 for the published ``T = 20``, ``length = 5``), trajectory-major, returns:

    * ``image`` uint8 ``[n W, length, H, W]``: frames ``s .. s + length - 1``;
    * ``targets`` float32 ``[n W, K, 3]`` and ``count`` int32 ``[n W]``: the centre frame's targets;
    * ``frame`` int32 ``[n W]``: the centre frame's index ``s + length // 2`` in its trajectory;
    * ``trajectory`` int64 ``[n W]``: the trajectory id (``data["trajectory"]``, else ``0 .. n-1``).
    """
    length = _checks.positive_int("length", length)
    if length % 2 == 0:
        raise ValueError(f"length must be odd (a window predicts its centre frame), got {length}")
    image = np.asarray(data["image"])
    targets = np.asarray(data["targets"])
    if image.ndim != 4:
        raise ValueError(f"data['image'] must be [n, frames, H, W] trajectories, got shape {image.shape}")
    n, n_frames = image.shape[:2]
    _checks.trailing_shape("data['targets']", targets, (n_frames, None, 3))
    n_windows = len(window_starts(n_frames, length))
    owner, frames = window_frames(np.arange(n * n_windows), n_frames, length)
    centre = frames[:, length // 2]
    trajectory = np.asarray(data.get("trajectory", np.arange(n)), np.int64)
    return {
        "image": image[owner[:, None], frames],
        "targets": targets[owner, centre].astype(np.float32),
        "count": np.asarray(data["count"], np.int32)[owner],
        "frame": centre.astype(np.int32),
        "trajectory": trajectory[owner],
    }
