r"""Pieces shared by the deep unfolding networks: the unrolled loop, convolutions, per-sample dynamic
convolution and the LSK dynamic threshold.

Every single-frame network is the ISTA iteration of :mod:`csist_jax.solvers` with trainable parts,

    x_0 = Q z,        r_k = x_k - lam_k Phi^T (Phi x_k - z),        x_{k+1} = P_k(r_k),

run by :func:`unroll`: a Python loop over the stages (XLA sees the whole unrolled graph; a rolled
``lax.scan`` makes the backward pass several times slower on CPU). With ``P_k`` the analytic proximal map
and ``lam_k = 1 / ||Phi||^2`` nothing is trained and the loop is analytic ISTA
(``tests/models/test_models.py`` checks this against :func:`csist_jax.solvers.ista`).

The common frames of the HR-map networks live here too: :class:`MapNetwork` (frames),
:class:`WindowNetwork` (windows), :class:`UnfoldingNetwork` (the loop above) and
:class:`SuperResolutionNetwork`, the frame of the super-resolution baselines, which use neither ``Q`` nor
``Phi`` and hold neither (``USES_PHYSICS = False``).

Feature maps are NHWC (``[n, hr, hr, channels]``); HR maps ``[n, hr, hr]``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int

from csist_jax import _checks, physics
from csist_jax.models import kinds, objectives
from csist_jax.solvers import gradient_step, soft_threshold

#: Xavier-normal (Glorot) with an untruncated normal, as ``torch.nn.init.xavier_normal_``: the published
#: initialisation of the unfolding convolutions.
xavier_normal = nn.initializers.variance_scaling(1.0, "fan_avg", "normal")

#: ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``: PyTorch's default for ``nn.Linear`` / ``nn.Conv2d`` weights.
torch_default_kernel = nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")


def torch_default_bias(fan_in: int):
    """``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``: PyTorch's default bias initialisation."""
    bound = 1.0 / np.sqrt(fan_in)

    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


def conv3(features: int, name: str | None = None) -> nn.Conv:
    """A 3x3 'same' convolution without bias, Xavier-normal: the unfolding networks' transform."""
    return nn.Conv(features, (3, 3), padding="SAME", use_bias=False, kernel_init=xavier_normal, name=name)


def torch_conv(features: int, size: int, in_features: int, name: str | None = None) -> nn.Conv:
    """A 'same' convolution with bias and PyTorch's default initialisation (for the LSK block)."""
    return nn.Conv(
        features,
        (size, size),
        padding="SAME",
        kernel_init=torch_default_kernel,
        bias_init=torch_default_bias(in_features * size * size),
        name=name,
    )


def unroll(
    stages: Sequence[Callable],
    x0: Float[Array, "n hr hr"],
    z: Float[Array, "n m m"],
    operator,
) -> tuple[Float[Array, "n hr hr"], list]:
    """Run ``x_{k+1}, aux_k = stages[k](x_k, z, operator)`` for every stage in order.

    Returns the final map and the list of per-stage auxiliary outputs (symmetry residuals, thresholds).
    This is the one loop every network (and analytic ISTA, with untrained stages) goes through.
    """
    x = x0
    aux = []
    for stage in stages:
        x, a = stage(x, z, operator)
        aux.append(a)
    return x, aux


def analytic_ista_stage(step, lam, *, nonneg: bool = True) -> Callable:
    """The untrained stage: ``x_next = prox_{step lam}(x - step Phi^T (Phi x - z))`` (analytic ISTA)."""

    def stage(x, z, operator):
        r = gradient_step(x, z, operator, step)
        if nonneg:
            return jnp.maximum(r - step * lam, 0.0), {}
        return soft_threshold(r, step * lam), {}

    return stage


