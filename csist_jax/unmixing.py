r"""One call for users: ``unmix(images)`` / ``unmix_windows(windows)`` -> points and counts.

The library's best shipped method for the frames' noise level, behind one function:

1. **The sensor.** ``noise_std=None`` estimates the sensor's read noise from the frames
   (:func:`csist_jax.refine.estimate_noise`: a maximum-likelihood fit of the rounded, clipped Gaussian
   background, once per call); a given ``noise_std`` is used as is. A background offset (estimated the
   same way, or given as ``background``) is subtracted, so a sensor with an offset looks like the
   offset-free one the networks were trained on.
2. **Detection.** The noise-trained learned localiser shipped in ``csist_jax/checkpoints/``
   (single frames: ``localizer_noise_c3``; windows: ``window_localizer_noise_c3``, which also reads the
   neighbouring frames) gives the count and a start for every target, decoded by
   :func:`csist_jax.models.localizer.points`.
3. **Polish.** A short fit of those points through the sensor model (:func:`csist_jax.refine.polish`;
   windows: one joint fit over the window's frames with a common velocity) moves them to the
   likelihood's optimum and scores them by the fit's predicted position error times the detector's
   probability. The fit is kept where it explains the frame (its cost, in units of the pixel variance,
   within the gate of :func:`polish_gate`); elsewhere the full search refits the frame
   (:func:`csist_jax.refine.localize`) or the window (:func:`csist_jax.refine.localize_windows`).
   This is for (nearly) noise-free frames only: above ``POLISH_MAX_STD`` grey levels the polish costs
   accuracy (the network's estimate, which carries the prior over scenes, beats the fit's maximum
   likelihood, even a fit started from the truth: the noise table in ``docs/results.md``), so the
   detector's points are returned as they are.

``method`` picks one step of that chain instead: ``"learned"`` (detector only), ``"polish"`` (always
polish), ``"fit"`` (:func:`csist_jax.refine.localize` alone, the only method for a PSF width other than
the networks' ``sigma = 0.5``, chosen automatically then). Accuracy per noise level: README and
``docs/results.md`` (``python -m experiments.noise_table``).

>>> points, count = csist_jax.unmix(images)          # images [n, 11, 11], uint8 or float 0..255
>>> points, count = csist_jax.unmix_windows(windows)  # windows [n, T, 11, 11]: the centre frames
"""

from __future__ import annotations

import functools
import os

import jax
import jax.numpy as jnp
import numpy as np

from csist_jax import _checks

#: the shipped noise-trained networks (``csist_jax/checkpoints/``)
CHECKPOINT_DIR = os.path.join(os.path.dirname(__file__), "checkpoints")
FRAME_CHECKPOINT = "localizer_noise_c3"
WINDOW_CHECKPOINT = "window_localizer_noise_c3"
#: the PSF width the shipped networks were trained at
NETWORK_SIGMA = 0.5
#: the frame size the shipped networks read
SIZE = 11
#: the stored frames' top level (8-bit)
SATURATION = 255.0
#: the methods of :func:`unmix`
METHODS = ("auto", "learned", "polish", "fit")
#: above this read-noise std (grey levels) ``"auto"`` returns the learned points unpolished: the polish
#: helps on noise-free frames and costs accuracy from std 1 on (measured on validation frames, the
#: noise table in ``docs/results.md``)
POLISH_MAX_STD = 0.3


def polish_gate(noise_std: float, pixels: int = SIZE * SIZE, frames: int = 1) -> float:
    """The largest polish cost (units of the pixel variance) :func:`unmix` keeps, for a fit over
    ``frames`` frames of ``pixels`` pixels in all: on noise-free frames the gate of
    :data:`csist_jax.refine.polish.MAX_COST` per frame (a right window fit of 5 noise-free frames costs
    85 at the median, 135 at the 99th percentile, on 64 validation windows; a wrong count about 250);
    under read noise each pixel adds about 1 to a right fit's cost, so the gate is
    ``pixels + 4 sqrt(2 pixels)`` (chi-square, 4 sigma)."""
    from csist_jax.refine.polish import MAX_COST

    if noise_std <= 0:
        return MAX_COST * frames
    return float(pixels + 4.0 * np.sqrt(2.0 * pixels))


@functools.lru_cache(maxsize=4)
def load_network(name: str):
    """``(module, variables)`` of a shipped network of ``csist_jax/checkpoints/`` (cached)."""
    from csist_jax import models

    path = os.path.join(CHECKPOINT_DIR, name)
    if not os.path.isdir(path):
        raise FileNotFoundError(f"the shipped network {name!r} is missing: no directory {path}")
    return models.load_checkpoint(path)


@functools.lru_cache(maxsize=8)
def _apply(name: str):
    net, _ = load_network(name)
    return jax.jit(lambda variables, *inputs: net.decode(net.apply(variables, *inputs)))


