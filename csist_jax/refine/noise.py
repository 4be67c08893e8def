r"""The read noise of a sensor, estimated from its frames: ``estimate_noise(frames)``.

A frame of the sensor model (``physics.sensor.observe``) is ``clip(round(clean + b + N(0, s^2)), 0, 255)``.
Far from the blob the clean image is 0 (the pixel-integrated PSF of width 0.5 px puts under 1e-4 of a
target's flux in a pixel 2.5 px away), so there every stored value is a rounded, clipped draw of
``N(b, s^2)``:

    P(v = 0)   = Phi((0.5 - b) / s)
    P(v = k)   = Phi((k + 0.5 - b) / s) - Phi((k - 0.5 - b) / s)          (0 < k < 255)
    P(v = 255) = 1 - Phi((254.5 - b) / s)

The estimator:

1. **Background pixels.** Per frame, the blob is located at the maximum of the frame's 3 x 3 box sum;
   the pixels more than ``exclusion`` (default 3) pixels from it along rows or columns are background.
   CSIST-100K and SeqCSIST spread their targets at most about 1.6 px from the blob's peak, so those
   pixels are at least 2.4 px from any target; an 11 x 11 frame keeps at least 72 of its 121 pixels.
2. **Maximum likelihood.** The background values of all frames (or of each frame, ``per_frame=True``)
   are pooled in a histogram of the 256 levels and ``(b, s)`` maximises the likelihood above: a grid over
   ``s`` in [0.05, 40] (log-spaced) and ``b`` in [-3, 40], then two finer grids around the best point.
   The clipping at 0 is in the model, so the half-rectified background of a sensor without offset (at
   std 2 the stored background has std 1.33 and mean 0.79) gives back ``s = 2``, not 1.33.

A frame whose background is exactly 0 everywhere (no read noise) gives the lower end of the grid, reported
as 0. The estimate is a property of the sensor: pass frames of one sensor setting together (``unmix``
estimates once per call); ``per_frame=True`` gives one estimate per frame (from its ~72-100 pixels: a
few percent noisier). ``tests/unit/test_noise.py`` checks it within 10 % of the true std at 1..5.
"""

from __future__ import annotations

import numpy as np
from scipy.special import ndtr

from csist_jax import _checks

#: pixels within this many rows and columns of the blob's peak are left out of the estimate
EXCLUSION = 3
#: the grid of the likelihood search: std (log-spaced) and background ranges, grey levels
STD_RANGE = (0.05, 40.0)
BACKGROUND_RANGE = (-3.0, 40.0)


def background_pixels(frames: np.ndarray, exclusion: int = EXCLUSION) -> np.ndarray:
    """``[n, H, W]`` bool: the pixels of each frame more than ``exclusion`` rows or columns away from the
    maximum of its 3 x 3 box sum (the blob)."""
    frames = np.asarray(frames, np.float64)
    n, h, w = frames.shape
    padded = np.pad(frames, ((0, 0), (1, 1), (1, 1)))
    box = sum(padded[:, i : i + h, j : j + w] for i in range(3) for j in range(3))
    peak = np.argmax(box.reshape(n, -1), axis=1)
    r, q = np.divmod(peak, w)
    rows = np.abs(np.arange(h)[None, :] - r[:, None]) > exclusion  # [n, h]
    cols = np.abs(np.arange(w)[None, :] - q[:, None]) > exclusion  # [n, w]
    return rows[:, :, None] | cols[:, None, :]


def _log_likelihood(hist: np.ndarray, b: np.ndarray, s: np.ndarray, saturation: float) -> np.ndarray:
    """Log-likelihood of histograms ``hist`` ``[..., L]`` (levels 0..L-1) at every ``(b, s)`` of the grids
    ``b``, ``s`` (broadcast against each other): ``[..., grid]``."""
    levels = np.arange(hist.shape[-1], dtype=np.float64)
    upper = np.where(levels >= saturation, np.inf, levels + 0.5)
    lower = np.where(levels <= 0, -np.inf, levels - 0.5)
    bb, ss = b[..., None], s[..., None]
    p = ndtr((upper - bb) / ss) - ndtr((lower - bb) / ss)
    logp = np.log(np.maximum(p, 1e-300))  # [grid..., L]
    return np.tensordot(hist, logp, axes=([-1], [-1]))