def per_sample(fn: Callable) -> Callable:
    """``fn`` applied to each sample of its (batched) arguments in turn: a ``lax.map`` over the batch.

    Only the opt-in ``batch_exact`` mode of the networks uses it. XLA picks matrix-product kernels by
    operand shape (XLA:CPU's Eigen blocking, cuBLAS/cuDNN algorithms), so a product whose rows are the
    batch can round differently for a batch of 1, 2 or 64; running one sample at a time makes a
    sample's output bit-identical alone and in any batch on XLA:CPU. It serialises the batch into many
    small kernels, which on a GPU/TPU costs several times the batched program's time, and even then the
    convolutions (cuDNN) may still differ across batch sizes on a GPU.
    """

    def mapped(*args):
        return jax.lax.map(lambda a: fn(*a), args)

    return mapped


def rows(fn: Callable, exact: bool = False) -> Callable:
    """``fn`` (written for a batch of row vectors, e.g. ``lambda v: v @ W.T``) as one batched product,
    or with ``exact=True`` one sample at a time (:func:`per_sample`, the ``batch_exact`` mode)."""
    return per_sample(fn) if exact else fn


#: the ridge of the networks' default ``Q``, :func:`csist_jax.physics.q_init` with ``labels=None``
DEFAULT_Q_RIDGE = 1e-3


def _cast_floating(a, dtype):
    return jnp.asarray(a).astype(dtype) if jnp.issubdtype(jnp.result_type(a), jnp.inexact) else a


def network_operator(
    c: int, size: int, sigma: float, dtype, exact: bool = False, operator=None
) -> physics.SamplingOperator:
    """The ``Phi`` a network runs, in the network's compute ``dtype``; per sample when ``exact``.

    ``operator=None`` is the analytic operator for ``(c, size, sigma)``; otherwise ``operator`` must be a
    :class:`csist_jax.physics.SamplingOperator` mapping ``[size c, size c]`` maps to ``[size, size]``
    images (``TypeError`` / ``ValueError`` naming ``operator`` if not). Its floating arrays are cast to
    ``dtype`` (differentiably, so a learned operator trains through the network).
    """
    if operator is None:
        op = physics.sampling_operator(c, size, sigma)
        op = jax.tree.map(lambda a: a.astype(dtype), op)
    else:
        if not isinstance(operator, physics.SamplingOperator):
            raise TypeError(
                "operator must be a csist_jax.physics.SamplingOperator (e.g. physics.sampling_operator, "
                f"physics.DenseOperator) or None, got {type(operator).__name__}"
            )
        hr = size * c
        if tuple(operator.in_shape) != (hr, hr) or tuple(operator.out_shape) != (size, size):
            raise ValueError(
                f"operator must map [{hr}, {hr}] HR maps to [{size}, {size}] images for this network "
                f"(c={c}, size={size}), got in_shape {tuple(operator.in_shape)} and out_shape "
                f"{tuple(operator.out_shape)}"
            )
        op = jax.tree.map(lambda a: _cast_floating(a, dtype), operator)
    if exact and not isinstance(op, physics.PerSampleOperator):
        op = physics.PerSampleOperator(op)
    return op


def constant_q(q_init, operator: physics.SamplingOperator) -> Float[Array, "hr2 m2"]:
    """The value of a network's ``"constants"`` ``Q`` at ``init``: the module field ``q_init`` checked
    (``[hr^2, size^2]``, float32) or, when that is ``None``, the regularised pseudo-inverse of
    ``operator``, :func:`csist_jax.physics.q_init` with ``labels=None`` and :data:`DEFAULT_Q_RIDGE`."""
    if q_init is None:
        return physics.q_init(None, operator, ridge=DEFAULT_Q_RIDGE)
    q = jnp.asarray(q_init, jnp.float32)
    want = (operator.hr * operator.hr, operator.size * operator.size)
    if q.shape != want:
        raise ValueError(f"q_init must have shape {want}, got {tuple(q.shape)}")
    return q


