"""Image-quality scores of reconstructed HR maps: PSNR and SSIM, per map, batched and jitted.

Both return one value per map (reduce over the last two axes); a table reports their mean over the
test set. Note: the PyTorch toolkit's "SSIM" column is not SSIM but ``1 - mse / (mean(x^2) mean(y^2))``
per map, so its published SSIM values (e.g. 0.9887) are not comparable with :func:`ssim`.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from csist_jax import _checks


def _pair(pred, target):
    pred = jnp.asarray(pred, jnp.float32)
    target = jnp.asarray(target, jnp.float32)
    if pred.shape != target.shape:
        raise ValueError(f"pred and target must have the same shape, got {pred.shape} and {target.shape}")
    if pred.ndim < 2:
        raise ValueError(f"pred must have shape [..., h, w], got {pred.shape}")
    _checks.finite("pred", pred)
    _checks.finite("target", target)
    return pred, target


@jax.jit
def _psnr(pred, target, data_range):
    mse = jnp.mean((pred - target) ** 2, axis=(-2, -1))
    return 10.0 * jnp.log10(data_range**2 / mse)


def psnr(
    pred: Float[Array, "... h w"], target: Float[Array, "... h w"], data_range: float = 255.0
) -> Float[Array, "..."]:
    """Peak signal-to-noise ratio per map, in dB: ``10 log10(data_range^2 / mean((pred - target)^2))``.

    Identical maps give ``+inf``.
    """
    _checks.positive_scalar("data_range", data_range)
    pred, target = _pair(pred, target)
    return _psnr(pred, target, jnp.float32(data_range))


def _gaussian_band(length: int, window: int, sigma: float) -> np.ndarray:
    """``[length - window + 1, length]`` matrix applying a normalised 1-D Gaussian window ('valid')."""
    taps = np.exp(-0.5 * ((np.arange(window) - (window - 1) / 2) / sigma) ** 2)
    taps /= taps.sum()
    band = np.zeros((length - window + 1, length))
    for i in range(band.shape[0]):
        band[i, i : i + window] = taps
    return band.astype(np.float32)


@functools.partial(jax.jit, static_argnames=("window", "sigma"))
def _ssim(pred, target, data_range, k1, k2, window, sigma):
    rows = jnp.asarray(_gaussian_band(pred.shape[-2], window, sigma))
    cols = jnp.asarray(_gaussian_band(pred.shape[-1], window, sigma))

    def blur(a):  # separable Gaussian weighting over the window, 'valid' positions only
        return jnp.einsum("ih,...hw,jw->...ij", rows, a, cols, precision=jax.lax.Precision.HIGHEST)

    mu_x, mu_y = blur(pred), blur(target)
    var_x = blur(pred * pred) - mu_x * mu_x
    var_y = blur(target * target) - mu_y * mu_y
    cov = blur(pred * target) - mu_x * mu_y
    c1 = (k1 * data_range) ** 2
    c2 = (k2 * data_range) ** 2
    index = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return jnp.mean(index, axis=(-2, -1))


def ssim(
    pred: Float[Array, "... h w"],
    target: Float[Array, "... h w"],
    data_range: float = 255.0,
    *,
    window: int = 11,
    sigma: float = 1.5,
    k1: float = 0.01,
    k2: float = 0.03,
) -> Float[Array, "..."]:
    """Structural similarity per map (Wang et al. 2004), Gaussian window, mean over valid positions.

    With Gaussian-weighted local means ``mu``, variances ``s^2`` and covariance ``s_xy`` over a
    ``window x window`` window of std ``sigma`` (positions where the window fits the map),
    ``SSIM = mean[(2 mu_x mu_y + C1)(2 s_xy + C2) / ((mu_x^2 + mu_y^2 + C1)(s_x^2 + s_y^2 + C2))]``,
    ``C1 = (k1 L)^2``, ``C2 = (k2 L)^2``, ``L = data_range``. Equals 1 for identical maps.
    """
    _checks.positive_scalar("data_range", data_range)
    _checks.positive_scalar("sigma", sigma)
    _checks.positive_scalar("k1", k1)
    _checks.positive_scalar("k2", k2)
    window = _checks.positive_int("window", window)
    pred, target = _pair(pred, target)
    if min(pred.shape[-2:]) < window:
        raise ValueError(f"pred maps ({pred.shape[-2]} x {pred.shape[-1]}) are smaller than window={window}")
    return _ssim(
        pred, target, jnp.float32(data_range), jnp.float32(k1), jnp.float32(k2), window, float(sigma)
    )