def _frames(name: str, array, ndim: int, shape: str, size: int | None = SIZE):
    """``array`` checked: the documented shape (frames of ``size x size``; None: any size), finite, on the
    0..255 scale; as float32 numpy."""
    array = np.asarray(array)
    if array.ndim != ndim or (size is not None and array.shape[-2:] != (size, size)):
        raise ValueError(f"{name} must have shape {shape} ({size} x {size} frames), got {tuple(array.shape)}")
    if not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)):
        raise TypeError(f"{name} must be uint8 or float on the 0..255 scale, got dtype {array.dtype}")
    _checks.finite(name, array)
    if array.size and (array.min() < -0.5 or array.max() > 255.5):
        raise ValueError(
            f"{name} must be on the 0..255 scale of 8-bit frames, "
            f"got values in [{array.min()}, {array.max()}]"
            " (rescale the frames to grey levels first)"
        )
    return array.astype(np.float32)


def _sensor(frames: np.ndarray, noise_std, background) -> tuple[np.ndarray, float, float]:
    """``(frames with the background offset removed, read-noise std, background)``: each estimated from
    the frames (:func:`csist_jax.refine.estimate_noise`) when None, else checked and used as given."""
    if len(frames) == 0:
        return frames, float(noise_std or 0.0), float(background or 0.0)
    if noise_std is None or background is None:
        from csist_jax.refine.noise import estimate_noise

        estimate = estimate_noise(frames)
    std = estimate["noise_std"] if noise_std is None else _checks.nonnegative_scalar("noise_std", noise_std)
    offset = (
        estimate["background"] if background is None else _checks.nonnegative_scalar("background", background)
    )
    offset = float(np.round(max(offset, 0.0)))
    if offset:
        # a sensor with a background offset b stores round(clean + b + noise); minus the integer b and
        # clipped at 0, that is the frame of the same sensor without offset (what the networks learned)
        frames = np.clip(frames - offset, 0.0, 255.0)
    return frames, float(std), offset


def _method(method: str, sigma: float, noise: float) -> str:
    if method not in METHODS:
        raise ValueError(f"method must be one of {list(METHODS)}, got {method!r}")
    if method == "auto":
        if not np.isclose(sigma, NETWORK_SIGMA):
            return "fit"
        return "polish" if noise <= POLISH_MAX_STD else "learned"
    if method in ("learned", "polish") and not np.isclose(sigma, NETWORK_SIGMA):
        raise ValueError(
            f"method={method!r} runs the shipped networks, trained at sigma={NETWORK_SIGMA}; "
            f"got sigma={sigma} "
            "(use method='fit' or 'auto')"
        )
    return method


def _detect(name: str, inputs: tuple, batch_size: int) -> dict:
    net, variables = load_network(name)
    apply = _apply(name)
    n = inputs[0].shape[0]
    parts = []
    for lo in range(0, n, batch_size):
        chunk = [jnp.asarray(x[lo : lo + batch_size]) for x in inputs]
        rows = chunk[0].shape[0]
        if rows < batch_size and n > batch_size:  # one compiled shape: pad the last chunk
            chunk = [
                jnp.concatenate([x, jnp.zeros((batch_size - rows,) + x.shape[1:], x.dtype)]) for x in chunk
            ]
        out = apply(variables, *chunk)
        parts.append(jax.tree.map(lambda a, rows=rows: np.asarray(a)[:rows], out))
    return jax.tree.map(lambda *xs: np.concatenate(xs), *parts)


def _empty(m: int):
    return np.zeros((0, m, 3), np.float32), np.zeros((0,), np.int32)


def unmix(
    images,
    *,
    noise_std: float | None = None,
    sigma: float = 0.5,
    method: str = "auto",
    background: float | None = None,
    batch_size: int = 2048,
    return_details: bool = False,
):
    """Point targets in 11 x 11 frames: ``(points [n, M, 3] rows (x, y, score), count [n])``.

    Args:
      images: ``[n, 11, 11]`` frames, uint8 or float on the 0..255 scale (``n`` may be 0).
      noise_std: the sensor's read-noise std in grey levels; None: estimated from ``images``.
      sigma: the PSF width in pixels (the shipped networks know 0.5; another width runs the fit).
      method: ``"auto"`` (module docstring), ``"learned"``, ``"polish"`` or ``"fit"``.
      background: the sensor's background offset in grey levels, removed before unmixing (rounded to
        an integer level; the frames are then clipped at 0 again, which makes them frames of the same
        sensor without offset); None: estimated with the noise (0 for the released datasets).
      batch_size: frames per network call.
      return_details: also return a dict with ``"noise_std"`` and ``"background"`` (used), ``"method"``
        (run),
        ``"brightness"`` ``[n, M]`` and ``"position_std"`` ``[n, M]`` (px).

    Returns ``points`` (x the row, y the column, SPEC sec. 2; rows beyond ``count`` are zero) and
    ``count``, ready for :func:`csist_jax.metrics.cso_map_from_points`.
    """
    frames = _frames("images", images, 3, "[n, 11, 11]")
    _checks.positive_scalar("sigma", sigma)
    _checks.positive_int("batch_size", batch_size)
    frames, noise, offset = _sensor(frames, noise_std, background)
    saturation = SATURATION - offset  # the 255 of the stored frames, less the offset removed
    chosen = _method(method, float(sigma), noise)
    from csist_jax import refine

    if len(frames) == 0:
        points, count = _empty(5 if chosen == "fit" else 8)
        found = {
            "brightness": np.zeros(points.shape[:2], np.float32),
            "position_std": np.zeros(points.shape[:2]),
        }
    elif chosen == "fit":
        found = refine.fit_sources(frames, sigma=sigma, noise_std=noise, saturation=saturation)
    else:
        found = _detect(FRAME_CHECKPOINT, (frames,), batch_size)
        if chosen == "polish":
            found = refine.polish(
                frames,
                found,
                sigma=sigma,
                noise_std=noise,
                max_cost=polish_gate(noise),
                saturation=saturation,
                fallback=True,
            )
    if len(frames):
        points, count = np.asarray(found["points"], np.float32), np.asarray(found["count"], np.int32)
    if not return_details:
        return points, count
    details = {
        "noise_std": noise,
        "background": offset,
        "method": chosen,
        "brightness": np.asarray(found["brightness"], np.float32),
        "position_std": np.asarray(found["position_std"], np.float32),
    }
    return points, count, details