def fit_q(module, targets):
    """``module`` (a network holding ``Q``: fields ``c``, ``size``, ``q_init`` and an ``operator()``) with
    ``q_init`` the least-squares ``Q`` of the HR labels of ``targets`` ``[N, K, 3]``:
    :func:`csist_jax.physics.q_init` of :func:`csist_jax.physics.hr_label` through ``module.operator()``
    (float32; SPEC's ``Q_init``). Every other field is kept."""
    labels = physics.hr_label(targets, module.c, module.size)
    return module.clone(q_init=np.asarray(physics.q_init(labels, module.operator())))


def call_q(constant: Float[Array, "hr2 m2"], q, hr: int, size: int, dtype) -> Float[Array, "hr2 m2"]:
    """The ``Q`` a network call uses, in ``dtype``: ``q`` when given (``[hr^2, size^2]``, ``ValueError``
    naming ``q`` otherwise), else the ``"constants"`` one."""
    if q is None:
        return constant.astype(dtype)
    want = (hr * hr, size * size)
    if tuple(jnp.shape(q)) != want:
        raise ValueError(f"q must have shape {want} ([hr^2, size^2]) or be None, got {tuple(jnp.shape(q))}")
    _checks.finite("q", q)
    return jnp.asarray(q).astype(dtype)


def linear_init(
    q: Float[Array, "hr2 m2"], z: Float[Array, "n m m"], hr: int, exact: bool = False
) -> Float[Array, "n hr hr"]:
    """``x_0 = Q z`` per image (row-major flattening, SPEC sec. 2), as one ``[n, m^2] @ Q^T`` product."""
    # explicit sizes: ``reshape(n, -1)`` is ambiguous (a ZeroDivisionError) for an empty batch
    flat = rows(lambda v: v @ q.T, exact)(z.reshape(z.shape[0], z.shape[-2] * z.shape[-1]))
    return flat.reshape(z.shape[0], hr, hr)


class Dense(nn.Module):
    """``y = x W + b`` over a batch of rows with PyTorch's ``nn.Linear`` initialisation (one product;
    per sample with ``exact``, see :func:`rows`)."""

    features: int
    in_features: int
    exact: bool = False

    @nn.compact
    def __call__(self, x: Float[Array, "n d"]) -> Float[Array, "n f"]:
        kernel = self.param("kernel", torch_default_kernel, (self.in_features, self.features))
        bias = self.param("bias", torch_default_bias(self.in_features), (self.features,))
        return rows(lambda v: v @ kernel + bias, self.exact)(x)


def dynamic_conv3(r: Float[Array, "n h w"], kernels: Float[Array, "n 3 3"]) -> Float[Array, "n h w"]:
    """Per-sample 3x3 cross-correlation with zero padding: ``out[i, j] = sum_ab k[a, b] r[i+a-1, j+b-1]``.

    Each sample uses its own kernel (no mixing across the batch). Written as nine shifted
    multiply-adds: on XLA:CPU this is far faster to differentiate than a vmapped or grouped convolution.
    """
    h, w = r.shape[-2:]
    padded = jnp.pad(r, ((0, 0), (1, 1), (1, 1)))
    out = jnp.zeros_like(r)
    for a in range(3):
        for b in range(3):
            out = out + kernels[:, a, b, None, None] * padded[:, a : a + h, b : b + w]
    return out


class Pointwise(nn.Module):
    """A 1x1 convolution with bias (PyTorch's default initialisation), computed as one matrix product.

    Parameters have the shapes of ``nn.Conv`` (``kernel [1, 1, in, out]``); the flat product is about
    2.5x faster to differentiate than XLA:CPU's 1x1 convolution.
    """

    features: int
    in_features: int

    @nn.compact
    def __call__(self, x: Float[Array, "n h w c"]) -> Float[Array, "n h w f"]:
        kernel = self.param("kernel", torch_default_kernel, (1, 1, self.in_features, self.features))
        bias = self.param("bias", torch_default_bias(self.in_features), (self.features,))
        flat = x.reshape(-1, self.in_features) @ kernel[0, 0] + bias
        return flat.reshape(x.shape[:-1] + (self.features,))