def _fit(hist: np.ndarray, saturation: float) -> tuple[float, float]:
    """The ``(background, std)`` of maximum likelihood for one histogram."""
    if hist.sum() == 0:
        raise ValueError("no background pixels to estimate the noise from")
    if np.count_nonzero(hist) == 1:  # every background pixel at one level: no spread to measure
        return float(np.argmax(hist)), 0.0
    log_s = np.log(STD_RANGE)
    b_lo, b_hi = BACKGROUND_RANGE
    s_grid = np.linspace(*log_s, 96)
    b_grid = np.linspace(b_lo, b_hi, 87)
    for _ in range(3):
        B, S = np.meshgrid(b_grid, s_grid, indexing="ij")
        ll = _log_likelihood(hist, B, np.exp(S), saturation)
        i, j = np.unravel_index(np.argmax(ll), ll.shape)
        b, ls = b_grid[i], s_grid[j]
        db, ds = 3 * (b_grid[1] - b_grid[0]), 3 * (s_grid[1] - s_grid[0])
        b_grid = np.linspace(b - db, b + db, 41)
        s_grid = np.linspace(ls - ds, ls + ds, 41)
    s = float(np.exp(ls))
    return float(b), (0.0 if s <= STD_RANGE[0] * 1.01 else s)


def estimate_noise(
    frames,
    *,
    per_frame: bool = False,
    exclusion: int = EXCLUSION,
    saturation: float = 255.0,
    mask=None,
) -> dict[str, np.ndarray | float]:
    """The read-noise std and background level of the sensor behind ``frames`` (module docstring).

    Args:
      frames: ``[n, H, W]`` (or ``[n, T, H, W]`` windows, every frame used) stored frames on the 0..255
        scale, uint8 or float (rounded to the levels first).
      per_frame: one estimate per frame (``[n]`` arrays; windows: per window) instead of one for all.
      exclusion: pixels within this many rows and columns of each frame's blob are left out.
      saturation: the top level (its probability is the upper tail).
      mask: ``[n, H, W]`` bool (windows: ``[n, T, H, W]``), the background pixels to use, instead of
        those ``exclusion`` pixels away from each frame's blob (for frames with many blobs, e.g. whole
        sensor frames: :func:`csist_jax.frames.sensor_background`).

    Returns ``{"noise_std", "background", "pixels"}``: floats (arrays with ``per_frame``) in grey levels,
    and the number of background pixels used.
    """
    frames = np.asarray(frames)
    if frames.ndim not in (3, 4) or frames.shape[0] == 0:
        raise ValueError(
            f"frames must have shape [n, H, W] or [n, T, H, W] with n >= 1, got {tuple(frames.shape)}"
        )
    _checks.finite("frames", frames)
    exclusion = _checks.positive_int("exclusion", exclusion, minimum=0)
    groups = frames.reshape(frames.shape[0], -1, *frames.shape[-2:])  # [n, T, H, W]
    flat = groups.reshape(-1, *frames.shape[-2:])
    if mask is not None:
        mask = np.asarray(mask, bool)
        if mask.shape != frames.shape:
            raise ValueError(f"mask must have the frames' shape {frames.shape}, got {mask.shape}")
        mask = mask.reshape(flat.shape)
    elif 2 * exclusion + 1 >= min(flat.shape[-2:]):
        raise ValueError(
            f"exclusion={exclusion} leaves no background pixel in {flat.shape[-2]} x {flat.shape[-1]} frames"
        )
    else:
        mask = background_pixels(flat, exclusion)
    levels = np.clip(np.rint(flat.astype(np.float64)), 0, saturation).astype(np.int64)
    n_levels = int(saturation) + 1
    # per frame histograms [n T, L]
    index = levels + n_levels * np.arange(len(flat))[:, None, None]
    hist = np.bincount(index[mask], minlength=n_levels * len(flat)).reshape(len(flat), n_levels)
    hist = hist.reshape(groups.shape[0], groups.shape[1], n_levels).sum(axis=1)  # [n, L]
    if not per_frame:
        b, s = _fit(hist.sum(axis=0).astype(np.float64), saturation)
        return {"noise_std": s, "background": b, "pixels": int(mask.sum())}
    fits = np.array([_fit(h.astype(np.float64), saturation) for h in hist])
    return {"noise_std": fits[:, 1], "background": fits[:, 0], "pixels": int(mask.sum())}


__all__ = ["BACKGROUND_RANGE", "EXCLUSION", "STD_RANGE", "background_pixels", "estimate_noise"]
