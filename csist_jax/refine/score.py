r"""How sure a fitted position is: the pixel variance, the predicted position error and the score.

At a least-squares fit with Gauss-Newton matrix ``H = J^T W J`` and residual variance ``v`` per pixel, the
covariance of the parameters is predicted as ``C = v H^{-1}`` (the Cramer-Rao form of
``csist_jax.refine.crb`` evaluated at the fit). A source's position error is predicted as

    s_k = sqrt(C[x_k, x_k] + C[y_k, y_k]),

and its detection score is ``score_k = 1 / (1 + s_k / SCORE_SCALE)`` in ``(0, 1]``: CSO-mAP pools the
detections of a dataset and ranks them by score, so confident, bright, well separated detections come
first and a weak spurious source, whose position is poorly determined, comes last. Every fit of
``csist_jax.refine`` (single frame, window) scores its detections with :func:`position_score`.
"""

from __future__ import annotations

import jax.numpy as jnp
from jaxtyping import Array, Float

from csist_jax import _checks
from csist_jax.refine import fit

SCORE_SCALE = 0.05  # px: the smallest CSO-mAP radius; s = SCORE_SCALE gives score 1/2
VARIANCE_FLOOR = 1e-6


def pixel_variance(z: Float[Array, "... size size"], noise_std) -> Float[Array, ""]:
    """Residual variance per pixel: ``1/12`` when every value of ``z`` is an integer (rounded storage),
    plus ``noise_std^2``, plus ``VARIANCE_FLOOR`` (float32 rendering error of unquantised images). A
    concrete ``noise_std`` must be finite and >= 0."""
    _checks.nonnegative("noise_std", noise_std)
    rounded = jnp.all(z == jnp.round(z))
    return jnp.where(rounded, fit.QUANTIZATION_VARIANCE, 0.0) + noise_std**2 + VARIANCE_FLOOR


def position_std(H: Float[Array, "p p"], active: Float[Array, " k"], variance) -> Float[Array, " k"]:
    """Predicted standard deviation ``sqrt(C_xx + C_yy)`` of each source's position, ``C = v H^{-1}``.

    ``H`` is ``[P, P]`` with ``P >= 3K``: rows ``3k + (x, y, b)`` for source ``k``, then any nuisance
    parameters shared by the sources (e.g. a common velocity), which are always free and profiled out by
    the inverse. Inactive sources get unit rows; a degenerate fit (singular ``H``) gets ``inf``.
    """
    K = active.shape[0]
    extra = H.shape[0] - 3 * K
    free = jnp.concatenate([jnp.repeat(active, 3), jnp.ones(extra, active.dtype)]) > 0
    diag = jnp.diagonal(H)
    Hr = H + jnp.diag(jnp.where(free, 1e-6 * diag + 1e-9, 1.0))
    C = variance * jnp.diagonal(jnp.linalg.inv(Hr))[: 3 * K].reshape(K, 3)
    std = jnp.sqrt(C[:, 0] + C[:, 1])
    # a degenerate fit (singular H) is as uncertain as it gets
    return jnp.where(jnp.isfinite(std) & (C[:, 0] + C[:, 1] >= 0), std, jnp.inf)


def position_score(
    H: Float[Array, "p p"], active: Float[Array, " k"], variance
) -> tuple[Float[Array, " k"], Float[Array, " k"]]:
    """The predicted position error ``s`` (px) and the score ``1 / (1 + s / SCORE_SCALE)`` of each source.

    Args:
      H: ``[P, P]`` Gauss-Newton matrix at the fit (``P >= 3K``; see :func:`position_std`).
      active: ``[K]`` 1 for a fitted source, 0 for an unused slot.
      variance: residual variance per pixel (:func:`pixel_variance`).

    Returns:
      ``(std [K], score [K])``, both 0 on inactive slots. Pure and jittable.

    >>> from csist_jax.physics import render
    >>> from csist_jax.refine import fit_one
    >>> truth = jnp.array([[5.0, 5.2, 230.0]])
    >>> theta, cost, H = fit_one(truth, jnp.ones(1), jnp.round(render(truth)))
    >>> std, score = position_score(H, jnp.ones(1), 1 / 12)  # std ~ 0.003 px, score ~ 0.94
    """
    _checks.positive_scalar("variance", variance)
    std = position_std(H, active, variance)
    score = jnp.where(active > 0, 1.0 / (1.0 + std / SCORE_SCALE), 0.0)
    return jnp.where(active > 0, std, 0.0), score
