"""CSIST-100K (single frame, SPEC sec. 4): a seeded, vectorised generator of the published protocol.

Every rule is a keyword argument whose default is the published (or, where marked *unknown*, the
early public generator's) value:

* a cluster pixel ``(X, Y)`` with ``X, Y`` uniform integers in ``cluster_range`` (``[2, 8]``);
* ``n = round(N(count_mean, count_std))`` clipped to ``count_range`` (``N(3, 1)``, ``[1, 5]``);
* each target uniform in ``[X + box[0], X + box[1]) x [Y + box[0], Y + box[1])`` (``[-0.4, 0.6)``);
* rejection sampling keeps every pair at least ``min_separation * rayleigh`` px apart
  (``0.52 * 1.9 sigma = 0.494 px``); a target that finds no valid spot in ``max_tries`` draws is dropped
  and the count records what was placed. The public generator draws from the whole box up to 100,000
  times; here the ``max_tries`` (128) draws come only from the cells of a 16 x 16 lattice over the box
  that can still hold a valid spot, so the first valid draw has the same distribution (uniform over the
  valid region) and a target is placed about as often (4.7 % of images end with five targets, as with
  100,000 plain draws);
* brightness uniform in ``brightness_range`` (``[220, 250]``);
* the image is rendered with the pixel-integrated Gaussian PSF (``sigma`` = 0.5) and stored as the
  sensor would (:func:`csist_jax.physics.sensor.observe`: optional Gaussian read noise ``noise_std``,
  then 8-bit, rounded, saturated at 255).

Image ``i`` depends only on ``(seed, start + i)`` (its key is ``fold_in(PRNGKey(seed), start + i)``, for
the scene and the sensor's noise alike), so any split into chunks or batches gives identical data.
:data:`SPLIT_START` / :data:`SPLIT_SIZE` lay the published 80,000 / 10,000 / 10,000 split over that
stream (train ``[0, 80000)``, val ``[80000, 90000)``, test ``[90000, 100000)`` of a seed); every split
user (training, tables, experiments) reads them from here.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from csist_jax import _checks
from csist_jax.physics import psf, sensor

MAX_TARGETS = 5
#: first image index of each split of the published 80,000 / 10,000 / 10,000 layout (one seeded stream)
SPLIT_START = {"train": 0, "val": 80_000, "test": 90_000}
#: images in each split
SPLIT_SIZE = {"train": 80_000, "val": 10_000, "test": 10_000}
_CHUNK = 8192
_LATTICE = 16  # cells per axis of the proposal lattice over the placement box


def _one_image(
    key,
    *,
    size,
    sigma,
    cluster_range,
    count_mean,
    count_std,
    count_range,
    box,
    min_distance,
    brightness_range,
    max_tries,
    max_targets,
):
    k_cluster, k_count, k_pos, k_bright = jax.random.split(key, 4)
    centre = jax.random.randint(k_cluster, (2,), cluster_range[0], cluster_range[1] + 1).astype(jnp.float32)
    n = jnp.clip(jnp.round(count_mean + count_std * jax.random.normal(k_count)), *count_range).astype(
        jnp.int32
    )
    slot_keys = jax.random.split(k_pos, max_targets)
    # the first target always fits (n >= 1); placing it directly keeps XLA from constant-folding a
    # search over an all-empty placement
    first = jax.random.uniform(slot_keys[0], (2,), minval=box[0], maxval=box[1]) + centre
    placed = jnp.zeros((max_targets, 2), jnp.float32).at[0].set(first)
    taken = jnp.zeros((max_targets,), bool).at[0].set(True)
    cell = (box[1] - box[0]) / _LATTICE
    ticks = box[0] + jnp.arange(_LATTICE) * cell
    corners = jnp.stack(jnp.meshgrid(ticks, ticks, indexing="ij"), axis=-1).reshape(-1, 2) + centre
    reach = min_distance - cell * np.sqrt(0.5)  # a cell whose centre is closer than this holds no valid spot
    for k in range(1, max_targets):
        # Rejection sampling, proposing only from the lattice cells that may hold a valid spot (every
        # valid spot lies in one). The proposal is uniform over those cells, so the first valid draw is
        # uniform over the valid region, as when drawing from the whole box until one is valid, with far
        # fewer rejections. The target is dropped when no cell qualifies or all `max_tries` draws fail.
        near = jnp.linalg.norm(corners[:, None, :] + 0.5 * cell - placed[None, :, :], axis=-1)
        candidate = jnp.all((near >= reach) | ~taken[None, :], axis=1)
        cdf = jnp.cumsum(candidate)
        k_cell, k_jitter = jax.random.split(slot_keys[k])
        pick = jax.random.uniform(k_cell, (max_tries,)) * cdf[-1]
        index = jnp.minimum(jnp.searchsorted(cdf, pick, side="right", method="scan"), cdf.shape[0] - 1)
        cand = corners[index] + cell * jax.random.uniform(k_jitter, (max_tries, 2))
        dist = jnp.linalg.norm(cand[:, None, :] - placed[None, :, :], axis=-1)
        ok = jnp.all((dist >= min_distance) | ~taken[None, :], axis=1)
        hit = jnp.argmax(ok)
        accept = ok[hit] & (k < n) & (cdf[-1] > 0)
        spot = cand[hit]
        slot = jnp.sum(taken)  # keep placed targets contiguous at the front
        placed = jnp.where(accept, placed.at[slot].set(spot), placed)
        taken = jnp.where(accept, taken.at[slot].set(True), taken)
    bright = jax.random.uniform(
        k_bright, (max_targets,), minval=brightness_range[0], maxval=brightness_range[1]
    )
    bright = jnp.where(taken, bright, 0.0)
    targets = jnp.concatenate([jnp.where(taken[:, None], placed, 0.0), bright[:, None]], axis=1)
    clean = psf.render(targets, size, sigma)
    return targets, jnp.sum(taken).astype(jnp.int32), clean


@functools.partial(jax.jit, static_argnames=("protocol",))
def _chunk(seed, indices, noise_std, protocol):
    keys = jax.vmap(jax.random.fold_in, in_axes=(None, 0))(jax.random.PRNGKey(seed), indices)
    targets, count, clean = jax.vmap(functools.partial(_one_image, **dict(protocol)))(keys)
    image = jax.vmap(functools.partial(sensor.observe, noise_std=noise_std))(keys, clean)
    return targets, count, clean, image


def blob_protocol(
    *,
    sigma,
    count_mean,
    count_std,
    count_range,
    box,
    min_separation,
    rayleigh,
    brightness_range,
    max_tries,
) -> tuple:
    """The rules of one blob (the keyword arguments of :func:`generate` but the crop's ``size`` and
    ``cluster_range``), checked, as a hashable tuple of ``(name, value)`` for the jitted generators (this
    module's and :mod:`csist_jax.data.scenes`)."""
    _checks.positive_scalar("sigma", sigma)
    max_tries = _checks.positive_int("max_tries", max_tries)
    if not 1 <= count_range[0] <= count_range[1] <= MAX_TARGETS:
        raise ValueError(f"count_range must satisfy 1 <= lo <= hi <= {MAX_TARGETS}, got {count_range}")
    if not box[0] < box[1]:
        raise ValueError(f"box must be (low, high) with low < high, got {box}")
    if not 0 <= brightness_range[0] <= brightness_range[1]:
        raise ValueError(
            f"brightness_range must be (low, high) with 0 <= low <= high, got {brightness_range}"
        )
    return (
        ("sigma", float(sigma)),
        ("count_mean", float(count_mean)),
        ("count_std", float(count_std)),
        ("count_range", tuple(int(v) for v in count_range)),
        ("box", tuple(float(v) for v in box)),
        ("min_distance", float(min_separation * rayleigh * sigma)),
        ("brightness_range", tuple(float(v) for v in brightness_range)),
        ("max_tries", max_tries),
        ("max_targets", MAX_TARGETS),
    )


def generate(
    seed: int,
    n: int,
    *,
    start: int = 0,
    size: int = 11,
    sigma: float = psf.DEFAULT_SIGMA,
    cluster_range: tuple[int, int] = (2, 8),
    count_mean: float = 3.0,
    count_std: float = 1.0,
    count_range: tuple[int, int] = (1, 5),
    box: tuple[float, float] = (-0.4, 0.6),
    min_separation: float = 0.52,
    rayleigh: float = 1.9,
    brightness_range: tuple[float, float] = (220.0, 250.0),
    max_tries: int = 128,
    noise_std: float = 0.0,
    return_clean: bool = False,
    progress: bool | None = None,
) -> dict[str, np.ndarray]:
    """Generate ``n`` CSIST-100K-protocol images with seed ``seed`` (images ``start .. start+n-1``).

    Returns ``image`` uint8 ``[n, size, size]`` (as stored), ``targets`` float32 ``[n, 5, 3]`` of
    ``(x, y, brightness)`` zero-padded, ``count`` int32 ``[n]``, and with ``return_clean`` the float32
    noise-free, unquantised ``clean`` images.

    >>> data = generate(seed=0, n=4)
    >>> data["image"].shape, data["targets"].shape, data["count"].shape
    ((4, 11, 11), (4, 5, 3), (4,))
    """
    n = _checks.positive_int("n", n, minimum=0)
    start = _checks.positive_int("start", start, minimum=0)
    size = _checks.positive_int("size", size)
    if not (0 <= cluster_range[0] <= cluster_range[1] < size):
        raise ValueError(f"cluster_range must lie inside [0, {size - 1}], got {cluster_range}")
    if noise_std < 0:
        raise ValueError(f"noise_std must be >= 0, got {noise_std}")
    blob = blob_protocol(
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
    protocol = (("size", size), ("cluster_range", tuple(int(v) for v in cluster_range))) + blob
    out = {"image": [], "targets": [], "count": [], "clean": []}
    # one compiled shape for many sizes: the next power of two, at least 64, at most _CHUNK (each
    # sample depends on its index alone, so the extra ones are dropped and nothing else changes)
    chunk = min(_CHUNK, max(64, 1 << (max(n, 1) - 1).bit_length()))
    show = progress if progress is not None else n > 4 * _CHUNK
    for lo in tqdm(range(0, n, chunk), desc="csist100k", unit="chunk", disable=not show):
        idx = np.arange(start + lo, start + lo + chunk, dtype=np.int64)
        t, c, clean, img = _chunk(seed, jnp.asarray(idx, jnp.uint32), float(noise_std), protocol)
        keep = min(chunk, n - lo)
        out["targets"].append(np.asarray(t[:keep]))
        out["count"].append(np.asarray(c[:keep]))
        out["image"].append(np.asarray(img[:keep]))
        if return_clean:
            out["clean"].append(np.asarray(clean[:keep]))
    result = {
        "image": _cat(out["image"], (0, size, size), np.uint8),
        "targets": _cat(out["targets"], (0, MAX_TARGETS, 3), np.float32),
        "count": _cat(out["count"], (0,), np.int32),
    }
    if return_clean:
        result["clean"] = _cat(out["clean"], (0, size, size), np.float32)
    return result


def _cat(parts, empty_shape, dtype):
    return np.concatenate(parts).astype(dtype) if parts else np.zeros(empty_shape, dtype)