def channel_sum(g: Float[Array, "... c"]) -> Float[Array, " c"]:
    """Sum over every axis but the last, rows first: ``[n, h, w, c]`` -> ``[c]``.

    The rows are regrouped ``[rows / k, k * c]`` (``k * c`` up to 4096), reduced along the first axis,
    then over the ``k`` blocks: about 15x faster on XLA:CPU than one reduction with only ``c``
    contiguous values per step (64 channels, batch 64 of 33x33: 0.5 ms vs 8 ms).
    """
    c = g.shape[-1]
    rows = int(np.prod(g.shape[:-1]))
    if rows == 0:  # an empty batch: the sum over nothing
        return jnp.zeros((c,), g.dtype)
    per_row = max(k for k in range(1, min(rows, max(1, 4096 // c)) + 1) if rows % k == 0)
    wide = g.reshape(rows // per_row, per_row * c)
    return jnp.sum(jnp.sum(wide, axis=0).reshape(per_row, c), axis=0)


def _shifted_sum(x: Float[Array, "n h w c"], kernel: Float[Array, "3 3 c"]) -> Float[Array, "n h w c"]:
    """``out[i, j] = sum_ab kernel[a, b] x[i+a-1, j+b-1]`` per channel, zero padding: nine shifts."""
    h, w = x.shape[1:3]
    padded = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    out = jnp.zeros_like(x)
    for a in range(3):
        for b in range(3):
            out = out + padded[:, a : a + h, b : b + w, :] * kernel[a, b]
    return out


@jax.custom_vjp
def depthwise3x3(x: Float[Array, "n h w c"], kernel: Float[Array, "3 3 c"]) -> Float[Array, "n h w c"]:
    """Depthwise 3x3 'same' cross-correlation (no bias) as nine shifted multiply-adds.

    The gradient is written by hand: for the input, the same correlation with the flipped kernel; for
    the kernel, each tap's sum of ``shifted x * g`` by :func:`channel_sum`. Left to autodiff, XLA:CPU
    merges the nine kernel-tap reductions into ``reduce-window`` operations that take about 19 ms per
    call at batch 64, 64 channels; by hand, a DISTA-Net training step is about 0.3 s shorter.
    """
    return _shifted_sum(x, kernel)


def _depthwise3x3_fwd(x, kernel):
    return _shifted_sum(x, kernel), (x, kernel)


def _depthwise3x3_bwd(residuals, g):
    x, kernel = residuals
    n, h, w, c = x.shape
    dx = _shifted_sum(g, kernel[::-1, ::-1])
    padded = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    taps = []
    for a in range(3):
        for b in range(3):
            taps.append(channel_sum(padded[:, a : a + h, b : b + w, :] * g))
    return dx, jnp.stack(taps).reshape(3, 3, c).astype(kernel.dtype)


depthwise3x3.defvjp(_depthwise3x3_fwd, _depthwise3x3_bwd)


class Depthwise3(nn.Module):
    """A depthwise 3x3 'same' convolution with bias (:func:`depthwise3x3`).

    Parameters have the shapes of a grouped ``nn.Conv`` (``kernel [3, 3, 1, C]``); the shifts are
    several times faster on XLA:CPU than its grouped convolution, forward and backward.
    """

    channels: int

    @nn.compact
    def __call__(self, x: Float[Array, "n h w c"]) -> Float[Array, "n h w c"]:
        kernel = self.param("kernel", torch_default_kernel, (3, 3, 1, self.channels))
        bias = self.param("bias", torch_default_bias(9), (self.channels,))
        return depthwise3x3(x, kernel[:, :, 0, :]) + bias


class LSKThreshold(nn.Module):
    """Large-selective-kernel attention giving DISTA-Net's dynamic threshold ``theta = x * LSK(x)``.

    ``a1 = W0 x`` (1x1, C -> C/2) and ``a2 = W1 dw3(x)`` (depthwise 3x3 then 1x1, C -> C/2);
    ``[mean_c, max_c]`` over the concatenation ``[a1, a2]`` -> 3x3 conv (2 -> 2) -> sigmoid masks
    ``(m1, m2)``; ``theta = x * Wm(a1 m1 + a2 m2)`` (1x1, C/2 -> C). All convolutions have biases.
    """

    channels: int

    @nn.compact
    def __call__(self, x: Float[Array, "n h w c"]) -> Float[Array, "n h w c"]:
        c, half = self.channels, self.channels // 2
        a2 = Depthwise3(c, name="depthwise")(x)
        a1 = Pointwise(half, c, name="squeeze0")(x)
        a2 = Pointwise(half, c, name="squeeze1")(a2)
        both = jnp.concatenate([a1, a2], axis=-1)
        pooled = jnp.concatenate(
            [jnp.mean(both, axis=-1, keepdims=True), jnp.max(both, axis=-1, keepdims=True)], axis=-1
        )
        masks = nn.sigmoid(torch_conv(2, 3, 2, name="select")(pooled))
        attn = a1 * masks[..., 0:1] + a2 * masks[..., 1:2]
        return x * Pointwise(c, half, name="expand")(attn)


def start_map(
    start: str, allowed: Sequence[str], z: Float[Array, "n m m"], q, operator, c: int, exact: bool = False
) -> Float[Array, "n hr hr"]:
    """The first HR estimate of an unrolled network, by name: ``"q"`` (``Q z``, every network of the
    project), ``"adjoint"`` (``Phi^T z``) or ``"nearest"`` (each pixel repeated over its ``c x c`` cells);
    ``allowed`` names the ones the network offers (a clear error for any other)."""
    if start not in allowed:
        raise ValueError(f"start must be one of {list(allowed)}, got {start!r}")
    if start == "q":
        return linear_init(q, z, z.shape[-1] * c, exact)
    if start == "adjoint":
        return operator.adjoint(z)
    return jnp.repeat(jnp.repeat(z, c, axis=1), c, axis=2)


class MapNetwork(nn.Module):
    """Common frame of every single-frame network that maps images to HR maps.

    ``__call__(images, return_aux=False, *, operator=None, q=None)``: ``images`` ``[n, size, size]`` raw
    0..255 values (8-bit frames are cast to float32), returns HR maps ``[n, hr, hr]``; with
    ``return_aux=True`` ``(maps, aux)``, ``aux`` a list of per-stage dicts (empty for a network with no
    stage terms). Concrete images (an eager ``apply``, not under ``jit``) must be finite (``ValueError``
    naming ``images``); an empty batch ``[0, size, size]`` gives empty maps ``[0, hr, hr]``. A subclass
    implements :meth:`forward`. A network that uses the physics (``USES_PHYSICS = True``, the default: the
    unfolding networks, DeRefNet) holds the fixed ``Q`` (``[hr^2, size^2]``) in its ``"constants"``
    collection and its :meth:`forward` receives ``Q`` and the operator ``Phi``; one that does not
    (``USES_PHYSICS = False``, :class:`SuperResolutionNetwork`) holds no ``Q`` (no ``"constants"``
    collection at all), its :meth:`forward` receives the frames alone, and a ``q``, ``operator`` or
    ``q_init`` given to it is a ``TypeError``. Training asks every model :meth:`fit_constants`.
    """

    c: int = 3
    size: int = 11
    sigma: float = 0.5
    q_init: np.ndarray | None = None
    batch_exact: bool = False

    #: frames in, HR maps out (:mod:`csist_jax.models.kinds`)
    KIND = kinds.FRAME_MAPS
    #: whether the network reads ``Q`` and the operator ``Phi``: it then holds ``Q`` (``"constants"``),
    #: :meth:`forward` receives ``(z, Q, Phi)`` and :meth:`fit_constants` fits ``Q``; when False, none of it
    USES_PHYSICS = True
    #: the sub-group of the training config's ``loss`` group :meth:`objective`'s options are read from
    LOSS_GROUP = "unfolding"
    #: the fields of that sub-group :meth:`objective` reads (``config.loss.unfolding.sym_weight``)
    LOSS_OPTIONS = ("sym_weight",)

    @property
    def hr(self) -> int:
        return self.size * self.c

    def objective(self, maps, aux, labels, *, sym_weight=objectives.SYM_WEIGHT):
        """The training loss of ``(maps, aux)`` against the HR ``labels``: SPEC sec. 7's
        ``mse + sym_weight * sym`` (:func:`csist_jax.models.objectives.unfolding_loss`). A network with
        another published loss overrides this method and its ``LOSS_OPTIONS``."""
        return objectives.unfolding_loss(maps, aux, labels, sym_weight=sym_weight)

    def decode(self, maps) -> dict:
        """What the metrics read: ``{"maps": maps}``."""
        return {"maps": maps}

    def operator(self, dtype=jnp.float32, operator=None) -> physics.SamplingOperator:
        """The ``Phi`` this network runs in ``dtype`` (per sample in the ``batch_exact`` mode): the
        analytic one of ``(c, size, sigma)``, or ``operator`` checked and cast (:func:`network_operator`)."""
        return network_operator(self.c, self.size, self.sigma, dtype, self.batch_exact, operator)

    def fit_constants(self, targets):
        """This network for training on ``targets`` ``[N, K, 3]`` (training targets, as
        :func:`csist_jax.physics.hr_label` reads them): the same network with ``q_init`` the least-squares
        ``Q`` of their HR labels (:func:`fit_q`) when it uses the physics, itself unchanged when it does
        not (it holds no ``Q``). The training route calls this for every model; a model with other
        constants fitted to its training data overrides it."""
        return fit_q(self, targets) if self.USES_PHYSICS else self

    def forward(self, z: Float[Array, "n m m"], q: Float[Array, "hr2 m2"], operator) -> tuple:
        """``(maps [n, hr, hr], aux)`` from the float images ``z``, ``Q`` and the operator (the images
        alone for a network with ``USES_PHYSICS = False``)."""
        raise NotImplementedError

    def _q(self, q, dtype):
        def init():
            return constant_q(self.q_init, self.operator(dtype))

        return call_q(self.variable("constants", "q_init", init).value, q, self.hr, self.size, dtype)

    def _inputs(self, frames, q, operator) -> tuple:
        """The arguments of :meth:`forward`: ``(z, Q, Phi)``, the frames as floats (stored 8-bit frames
        cast to float32) and the call's ``Q`` and operator (or the stored / analytic ones) in their
        dtype; ``(z,)`` for a network that does not use them (``TypeError`` if any is given)."""
        z = jnp.asarray(frames)
        if not jnp.issubdtype(z.dtype, jnp.floating):
            z = z.astype(jnp.float32)
        if not self.USES_PHYSICS:
            arguments = (("q", q), ("operator", operator), ("q_init", self.q_init))
            given = [k for k, v in arguments if v is not None]
            if given:
                raise TypeError(
                    f"{type(self).__name__} uses neither Q nor the operator (USES_PHYSICS = False): "
                    f"{', '.join(given)} must be None"
                )
            return (z,)
        return z, self._q(q, z.dtype), self.operator(z.dtype, operator)

    @nn.compact
    def __call__(
        self,
        images: Float[Array, "n m m"],
        return_aux: bool = False,
        *,
        operator: physics.SamplingOperator | None = None,
        q: Float[Array, "hr2 m2"] | None = None,
    ):
        _checks.trailing_shape("images", images, (self.size, self.size))
        if images.ndim != 3:
            raise ValueError(f"images must have shape [n, {self.size}, {self.size}], got {images.shape}")
        _checks.finite("images", images)  # a no-op under jit (traced values are unknown)
        x, aux = self.forward(*self._inputs(images, q, operator))
        return (x, aux) if return_aux else x


class SuperResolutionNetwork(MapNetwork):
    """Common frame of the super-resolution baselines (:mod:`csist_jax.models.baselines`): learned
    layers map the frames to HR maps with no sensor model.

    ``USES_PHYSICS = False``: such a network holds no ``Q`` (``init`` creates no ``"constants"``
    collection and no ``Q``-shaped parameter), training fits none (:meth:`fit_constants` returns the
    network unchanged), and a subclass implements ``forward(z) -> (maps, aux)`` on the float frames
    alone; ``apply(..., q=...)`` or ``operator=...`` and a ``q_init`` field are a ``TypeError``. Calls,
    kinds, objectives and checkpoints are otherwise those of :class:`MapNetwork`.
    """

    USES_PHYSICS = False

    def forward(self, z: Float[Array, "n m m"]) -> tuple:
        """``(maps [n, hr, hr], aux)`` from the float images ``z``."""
        raise NotImplementedError


class WindowNetwork(MapNetwork):
    """Common frame of the multi-frame networks, which map windows of frames to their centre's HR map.

    ``__call__(windows, centre_index, return_aux=False, *, operator=None, q=None)``: ``windows``
    ``[n, T, size, size]`` (odd ``T`` of at least ``MIN_FRAMES``; raw 0..255 values, 8-bit frames cast to
    float32) with the index of each window's centre frame in its trajectory ``[n]``; returns the centre
    frames' HR maps ``[n, hr, hr]``, with ``return_aux=True`` ``(maps, aux)``. A subclass implements
    :meth:`forward_windows`; the operator and ``Q`` (and ``USES_PHYSICS``) are handled as in
    :class:`MapNetwork`, and so are non-finite concrete windows (``ValueError`` naming ``windows``) and an
    empty batch.
    """

    MIN_FRAMES = 1  # the fewest frames of a window
    #: windows in, the centre frames' HR maps out (:mod:`csist_jax.models.kinds`)
    KIND = kinds.WINDOW_MAPS
    #: the sub-group of the training config's ``loss`` group, and its fields :meth:`objective` reads
    #: (``config.loss.derefnet.objective``)
    LOSS_GROUP = "derefnet"
    LOSS_OPTIONS = ("objective",)

    def objective(self, maps, aux, labels, *, objective="toolkit"):
        """DeRefNet's loss, ``objective`` ``"toolkit"`` or ``"paper"``
        (:func:`csist_jax.models.objectives.derefnet_loss`); another multi-frame network with its own
        published loss overrides this method and its ``LOSS_OPTIONS``."""
        return objectives.derefnet_loss(
            maps, aux, labels, objective=objective, n_frames=getattr(self, "n_frames", objectives.N_FRAMES)
        )

    def forward_windows(self, z, centre_index, q, operator) -> tuple:
        """``(maps [n, hr, hr], aux)`` from the float windows ``z`` ``[n, T, size, size]`` (without ``q``
        and ``operator`` for a network with ``USES_PHYSICS = False``)."""
        raise NotImplementedError

    @nn.compact
    def __call__(
        self,
        windows: Float[Array, "n t m m"],
        centre_index: Int[Array, " n"],
        return_aux: bool = False,
        *,
        operator: physics.SamplingOperator | None = None,
        q: Float[Array, "hr2 m2"] | None = None,
    ):
        _checks.trailing_shape("windows", windows, (self.size, self.size))
        if windows.ndim != 4 or windows.shape[1] % 2 != 1 or windows.shape[1] < self.MIN_FRAMES:
            raise ValueError(
                f"windows must have shape [n, T, {self.size}, {self.size}] with odd T >= {self.MIN_FRAMES}, "
                f"got {windows.shape}"
            )
        n = windows.shape[0]
        if jnp.shape(centre_index) != (n,):
            raise ValueError(
                f"centre_index must have shape [{n}] (one index per window), got {jnp.shape(centre_index)}"
            )
        _checks.finite("windows", windows)  # a no-op under jit (traced values are unknown)
        z, *physics_inputs = self._inputs(windows, q, operator)
        x, aux = self.forward_windows(z, centre_index, *physics_inputs)
        return (x, aux) if return_aux else x


def window_frame_index(centre_index: Int[Array, " n"], t: int) -> Int[Array, "n t"]:
    """Each frame's index in its trajectory, ``[n, T]`` int32, from the windows' centre indices."""
    return jnp.asarray(centre_index, jnp.int32)[:, None] + jnp.arange(-(t // 2), t // 2 + 1)


class UnfoldingNetwork(MapNetwork):
    """Common frame of the single-frame networks: ``Q z`` then :func:`unroll` over ``make_stages()``.

    ``__call__(images, return_aux=False, *, operator=None, q=None)``: ``images`` ``[n, size, size]`` raw
    0..255 values, returns HR maps ``[n, hr, hr]``; with ``return_aux=True`` returns ``(maps, aux)``
    where ``aux`` is the list of per-stage dicts (``"sym"``: the symmetry residual for the training
    loss, ...).

    The operator and ``Q`` are inputs. ``operator=None`` runs the analytic ``Phi`` of ``(c, size,
    sigma)``; any :class:`csist_jax.physics.SamplingOperator` with ``in_shape (hr, hr)`` and
    ``out_shape (size, size)`` runs instead (a mis-specified PSF, a learned ``DenseOperator`` trained
    jointly with the network: gradients flow into its arrays). ``q=None`` uses the fixed ``Q``
    (``[hr^2, size^2]``, not a parameter) of the ``"constants"`` collection, initialised from the field
    ``q_init`` (e.g. :func:`csist_jax.physics.q_init` on training labels) or, when that is ``None``, from
    the analytic operator's regularised pseudo-inverse (:func:`constant_q`); a given ``q`` replaces it for
    that call. The parameters do not depend on either (LISTA's initial ``W = I - Q A``, ``B = Q`` take
    the call's ``A`` and ``Q`` at ``init``).

    Every product is batched: one program for the whole batch, no loop over samples. A sample's output
    does not depend on the other samples of its batch up to float rounding (XLA picks kernels by
    operand shape; tested at 1e-5 of the map's scale on every backend, ``tests/models/test_models.py``).
    ``batch_exact=True`` (off by default) runs the products that contract within a sample one sample at
    a time instead (:func:`per_sample`, :class:`csist_jax.physics.PerSampleOperator`): bit-identical
    outputs alone and in any batch on XLA:CPU, at the cost of serialising the batch (several times
    slower on a GPU).

    The network computes in the dtype of its (floating) input: float32 by default; bfloat16 images with
    bfloat16 variables give a bfloat16 forward pass (the operator and ``Q`` are cast to match).
    """

    def make_stages(self, q: Float[Array, "hr2 m2"], operator) -> list:
        """The stage modules, in order (``q`` and ``operator`` are there for initialisers that need them)."""
        raise NotImplementedError

    #: the first estimates the network offers (:func:`start_map`); one with several has a ``start`` field
    STARTS = ("q",)

    def forward(self, z, q, operator) -> tuple:
        start = getattr(self, "start", self.STARTS[0])
        x0 = start_map(start, self.STARTS, z, q, operator, self.c, self.batch_exact)
        return unroll(self.make_stages(q, operator), x0, z, operator)
