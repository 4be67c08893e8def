r"""The training objectives of the models, written once, beside the models that own them
(each model kind calls its model's ``objective``: :mod:`csist_jax.models.kinds`).

Single-frame networks (SPEC sec. 7), on the raw 0..255 scale:

    L = mean((x_N - s)^2) + sym_weight * sum_k mean(sym_k^2)                       (sym_weight = 0.01)

with ``x_N`` the network's HR map, ``s`` the HR label (:func:`csist_jax.physics.hr_label`) and ``sym_k``
the symmetry residual of stage ``k`` (none for LISTA).

DeRefNet (SPEC sec. 7), per window ``w`` of ``T`` frames predicting its centre frame (batch objective:
the mean over windows, so any batch of windows trains the same objective):

    L_w = w_r mean((x_w - s_w)^2) + w_s S_w + w_a A_w,
    S_w = (n_windows / n_frames) sum_t sum_k mean(sym_{k,t}^2) / m(f_t),

with ``m(f)`` the number of windows of a trajectory containing frame ``f`` (so the windows of one
trajectory together count every distinct frame once and ``mean_w S_w`` is the toolkit's mean over the
trajectory's frames), ``n_windows = n_frames - T + 1`` and ``A_w`` the L1 error of the ``T - 1`` aligned
neighbour maps against the centre frame's unfolded map BEFORE the time encoding. ``objective="toolkit"``
(default) trains what the toolkit trains (GrokCSO ``DeRefNet_det.py``): ``A_w`` a sum over the window's
elements, ``(w_r, w_s, w_a) = (1, 0.1 / n_windows, 0.1)``; one toolkit batch (the 16 windows of one
20-frame trajectory) gives exactly the toolkit's loss divided by 16. ``objective="paper"``: the paper's
weights ``(1, 0.01, 0.01)`` with ``A_w`` a mean (the paper states no reductions).

The learned localiser (:mod:`csist_jax.models.localizer`), per image, point-process style (DECODE):
per cell ``k`` the probability ``p_k``, the mean ``mu_k = (x_k, y_k, b_k)`` and the standard deviations
``s_k`` of the position and brightness; the true targets ``t_1 .. t_K`` of the image:

    L = B + M + w_c C + w_p P,
    B = sum_k [softplus(l_k) - y_k l_k]                              (Bernoulli; y_k = 1 in a target's cell)
    M = -sum_t log sum_k (p_k / sum_j p_j) N(t | mu_k, diag(s_k^2))  (Gaussian mixture of the targets)
    C = (K - sum p)^2 / (2 v) + log(2 pi v) / 2,  v = sum p (1 - p)   (count; w_c = 0 by default)
    P = mean((min(render(p b at (x, y)), 255) - z)^2)                 (physics; w_p = 0 by default)

(:func:`localizer_loss`; ``l_k`` the logit, the target's cell is the HR label's, SPEC sec. 2). The batch
objective is the mean over images.

The terms are computed in at least float32: a network run in bfloat16 gets a float32 loss, and a float64
one (gradient checks) keeps float64. The functions on outputs compose with any user code.

>>> maps, aux = module.apply(variables, images, return_aux=True)   # maps [n, 11c, 11c]
>>> loss, parts = unfolding_loss(maps, aux, physics.hr_label(targets, c))
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int

from csist_jax import physics
from csist_jax.physics import psf, sensor

#: weight of the symmetry term (SPEC sec. 7; both networks)
SYM_WEIGHT = 0.01
#: weight of DeRefNet's alignment term in the paper (SPEC sec. 7; ``objective="paper"``)
ALIGN_WEIGHT = 0.01
#: trajectory length of SeqCSIST (SPEC sec. 5): the frame multiplicities of the DeRefNet symmetry term
N_FRAMES = 20
#: DeRefNet's objectives (:func:`derefnet_loss`)
DEREFNET_OBJECTIVES = ("toolkit", "paper")
#: the toolkit's weights of the symmetry and alignment terms (``DeRefNet_det.py``: gamma, alpha)
TOOLKIT_SYM_WEIGHT = 0.1
TOOLKIT_ALIGN_WEIGHT = 0.1


def _at_least_float32(x: Array) -> Array:
    x = jnp.asarray(x)
    return x.astype(jnp.promote_types(x.dtype, jnp.float32))


def regression(maps: Float[Array, "*b h w"], labels: Float[Array, "*b h w"]) -> Float[Array, ""]:
    """``mean((maps - labels)^2)`` over every element (the data term of every network's loss)."""
    return jnp.mean((_at_least_float32(maps) - labels) ** 2)


def symmetry(residuals: Sequence[Array]) -> Float[Array, ""]:
    """``sum_k mean(sym_k^2)`` over the stages' symmetry residuals (0 for none)."""
    return sum((jnp.mean(_at_least_float32(r) ** 2) for r in residuals), jnp.zeros((), jnp.float32))


def unfolding_loss(
    maps: Float[Array, "n hr hr"],
    aux: Sequence[dict],
    labels: Float[Array, "n hr hr"],
    *,
    sym_weight=SYM_WEIGHT,
) -> tuple[Float[Array, ""], dict]:
    """The single-frame loss ``mse + sym_weight * sym`` of a network's ``(maps, aux)`` (SPEC sec. 7).

    ``aux`` is the per-stage list of ``apply(..., return_aux=True)``. Returns ``(loss, parts)``,
    ``parts`` = ``{"mse", "sym"}`` plus each stage's threshold ``threshold_k`` where the stage reports one
    (monitors, not terms).
    """
    mse = regression(maps, labels)
    sym = symmetry([a["sym"] for a in aux if "sym" in a])
    parts = {"mse": mse, "sym": sym}
    for k, a in enumerate(aux):
        if "threshold" in a:
            parts[f"threshold_{k}"] = jnp.asarray(a["threshold"], jnp.float32)
    return mse + sym_weight * sym, parts


def target_count(targets: Float[Array, "n k 3"]) -> Int[Array, " n"]:
    """The number of real targets per image: rows with brightness > 0 (the padding rows are zero)."""
    return jnp.sum(jnp.asarray(targets)[..., 2] > 0, axis=-1).astype(jnp.int32)


def localizer_loss(
    outputs: dict,
    targets: Float[Array, "n k 3"],
    count: Int[Array, " n"] | None = None,
    images: Float[Array, "n m m"] | None = None,
    *,
    c: int = 3,
    count_weight=0.0,
    physics_weight=0.0,
    sigma=0.5,
) -> tuple[Float[Array, ""], dict]:
    """The learned localiser's objective ``mean_n (B + M + w_c C + w_p P)`` (module docstring).

    Args:
      outputs: ``Localizer.apply(variables, images)``: ``"logit"`` ``[n, hr, hr]``, ``"position"``
        ``[n, hr, hr, 2]``, ``"brightness"`` ``[n, hr, hr]``, ``"log_std"`` ``[n, hr, hr, 3]``.
      targets: ``[n, K, 3]`` true ``(x, y, brightness)``; only the first ``count[i]`` rows are read.
      count: ``[n]`` real targets per image; None: the rows with brightness > 0 (:func:`target_count`).
      images: ``[n, size, size]`` the input images (0..255): the physics term and the ``"mse"`` monitor
        (the mean squared error of the rendered predicted sources); None: both left out.
      c: the up-sampling ratio of the outputs' grid (``[size c, size c]`` cells).
      count_weight, physics_weight: ``w_c``, ``w_p``; sigma: the PSF width of the physics term.

    Returns ``(loss, parts)``, ``parts`` the batch means ``{"bernoulli", "mixture", "count", "mse"
    (with images)}`` and ``"expected_count"`` (mean ``sum p``, a monitor). Computed in at least float32.
    """
    logit = _at_least_float32(outputs["logit"])
    position = _at_least_float32(outputs["position"])
    brightness = _at_least_float32(outputs["brightness"])
    log_std = _at_least_float32(outputs["log_std"])
    n, hr = logit.shape[0], logit.shape[1]
    targets = _at_least_float32(targets)
    if targets.ndim != 3 or targets.shape[0] != n or targets.shape[-1] != 3:
        raise ValueError(f"targets must have shape [{n}, K, 3], got {tuple(targets.shape)}")
    count = target_count(targets) if count is None else jnp.asarray(count)
    real = jnp.arange(targets.shape[1])[None, :] < count[:, None]  # [n, K]
    if hr % c:
        raise ValueError(f"c={c} must divide the {hr} cells of the outputs' grid")
    ones = jnp.concatenate([targets[..., :2], real[..., None].astype(logit.dtype)], axis=-1)
    occupied = jnp.minimum(physics.hr_label(ones, c, hr // c), 1.0)
    bernoulli = jnp.sum(jax.nn.softplus(logit) - occupied * logit, axis=(1, 2))

    flat = lambda a: a.reshape((n, hr * hr) + a.shape[3:])  # noqa: E731
    log_p = flat(jax.nn.log_sigmoid(logit))
    log_w = log_p - jax.nn.logsumexp(log_p, axis=1, keepdims=True)  # [n, cells]
    mean = jnp.concatenate([flat(position), flat(brightness)[..., None]], axis=-1)  # [n, cells, 3]
    log_s = flat(log_std)
    residual = (targets[:, :, None, :] - mean[:, None, :, :]) * jnp.exp(-log_s)[:, None]  # [n, K, cells, 3]
    log_n = jnp.sum(-0.5 * residual**2 - log_s[:, None] - 0.5 * jnp.log(2 * jnp.pi), axis=-1)
    per_target = -jax.nn.logsumexp(log_w[:, None, :] + log_n, axis=-1)  # [n, K]
    mixture = jnp.sum(jnp.where(real, per_target, 0.0), axis=1)

    p = jnp.exp(log_p)
    expected = jnp.sum(p, axis=1)
    count_nll = count_term(p, count)
    total = bernoulli + mixture + count_weight * count_nll
    parts = {
        "bernoulli": jnp.mean(bernoulli),
        "mixture": jnp.mean(mixture),
        "count": jnp.mean(count_nll),
        "expected_count": jnp.mean(expected),
    }
    if images is not None:
        sources = jnp.concatenate([flat(position), (p * flat(brightness))[..., None]], axis=-1)
        if isinstance(physics_weight, (int, float)) and physics_weight == 0:
            sources = jax.lax.stop_gradient(sources)  # a monitor only: no backward pass through it
        rendered = jnp.minimum(psf.render(sources, images.shape[-1], sigma), sensor.SATURATION)
        mse = jnp.mean((rendered - _at_least_float32(images)) ** 2, axis=(1, 2))
        total = total + physics_weight * mse
        parts["mse"] = jnp.mean(mse)
    return jnp.mean(total), parts


def count_term(probability: Float[Array, "n cells"], count: Int[Array, " n"]) -> Float[Array, " n"]:
    r"""The count term ``C`` of :func:`localizer_loss`: the negative log-likelihood of the true count ``K``
    under the Gaussian approximation of the number of occupied cells (a sum of independent Bernoulli
    variables with probabilities ``p_k``, as in point-process localisation networks):

        C = (K - sum_k p_k)^2 / (2 v) + log(2 pi v) / 2,      v = sum_k p_k (1 - p_k) + 1e-6

    ``probability`` ``[n, cells]`` (any trailing cell layout flattened by the caller), ``count`` ``[n]``.
    Returns ``C`` per image ``[n]``. Small when the expected count matches ``K`` *and* the probabilities
    are decided (near 0 or 1): it calibrates the count the detections add up to."""
    p = _at_least_float32(probability)
    expected = jnp.sum(p, axis=1)
    variance = jnp.sum(p * (1 - p), axis=1) + 1e-6
    return 0.5 * (jnp.asarray(count, p.dtype) - expected) ** 2 / variance + 0.5 * jnp.log(
        2 * jnp.pi * variance
    )


def frame_multiplicity(frame: Int[Array, "..."], window: int, n_frames: int = N_FRAMES) -> Int[Array, "..."]:
    """How many of a trajectory's ``n_frames - window + 1`` windows contain frame ``frame``:
    ``min(f + h, n - 1 - h) - max(f - h, h) + 1`` with ``h = window // 2`` (at least 1)."""
    half = window // 2
    frame = jnp.asarray(frame)
    count = jnp.minimum(frame + half, n_frames - 1 - half) - jnp.maximum(frame - half, half) + 1
    return jnp.maximum(count, 1)


def derefnet_loss(
    out: Float[Array, "n hr hr"],
    aux: dict,
    label: Float[Array, "n hr hr"],
    *,
    objective: str = "toolkit",
    n_frames: int = N_FRAMES,
) -> tuple[Float[Array, ""], dict]:
    """DeRefNet's objective ``mean_w (w_r mse_w + w_s S_w + w_a A_w)`` (module docstring).

    ``aux`` is ``DeRefNet.apply(..., return_aux=True)[1]``: ``"sym"`` (per stage, the ``n T`` frames'
    residuals, window-major), ``"aligned"`` ``[n, T-1, hr, hr]``, ``"centre"`` ``[n, hr, hr]`` (before the
    time encoding) and ``"frame"`` ``[n, T]`` (true frame indices in a trajectory of ``n_frames``).
    ``objective``: ``"toolkit"`` (default; ``A_w`` summed, weights ``(1, 0.1 / n_windows, 0.1)``) or
    ``"paper"`` (``A_w`` averaged, weights ``(1, 0.01, 0.01)``). Returns ``(loss, parts)`` with the
    unweighted batch means ``{"regression", "symmetry", "alignment"}`` (``loss`` = their weighted sum).

    For one toolkit batch (the ``n_frames - T + 1`` windows of one trajectory) the toolkit's loss is
    ``n_windows`` times the ``"toolkit"`` value (16 x for SeqCSIST).
    """
    if objective not in DEREFNET_OBJECTIVES:
        raise ValueError(f"objective must be one of {DEREFNET_OBJECTIVES}, got {objective!r}")
    out, label = _at_least_float32(out), jnp.asarray(label)
    aligned, centre = _at_least_float32(aux["aligned"]), _at_least_float32(aux["centre"])
    n, window = out.shape[0], aligned.shape[1] + 1
    if window >= n_frames:
        raise ValueError(f"n_frames must exceed the window length {window}, got {n_frames}")
    frame = jnp.asarray(aux["frame"])
    if frame.shape != (n, window):
        raise ValueError(f"aux['frame'] must have shape [{n}, {window}], got {frame.shape}")
    mse = jnp.mean(((out - label) ** 2).reshape(n, -1), axis=-1)  # [n]
    # per window and frame: sum over stages of the frame's mean squared residual
    per_frame = sum(
        (jnp.mean((_at_least_float32(r) ** 2).reshape(n, window, -1), axis=-1) for r in aux["sym"]),
        jnp.zeros((n, window), jnp.float32),
    )
    n_windows = n_frames - window + 1
    sym = (n_windows / n_frames) * jnp.sum(per_frame / frame_multiplicity(frame, window, n_frames), axis=-1)
    error = jnp.abs(aligned - centre[:, None]).reshape(n, -1)
    if objective == "toolkit":
        alignment = jnp.sum(error, axis=-1)
        weights = (1.0, TOOLKIT_SYM_WEIGHT / n_windows, TOOLKIT_ALIGN_WEIGHT)
    else:
        alignment = jnp.mean(error, axis=-1)
        weights = (1.0, SYM_WEIGHT, ALIGN_WEIGHT)
    parts = {"regression": jnp.mean(mse), "symmetry": jnp.mean(sym), "alignment": jnp.mean(alignment)}
    total = (
        weights[0] * parts["regression"] + weights[1] * parts["symmetry"] + weights[2] * parts["alignment"]
    )
    return total, parts


__all__ = [
    "ALIGN_WEIGHT",
    "DEREFNET_OBJECTIVES",
    "N_FRAMES",
    "SYM_WEIGHT",
    "TOOLKIT_ALIGN_WEIGHT",
    "TOOLKIT_SYM_WEIGHT",
    "count_term",
    "derefnet_loss",
    "frame_multiplicity",
    "localizer_loss",
    "regression",
    "symmetry",
    "target_count",
    "unfolding_loss",
]
