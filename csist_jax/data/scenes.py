"""Whole sensor frames: a seeded, vectorised generator of ``H x W`` scenes of closely-spaced groups.

A frame of a staring infrared sensor holds several closely-spaced target groups and isolated targets on a
background level, under read noise. Each frame here is drawn as:

* ``round(density * H * W / 10,000)`` **groups** and ``round(isolated_density * H * W / 10,000)``
  **isolated targets** (densities per 100 x 100 px), their centre pixels uniform integers at least
  ``margin`` pixels inside the frame and at least ``min_group_distance`` px from each other (greedy
  rejection over ``16 x`` as many proposals; a frame too small for them all keeps those that fit, and
  ``group_count`` records how many);
* each group is a CSIST-100K blob (:mod:`csist_jax.data.csist100k`, the same keyword arguments and
  defaults): ``round(N(3, 1))`` clipped to ``[1, 5]`` targets uniform in ``[X - 0.4, X + 0.6)^2`` around
  its centre pixel ``X``, at least ``0.52`` Rayleigh units apart, brightness uniform in ``[220, 250]``;
  an isolated target is a blob of one;
* a **background** ``background + slope . (r - r0, q - q0)`` grey levels (``r0, q0`` the frame's centre):
  flat by default; ``gradient > 0`` tilts it by ``gradient`` grey levels per pixel in a uniform random
  direction per frame;
* the sensor (:func:`csist_jax.physics.sensor.observe`): read noise ``N(0, noise_std^2)``, rounding,
  8-bit saturation.

Frame ``i`` depends only on ``(seed, start + i)`` (its key is ``fold_in(PRNGKey(seed), start + i)``), so
chunking never changes the data. Coordinates are the library's (SPEC sec. 2): ``x`` the row, pixel
centres at integers, here over the whole frame.

>>> scenes = generate(seed=0, n=2, height=64, width=96, noise_std=2.0)
>>> scenes["image"].shape, scenes["targets"].shape[-1]
((2, 64, 96), 3)
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from csist_jax import _checks
from csist_jax.data import csist100k
from csist_jax.physics import psf, sensor

#: targets in one group at most (CSIST-100K's five)
MAX_GROUP_TARGETS = csist100k.MAX_TARGETS
#: the area unit of the densities, px^2 (a 100 x 100 patch)
DENSITY_AREA = 10_000
_PROPOSALS = 16  # centre proposals per slot
_CROP = 11  # a blob is drawn as in an 11 x 11 CSIST-100K crop around pixel (_MID, _MID), then moved
_MID = 5
_PIXELS_PER_CALL = 1 << 22  # frames per jitted call: at most this many pixels
_FRAMES_PER_CALL = 16


def render(targets, height: int, width: int, sigma=psf.DEFAULT_SIGMA):
    """The noise-free ``[..., height, width]`` image of point targets ``[..., K, 3]`` of ``(x, y,
    brightness)`` in frame coordinates (padding rows: brightness 0): :func:`csist_jax.physics.render` on a
    rectangle. Differentiable; any leading batch shape."""
    _checks.trailing_shape("targets", targets, (None, 3))
    targets = jnp.asarray(targets, jnp.float32)
    rows = jnp.arange(height, dtype=jnp.float32)
    cols = jnp.arange(width, dtype=jnp.float32)
    gx = psf.pixel_integrated_gaussian(rows - targets[..., 0:1], sigma)  # [..., K, H]
    gy = psf.pixel_integrated_gaussian(cols - targets[..., 1:2], sigma)
    return jnp.einsum("...k,...kr,...kq->...rq", targets[..., 2], gx, gy)


def slots(height: int, width: int, density: float, isolated_density: float) -> tuple[int, int]:
    """``(groups, isolated)``: the number of each drawn on an ``height x width`` frame."""
    area = height * width / DENSITY_AREA
    return int(round(density * area)), int(round(isolated_density * area))


def _centres(key, height, width, n_slots, margin, min_distance):
    """Greedy rejection: up to ``n_slots`` integer centres ``min_distance`` apart; ``(centres, taken)``."""
    n_prop = _PROPOSALS * n_slots
    kr, kq = jax.random.split(key)
    rows = jax.random.randint(kr, (n_prop,), margin, height - margin)
    cols = jax.random.randint(kq, (n_prop,), margin, width - margin)
    proposals = jnp.stack([rows, cols], axis=1).astype(jnp.float32)

    def visit(i, state):
        placed, taken = state
        d = jnp.linalg.norm(placed - proposals[i], axis=1)
        ok = jnp.all((d >= min_distance) | ~taken) & (jnp.sum(taken) < n_slots)
        slot = jnp.sum(taken)
        placed = jnp.where(ok, placed.at[slot].set(proposals[i]), placed)
        taken = jnp.where(ok, taken.at[slot].set(True), taken)
        return placed, taken

    init = (jnp.zeros((n_slots, 2), jnp.float32), jnp.zeros((n_slots,), bool))
    return jax.lax.fori_loop(0, n_prop, visit, init)


def _one_frame(
    key,
    *,
    height,
    width,
    groups,
    isolated,
    margin,
    min_distance,
    noise_std,
    background,
    gradient,
    protocol,
):
    n_slots = groups + isolated
    k_place, k_blob, k_slope, k_sensor = jax.random.split(key, 4)
    centres, taken = _centres(k_place, height, width, n_slots, margin, min_distance)
    blob_keys = jax.random.split(k_blob, n_slots)
    blob = functools.partial(csist100k._one_image, size=_CROP, cluster_range=(_MID, _MID), **protocol)
    targets, size, _ = jax.vmap(blob)(blob_keys)  # [slots, 5, 3] in crop coordinates
    # an isolated target is a blob's first target (uniform in the box whatever the blob's count)
    size = jnp.where(jnp.arange(n_slots) < groups, size, 1) * taken
    shift = jnp.concatenate([centres - _MID, jnp.zeros((n_slots, 1))], axis=1)
    live = (jnp.arange(MAX_GROUP_TARGETS)[None, :] < size[:, None]) & taken[:, None]
    targets = jnp.where(live[..., None], targets + shift[:, None, :], 0.0)
    member = jnp.where(live, jnp.arange(n_slots)[:, None], -1)
    # valid targets first, in slot order (a stable sort on "is padding")
    flat_t, flat_m = targets.reshape(-1, 3), member.reshape(-1)
    order = jnp.argsort(flat_m < 0, stable=True)
    flat_t, flat_m = flat_t[order], flat_m[order]
    clean = render(flat_t, height, width, protocol["sigma"])
    rows = jnp.arange(height, dtype=jnp.float32)
    cols = jnp.arange(width, dtype=jnp.float32)
    angle = jax.random.uniform(k_slope, (), minval=0.0, maxval=2 * jnp.pi)
    slope = gradient * jnp.stack([jnp.cos(angle), jnp.sin(angle)])
    level = (
        background
        + slope[0] * (rows[:, None] - (height - 1) / 2)
        + slope[1] * (cols[None, :] - (width - 1) / 2)
    )
    image = sensor.observe(k_sensor, clean + level, noise_std=noise_std)
    plane = jnp.stack([jnp.asarray(background, jnp.float32), slope[0], slope[1]])
    return {
        "image": image,
        "targets": flat_t,
        "count": jnp.sum(flat_m >= 0).astype(jnp.int32),
        "group": flat_m.astype(jnp.int32),
        "centres": centres.astype(jnp.int32),
        "group_size": size.astype(jnp.int32),
        "group_count": jnp.sum(taken).astype(jnp.int32),
        "background": plane,
        "clean": clean,
    }


@functools.partial(jax.jit, static_argnames=("options", "protocol"))
def _chunk(seed, indices, noise_std, background, gradient, options, protocol):
    keys = jax.vmap(jax.random.fold_in, in_axes=(None, 0))(jax.random.PRNGKey(seed), indices)
    one = functools.partial(
        _one_frame,
        noise_std=noise_std,
        background=background,
        gradient=gradient,
        protocol=dict(protocol),
        **dict(options),
    )
    return jax.vmap(one)(keys)


def generate(
    seed: int,
    n: int,
    *,
    height: int = 256,
    width: int = 256,
    density: float = 1.0,
    isolated_density: float = 0.5,
    min_group_distance: float = 5.0,
    margin: int = 2,
    background: float = 20.0,
    gradient: float = 0.0,
    noise_std: float = 0.0,
    start: int = 0,
    sigma: float = psf.DEFAULT_SIGMA,
    count_mean: float = 3.0,
    count_std: float = 1.0,
    count_range: tuple[int, int] = (1, 5),
    box: tuple[float, float] = (-0.4, 0.6),
    min_separation: float = 0.52,
    rayleigh: float = 1.9,
    brightness_range: tuple[float, float] = (220.0, 250.0),
    max_tries: int = 128,
    return_clean: bool = False,
    progress: bool | None = None,
) -> dict[str, np.ndarray]:
    """``n`` frames of ``height x width`` pixels (module docstring), frames ``start .. start + n - 1``.

    Args:
      density, isolated_density: groups and isolated targets per 100 x 100 px.
      min_group_distance: least distance between two centre pixels, px (an 11 x 11 window is 11 px wide:
        the default 5 lets neighbouring groups share windows).
      margin: least distance of a centre pixel from the frame's edge, px (2: a group's targets stay at
        least 1.6 px inside, as CSIST-100K keeps them inside its crops).
      background: the background level at the frame's centre, grey levels; ``gradient``: its slope in grey
        levels per pixel (random direction per frame).
      noise_std: read-noise std, grey levels.
      the rest: the CSIST-100K blob protocol (:func:`csist_jax.data.csist100k.generate`).

    Returns numpy arrays: ``image`` uint8 ``[n, H, W]``; ``targets`` float32 ``[n, K, 3]`` of
    ``(x, y, brightness)`` in frame coordinates, the first ``count[i]`` rows real, the rest zero;
    ``count`` int32 ``[n]``; ``group`` int32 ``[n, K]``, the group (slot) of each target (-1: padding);
    ``centres`` int32 ``[n, S, 2]`` the slots' centre pixels, ``group_size`` int32 ``[n, S]`` (0: slot
    not placed), ``group_count`` int32 ``[n]`` placed slots (the first ``groups`` slots are groups, the
    rest isolated targets); ``background`` float32 ``[n, 3]``: level, row slope, column slope; with
    ``return_clean`` the noise-free, unquantised ``clean`` targets' image (no background).
    """
    n = _checks.positive_int("n", n, minimum=0)
    start = _checks.positive_int("start", start, minimum=0)
    height = _checks.positive_int("height", height, minimum=11)
    width = _checks.positive_int("width", width, minimum=11)
    margin = _checks.positive_int("margin", margin, minimum=0)
    if 2 * margin >= min(height, width):
        raise ValueError(f"margin={margin} leaves no room for a centre in a {height} x {width} frame")
    for name, value in (("density", density), ("isolated_density", isolated_density)):
        _checks.nonnegative_scalar(name, value)
    _checks.nonnegative_scalar("min_group_distance", min_group_distance)
    _checks.nonnegative_scalar("background", background)
    _checks.nonnegative_scalar("gradient", gradient)
    _checks.nonnegative_scalar("noise_std", noise_std)
    groups, isolated = slots(height, width, float(density), float(isolated_density))
    if groups + isolated == 0:
        raise ValueError(
            f"density={density} and isolated_density={isolated_density} give no target on a "
            f"{height} x {width} frame"
        )
    protocol = csist100k.blob_protocol(
        sigma=sigma,
        count_mean=count_mean,
        count_std=count_std,
        count_range=count_range,
        box=box,
        min_separation=min_separation,
        rayleigh=rayleigh,
        brightness_range=brightness_range,
        max_tries=max_tries,
    )
    options = (
        ("height", height),
        ("width", width),
        ("groups", groups),
        ("isolated", isolated),
        ("margin", margin),
        ("min_distance", float(min_group_distance)),
    )
    # one compiled shape per frame size: a fixed number of frames per call (the last call padded)
    per_call = max(1, min(_FRAMES_PER_CALL, _PIXELS_PER_CALL // (height * width)))
    show = progress if progress is not None else n > 4 * per_call
    parts = []
    for lo in tqdm(range(0, n, per_call), desc="scenes", unit="chunk", disable=not show):
        idx = jnp.asarray(np.arange(start + lo, start + lo + per_call), jnp.uint32)
        out = _chunk(
            seed,
            idx,
            float(noise_std),
            float(background),
            float(gradient),
            options,
            protocol,
        )
        keep = min(per_call, n - lo)
        parts.append({k: np.asarray(v[:keep]) for k, v in out.items() if return_clean or k != "clean"})
    if not parts:
        s, k = groups + isolated, MAX_GROUP_TARGETS * (groups + isolated)
        empty = {
            "image": np.zeros((0, height, width), np.uint8),
            "targets": np.zeros((0, k, 3), np.float32),
            "count": np.zeros((0,), np.int32),
            "group": np.zeros((0, k), np.int32),
            "centres": np.zeros((0, s, 2), np.int32),
            "group_size": np.zeros((0, s), np.int32),
            "group_count": np.zeros((0,), np.int32),
            "background": np.zeros((0, 3), np.float32),
        }
        if return_clean:
            empty["clean"] = np.zeros((0, height, width), np.float32)
        return empty
    result = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    result["image"] = result["image"].astype(np.uint8)
    result["targets"] = result["targets"].astype(np.float32)
    result["background"] = result["background"].astype(np.float32)
    return result


__all__ = ["DENSITY_AREA", "MAX_GROUP_TARGETS", "generate", "render", "slots"]