def unmix_windows(
    windows,
    *,
    noise_std: float | None = None,
    sigma: float = 0.5,
    method: str = "auto",
    background: float | None = None,
    batch_size: int = 1024,
    return_details: bool = False,
):
    """Point targets in the centre frames of windows of frames: ``(points [n, M, 3], count [n])``.

    Args:
      windows: ``[n, T, 11, 11]`` frames (``T`` odd; the shipped network reads ``T = 5``; other lengths
        run the fit), uint8 or float 0..255, e.g. ``csist_jax.data.seqcsist.windows(data)["image"]``.
      noise_std, sigma, method, background, batch_size, return_details: as :func:`unmix`; ``"fit"`` is
        :func:`csist_jax.refine.localize_windows` (the joint window fit, started from every frame).

    Returns the centre frames' ``points`` and ``count``.
    """
    frames = _frames("windows", windows, 4, "[n, T, 11, 11]")
    if frames.shape[1] % 2 == 0:
        raise ValueError(f"windows must have an odd number of frames, got {frames.shape[1]}")
    _checks.positive_scalar("sigma", sigma)
    _checks.positive_int("batch_size", batch_size)
    frames, noise, offset = _sensor(frames, noise_std, background)
    saturation = SATURATION - offset  # the 255 of the stored frames, less the offset removed
    chosen = _method(method, float(sigma), noise)
    net, _ = load_network(WINDOW_CHECKPOINT) if chosen != "fit" else (None, None)
    if chosen != "fit" and frames.shape[1] != 5:
        if method != "auto":
            raise ValueError(f"the shipped window network reads windows of 5 frames, got {frames.shape[1]}")
        chosen = "fit"
    from csist_jax import refine

    brightness = position_std = None
    if len(frames) == 0:
        points, count = _empty(5 if chosen == "fit" else 8)
    elif chosen == "fit":
        points, count, _ = refine.localize_windows(
            frames, sigma=sigma, noise_std=noise, saturation=saturation
        )
    else:
        centre = np.full((len(frames),), frames.shape[1] // 2, np.int32)
        found = _detect(WINDOW_CHECKPOINT, (frames, centre), batch_size)
        points, count = found["points"], found["count"]
        brightness, position_std = found["brightness"], found["position_std"]
        if chosen == "polish":
            gate = polish_gate(noise, frames[0].size, frames.shape[1])
            points, accepted = refine.polish_windows(
                frames, found, sigma=sigma, noise_std=noise, max_cost=gate, saturation=saturation
            )
            points, count = np.array(points, np.float32), np.array(count, np.int32)
            rejected = np.flatnonzero(~np.asarray(accepted))
            if len(rejected):  # the full window search where the detector's count does not explain the window
                refit, refit_count, _ = refine.localize_windows(
                    frames[rejected], sigma=sigma, noise_std=noise, saturation=saturation
                )
                slots = max(points.shape[1], refit.shape[1])
                points = np.pad(points, ((0, 0), (0, slots - points.shape[1]), (0, 0)))
                points[rejected] = np.pad(np.asarray(refit), ((0, 0), (0, slots - refit.shape[1]), (0, 0)))
                count[rejected] = np.asarray(refit_count)
    points, count = np.asarray(points, np.float32), np.asarray(count, np.int32)
    if not return_details:
        return points, count
    details = {"noise_std": noise, "background": offset, "method": chosen}
    if brightness is not None:
        details.update(brightness=np.asarray(brightness), position_std=np.asarray(position_std))
    return points, count, details


__all__ = ["METHODS", "POLISH_MAX_STD", "load_network", "polish_gate", "unmix", "unmix_windows"]
