r"""A learned continuous localiser: point sources straight from the image, off the HR grid.

The unfolding networks output an HR map and are scored at the centres of its ``1/c``-pixel cells, which
caps CSO-mAP (SPEC sec. 6). This network keeps the HR grid only as a set of slots, one per cell, and
predicts in each cell (point-process localisation in the style of DECODE):

    p     = sigmoid(logit)                      probability that a target sits in the cell
    x, y  = centre + (reach / c) tanh(o)        position (LR px, SPEC sec. 2), up to ``reach`` cells away
    b     = brightness_scale softplus(v + s1)   brightness (grey levels; ``s1`` makes ``b = scale`` at 0)
    log s = lo + (hi - lo) sigmoid(u)           log standard deviations of (x, y, b), bounded

The backbone sees the image at its own resolution, ``z / 255`` beside the linear HR estimate
``Q z / 255`` folded into ``c^2`` channels per LR pixel (HR cell ``c r + a`` of an axis lies in LR
pixel ``r``: its centre is ``r + (a - o) / c``, ``o = (c - 1) // 2``). ``Q`` is the fixed
``"constants"`` matrix of the unfolding networks (default: the analytic operator's regularised
pseudo-inverse; ``q_init`` as for them). Then

    h = relu(conv3(z, Qz))
    h = h + conv3(relu(conv3(h)))               (``stages`` residual blocks, ``channels`` wide)
    heads = conv1(h)                            (c^2 x 6 values per LR pixel, unfolded to the HR grid)

so every LR pixel predicts its ``c x c`` cells. Every product is per sample (convolutions) or one
batched matrix product (``Q z``): a sample's outputs do not depend on its batch beyond float rounding.

:func:`points` turns the outputs into detections in the format of :func:`csist_jax.refine.localize`:
cells with ``p >= threshold``, most probable first, each scored by ``p / (1 + s / SCORE_SCALE)`` with
``s = sqrt(s_x^2 + s_y^2)`` the predicted position error (the score of ``csist_jax.refine.score``,
weighted by the probability), so :func:`csist_jax.metrics.cso_map_from_points` scores it like the fit.
The training loss is :func:`csist_jax.models.objectives.localizer_loss`.

:class:`WindowLocalizer` is the multi-frame variant for SeqCSIST windows: the same trunk, shared by
every frame of the window, then a temporal-context stage over the stacked per-frame features and the
same heads for the centre frame.

>>> net = models.create("localizer", c=3)
>>> variables = net.init(jax.random.PRNGKey(0), images)   # images [n, 11, 11], raw 0..255
>>> out = net.apply(variables, images)                    # dict of per-cell heads on the [33, 33] grid
>>> found = points(out, threshold=0.5, max_points=8)      # found["points"]: [n, 8, 3] (x, y, score)
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from csist_jax import _checks, physics
from csist_jax.models import kinds, layers, objectives
from csist_jax.refine.score import SCORE_SCALE

#: the per-cell values the head predicts, in channel order
HEADS = ("logit", "offset_x", "offset_y", "brightness", "log_std_x", "log_std_y", "log_std_b")
#: bounds of the predicted log standard deviations: position (px) and brightness (grey levels)
POSITION_LOG_STD = (float(np.log(2e-3)), float(np.log(1.0)))
BRIGHTNESS_LOG_STD = (float(np.log(0.5)), float(np.log(100.0)))
#: the defaults of :func:`points`: detection threshold on the probability, detection slots per image
THRESHOLD = 0.5
MAX_POINTS = 8
#: the default merge radius of :func:`points` (px): half CSIST-100K's minimum separation, 0.494 px
MERGE_RADIUS = 0.25
#: the prior probability of a cell at initialisation (about 3 targets in 1089 cells)
PRIOR_PROBABILITY = 3e-3
_SOFTPLUS_ONE = float(np.log(np.expm1(1.0)))  # softplus(_SOFTPLUS_ONE) = 1


def fold(hr_maps: Float[Array, "n hr hr"], c: int) -> Float[Array, "n m m cc"]:
    """HR maps folded to ``c^2`` channels per LR pixel: ``out[n, r, q, a c + b] = s[n, c r + a, c q + b]``."""
    n, hr = hr_maps.shape[0], hr_maps.shape[1]
    m = hr // c
    return hr_maps.reshape(n, m, c, m, c).transpose(0, 1, 3, 2, 4).reshape(n, m, m, c * c)


def unfold(features: Float[Array, "n m m cck"], c: int) -> Float[Array, "n hr hr k"]:
    """The inverse of :func:`fold` for ``k`` values per cell: ``[n, m, m, c^2 k] -> [n, m c, m c, k]``."""
    n, m = features.shape[0], features.shape[1]
    k = features.shape[-1] // (c * c)
    return features.reshape(n, m, m, c, c, k).transpose(0, 1, 3, 2, 4, 5).reshape(n, m * c, m * c, k)


def _bounded(u, bounds):
    lo, hi = bounds
    return lo + (hi - lo) * jax.nn.sigmoid(u)


class Localizer(nn.Module):
    """Per-cell probability, position, brightness and uncertainty of point sources (module docstring).

    ``__call__(images, *, q=None)``: ``images`` ``[n, size, size]`` raw 0..255 values. Returns a dict of
    arrays on the ``[size c, size c]`` HR grid: ``"logit"`` ``[n, hr, hr]``, ``"position"``
    ``[n, hr, hr, 2]`` (x = row, y = column, LR px), ``"brightness"`` ``[n, hr, hr]``, ``"log_std"``
    ``[n, hr, hr, 3]`` (of x, y in px and of b in grey levels). ``q``: a ``Q`` ``[hr^2, size^2]`` for
    this call instead of the stored one. Concrete images (an eager ``apply``) must be finite
    (``ValueError`` naming ``images``); an empty batch gives empty arrays of every head.

    Fields: ``c``, ``size``, ``sigma`` (of the analytic operator behind the default ``Q``), ``q_init``
    (``Q`` at ``init``, as for the unfolding networks), ``stages`` (residual blocks), ``channels``,
    ``reach`` (how far, in cells, a position may leave its cell's centre: 0.5 is the cell's edge),
    ``brightness_scale`` (the brightness predicted at a zero head value).
    """

    c: int = 3
    size: int = 11
    sigma: float = 0.5
    q_init: np.ndarray | None = None
    stages: int = 3
    channels: int = 48
    reach: float = 1.0
    brightness_scale: float = 235.0

    @property
    def hr(self) -> int:
        return self.size * self.c

    def operator(self, dtype=jnp.float32, operator=None) -> physics.SamplingOperator:
        """The analytic ``Phi`` of ``(c, size, sigma)`` in ``dtype`` (pseudo-inverted: the default ``Q``)."""
        return layers.network_operator(self.c, self.size, self.sigma, dtype, False, operator)

    #: it holds ``Q`` (``"constants"``) and starts from ``Q z``, as the unfolding networks
    USES_PHYSICS = True

    def fit_constants(self, targets):
        """This localiser with ``q_init`` the least-squares ``Q`` of the training ``targets``' HR labels
        (:func:`csist_jax.models.layers.fit_q`), which the training route asks every model for."""
        return layers.fit_q(self, targets)

    #: frames in, per-cell detections out (:mod:`csist_jax.models.kinds`)
    KIND = kinds.FRAME_POINTS
    #: the sub-group of the training config's ``loss`` group, and its fields :meth:`objective` reads
    #: (``config.loss.localizer.count_weight`` and ``physics_weight``)
    LOSS_GROUP = "localizer"
    LOSS_OPTIONS = ("count_weight", "physics_weight")

    def objective(self, outputs, targets, *, images=None, count_weight=0.0, physics_weight=0.0):
        """The training loss against the true ``targets`` ``[n, K, 3]``
        (:func:`csist_jax.models.objectives.localizer_loss`; ``images`` the predicted frames, for the
        physics term and its monitor)."""
        return objectives.localizer_loss(
            outputs,
            targets,
            images=images,
            c=self.c,
            sigma=self.sigma,
            count_weight=count_weight,
            physics_weight=physics_weight,
        )

    def decode(self, outputs, *, threshold=THRESHOLD, max_points: int = MAX_POINTS) -> dict:
        """What the metrics read: the detections of :func:`points`."""
        return points(outputs, threshold=threshold, max_points=max_points)

    def _check_fields(self):
        _checks.positive_int("stages", self.stages)
        _checks.positive_int("channels", self.channels)
        _checks.positive_scalar("reach", self.reach)
        _checks.positive_scalar("brightness_scale", self.brightness_scale)

    def _frame_features(self, z, q, prefix: str = ""):
        """``[n, size, size, channels]`` features of float frames ``z`` ``[n, size, size]`` (stem and
        residual blocks; call inside a compact method)."""
        dtype = z.dtype
        x0 = layers.linear_init(q, z, self.hr)
        h = jnp.concatenate([z[..., None], fold(x0, self.c)], axis=-1) / 255.0
        h = nn.relu(nn.Conv(self.channels, (3, 3), padding="SAME", dtype=dtype, name=f"{prefix}stem")(h))
        return _residual_blocks(h, self.stages, self.channels, dtype, prefix)

    def _heads(self, h) -> dict[str, Array]:
        """The per-cell heads on the HR grid from ``[n, size, size, channels]`` features."""
        c, dtype = self.c, h.dtype
        prior = float(np.log(PRIOR_PROBABILITY / (1 - PRIOR_PROBABILITY)))

        def head_bias(key, shape, dtype=jnp.float32):
            # the probability starts at the prior: the Bernoulli term starts near its minimum over p
            return jnp.zeros(shape, dtype).reshape(-1, len(HEADS)).at[:, 0].set(prior).reshape(shape)

        raw = nn.Conv(
            c * c * len(HEADS),
            (1, 1),
            dtype=dtype,
            kernel_init=nn.initializers.variance_scaling(0.1, "fan_in", "normal"),
            bias_init=head_bias,
            name="head",
        )(nn.relu(h))
        raw = unfold(raw, c)  # [n, hr, hr, len(HEADS)]
        centres = physics.hr_cell_centres(c, self.size).astype(dtype)
        grid = jnp.stack(jnp.meshgrid(centres, centres, indexing="ij"), axis=-1)
        position = grid + (self.reach / c) * jnp.tanh(raw[..., 1:3])
        brightness = self.brightness_scale * jax.nn.softplus(raw[..., 3] + _SOFTPLUS_ONE)
        log_std = jnp.concatenate(
            [_bounded(raw[..., 4:6], POSITION_LOG_STD), _bounded(raw[..., 6:7], BRIGHTNESS_LOG_STD)], axis=-1
        )
        return {"logit": raw[..., 0], "position": position, "brightness": brightness, "log_std": log_std}

    def _float_inputs(self, images, q, ndim: int, what: str):
        z = jnp.asarray(images)
        shape = "[n, T, {0}, {0}]" if ndim == 4 else "[n, {0}, {0}]"
        if z.ndim != ndim or z.shape[-2:] != (self.size, self.size):
            raise ValueError(f"{what} must have shape {shape.format(self.size)}, got {tuple(z.shape)}")
        _checks.finite(what, images)  # a no-op under jit (traced values are unknown)
        dtype = z.dtype if jnp.issubdtype(z.dtype, jnp.floating) else jnp.float32
        z = z.astype(dtype)
        stored = self.variable("constants", "q_init", lambda: layers.constant_q(self.q_init, self.operator()))
        return z, layers.call_q(stored.value, q, self.hr, self.size, dtype)

    @nn.compact
    def __call__(self, images: Float[Array, "n m m"], *, q=None) -> dict[str, Array]:
        self._check_fields()
        z, q = self._float_inputs(images, q, 3, "images")
        return self._heads(self._frame_features(z, q))


def _residual_blocks(h, stages: int, channels: int, dtype, prefix: str = ""):
    """``stages`` blocks ``h + conv3(relu(conv3(h)))`` (inside a compact method)."""
    for k in range(stages):
        u = nn.relu(nn.Conv(channels, (3, 3), padding="SAME", dtype=dtype, name=f"{prefix}block_{k}_a")(h))
        h = h + nn.Conv(channels, (3, 3), padding="SAME", dtype=dtype, name=f"{prefix}block_{k}_b")(u)
    return h


class WindowLocalizer(Localizer):
    """The learned localiser for windows of frames: detections in each window's centre frame.

    ``__call__(windows, centre_index=None, *, q=None)``: ``windows`` ``[n, T, size, size]`` (odd ``T``,
    raw 0..255). Every frame goes through the single-frame trunk (``Q z`` beside ``z``, stem and
    ``stages`` residual blocks, weights shared by all frames: one batched pass over the ``n T`` frames);
    the ``T`` feature maps are stacked along the channels, fused by a 3x3 convolution to
    ``context_channels`` and ``context_stages`` residual blocks (the temporal context: the targets move
    together by a few hundredths of a pixel per frame, so the neighbours sharpen the centre frame's
    evidence under read noise), and the heads of :class:`Localizer` give the centre frame's per-cell
    detections (same dict). ``centre_index`` (the frame's place in its trajectory) is accepted for the
    window interface and not read: the network is the same at every time. Decoded by :func:`points`.

    Fields as :class:`Localizer`, plus ``context_stages`` and ``context_channels``.
    """

    context_stages: int = 2
    context_channels: int = 32

    #: windows in, the centre frames' per-cell detections out
    KIND = kinds.WINDOW_POINTS

    @nn.compact
    def __call__(self, windows: Float[Array, "n t m m"], centre_index=None, *, q=None) -> dict[str, Array]:
        self._check_fields()
        _checks.positive_int("context_stages", self.context_stages, minimum=0)
        _checks.positive_int("context_channels", self.context_channels)
        z, q = self._float_inputs(windows, q, 4, "windows")
        n, t, m = z.shape[0], z.shape[1], self.size
        if t % 2 == 0:
            raise ValueError(f"windows must have an odd number of frames, got {t}")
        h = self._frame_features(z.reshape(n * t, m, m), q, prefix="frame_")
        h = h.reshape(n, t, m, m, self.channels).transpose(0, 2, 3, 1, 4).reshape(n, m, m, t * self.channels)
        h = nn.relu(
            nn.Conv(self.context_channels, (3, 3), padding="SAME", dtype=z.dtype, name="context_stem")(h)
        )
        h = _residual_blocks(h, self.context_stages, self.context_channels, z.dtype, "context_")
        return self._heads(h)


def points(
    outputs: dict[str, Array],
    *,
    threshold=THRESHOLD,
    max_points: int = MAX_POINTS,
    merge_radius=MERGE_RADIUS,
) -> dict[str, Array]:
    """Detections of a localiser's outputs, in the format of :func:`csist_jax.refine.localize`.

    A target near a cell edge is claimed by two or more neighbouring cells that share its probability
    (each alone may fall below ``threshold``) and point at the same place. So the ``2 max_points`` most
    probable cells are candidates, and candidates whose predicted positions lie within ``merge_radius``
    px of a more probable one are merged into it, most probable first (greedy): probabilities add
    (capped at 1), position and predicted error are their probability-weighted means. The default
    radius is half CSIST-100K's minimum separation (SPEC sec. 4), so two real targets stay two;
    ``merge_radius=0`` turns merging off. Detections are the merged candidates with ``p >= threshold``,
    the ``max_points`` most probable in order of decreasing ``p``. Pure and jittable (``max_points``
    must be a Python int; ``threshold`` and ``merge_radius`` may be traced); no loop over the batch.

    Returns ``{"points": [n, M, 3] (x, y, score), "count": [n] int32, "brightness": [n, M],
    "position_std": [n, M] (px), "probability": [n, M]}``, ``M = max_points``; rows beyond ``count`` are
    zero. ``score = p / (1 + s / SCORE_SCALE)`` with ``s = sqrt(s_x^2 + s_y^2)``: the refinement's score
    (:func:`csist_jax.refine.score.position_score`) weighted by the probability. ``points`` and ``count``
    go straight into :func:`csist_jax.metrics.cso_map_from_points`.
    """
    if isinstance(max_points, jax.core.Tracer):
        raise TypeError("max_points must be a Python int (bind it before jax.jit), got a traced value")
    _checks.positive_int("max_points", max_points)
    _checks.in_range("threshold", threshold, 0.0, 1.0, note="a probability")
    _checks.nonnegative("merge_radius", merge_radius)
    missing = sorted({"logit", "position", "brightness", "log_std"} - set(outputs))
    if missing:
        raise ValueError(f"outputs must be a localiser's output dict; missing {missing}")
    logit = outputs["logit"]
    n = logit.shape[0]
    cells = logit.shape[1] * logit.shape[2]
    if max_points > cells:
        raise ValueError(f"max_points must be at most the {cells} cells, got {max_points}")
    candidates = min(2 * max_points, cells)
    p = jax.nn.sigmoid(logit.reshape(n, cells).astype(jnp.float32))
    prob, index = jax.lax.top_k(p, candidates)

    def take(a):
        a = a.reshape((n, cells) + a.shape[3:]).astype(jnp.float32)
        return jnp.take_along_axis(a, index.reshape((n, candidates) + (1,) * (a.ndim - 2)), axis=1)

    xy = take(outputs["position"])
    std = jnp.sqrt(jnp.sum(jnp.exp(2.0 * take(outputs["log_std"])[..., :2]), axis=-1))
    brightness = take(outputs["brightness"])
    # owner[i, j] = 1 where candidate j is merged into candidate i (its own owner when it stays)
    near = jnp.sum((xy[:, :, None, :] - xy[:, None, :, :]) ** 2, axis=-1) < jnp.square(merge_radius)
    order = jnp.arange(candidates)

    def claim(i, carry):
        absorbed, owner = carry  # [n, K] merged into an earlier candidate; [n, K, K] who owns whom
        grab = near[:, i, :] & (order > i)[None, :] & ~absorbed & ~absorbed[:, i, None]
        return absorbed | grab, owner.at[:, i, :].add(grab.astype(owner.dtype))

    start = (
        jnp.zeros((n, candidates), bool),
        jnp.broadcast_to(jnp.eye(candidates), (n, candidates, candidates)),
    )
    absorbed, owner = jax.lax.fori_loop(0, candidates, claim, start)
    owned = owner * prob[:, None, :]  # [n, K, K] probability mass each owner gathers
    mass = jnp.sum(owned, axis=2)
    weights = owned / jnp.maximum(mass, 1e-12)[..., None]
    merged_p = jnp.where(absorbed, 0.0, jnp.minimum(mass, 1.0))
    merged_xy = jnp.einsum("nij,njd->nid", weights, xy)
    merged_std = jnp.einsum("nij,nj->ni", weights, std)
    merged_b = jnp.einsum("nij,nj->ni", weights, brightness)
    top, pick = jax.lax.top_k(merged_p, max_points)
    keep = (top >= threshold).astype(jnp.float32)
    count = jnp.sum(keep, axis=1).astype(jnp.int32)
    gather = lambda a: jnp.take_along_axis(a, pick.reshape(pick.shape + (1,) * (a.ndim - 2)), axis=1)  # noqa: E731
    std = gather(merged_std)
    score = top / (1.0 + std / SCORE_SCALE)
    return {
        "points": jnp.concatenate([gather(merged_xy), score[..., None]], axis=-1) * keep[..., None],
        "count": count,
        "brightness": gather(merged_b) * keep,
        "position_std": std * keep,
        "probability": top * keep,
    }


__all__ = [
    "BRIGHTNESS_LOG_STD",
    "WindowLocalizer",
    "HEADS",
    "Localizer",
    "MAX_POINTS",
    "MERGE_RADIUS",
    "POSITION_LOG_STD",
    "THRESHOLD",
    "fold",
    "points",
    "unfold",
]
