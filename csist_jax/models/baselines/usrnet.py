r"""USRNet (Zhang, Van Gool and Timofte, CVPR 2020: deep unfolding network for super-resolution) as the
CSIST toolkit trains it for SeqCSIST (GrokCSO ``backbones/USRNet_bb.py``, ``detectors/USRNet_det.py``,
config ``c_3/USRNet.py``: the defaults, ``n_iter=8, h_nc=64, nc=[16, 32, 64, 128], nb=2``).

Half-quadratic splitting, unrolled ``K = 8`` times from ``x_0`` (the toolkit's start: ``z`` up-sampled by
``c``, nearest neighbour; ``start="q"`` gives ``x_0 = Q z`` instead):

    x'_k = argmin_x ||Phi x - z||^2 + alpha_k ||x - x_{k-1}||^2         (data module, closed form)
    x_k  = P([x'_k, beta_k])                                           (prior module, a ResUNet)

with ``(alpha_1..K, beta_1..K) = softplus(H([noise level, c])) + 1e-6``, ``H`` three 1x1 convolutions
``2 -> 64 -> 64 -> 2K`` with ReLU between (hyper-parameter module; the toolkit feeds noise level 0 and
``sf = 3``, here ``c``), and ``beta_k`` the constant second input channel of ``P``.

Data module. The toolkit solves the problem in closed form in the Fourier domain for its own degradation,
a 3x3 sampled Gaussian blur (sigma 0.5, circular) followed by keeping the top-left pixel of each ``c x c``
block. That is not the CSIST sensor; here the data step is the exact solve for our ``Phi`` (the
pixel-integrated Gaussian of the physics operator), by the same identity USRNet's FFT formula applies
(Woodbury):

    x'_k = (r - Phi^T (Phi Phi^T + alpha_k I)^{-1} Phi r) / alpha_k,    r = Phi^T z + alpha_k x_{k-1},

where ``Phi Phi^T`` is only ``121 x 121`` (one Cholesky factorisation per stage, for the whole batch).
It holds for any operator given to ``apply`` (separable or dense, learned ones included, and
differentiable in it); no parameters.

Prior module (the toolkit's ResUNet, no biases, ReLU): ``conv3(2->16)``; three down levels (``nb``
residual blocks ``x + conv3(relu(conv3(x)))``, then a 2x2 stride-2 convolution doubling the width:
16 -> 32 -> 64 -> 128); ``nb`` residual blocks at 128; three up levels (2x2 stride-2 transposed
convolution halving the width, then ``nb`` residual blocks), each fed the sum with the skip of its size;
``conv3(16->1)`` of the sum with the head's output. At ``c = 3`` (33 -> 16 -> 8 -> 4 -> 8 -> 16 -> 32)
the toolkit resizes the last up level's 32 x 32 output bilinearly to 33 x 33 before the last skip. For any
``c`` we resize each up level's output (bilinear, half-pixel centres) to its skip's size where they
differ; at ``c = 3`` this is exactly the toolkit's one resize. PyTorch's default initialisation
throughout (the toolkit sets none). Toolkit loss: ``mean((x_K - s)^2)`` only (no symmetry term; ``aux``
holds empty dicts).

Parameters: 1,063,344 (prior) + 5,392 (hyper-parameter module) = 1,068,736 at ``c = 3`` (any ``c``);
published 1.07M (SeqCSIST table): equal.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from csist_jax.models import layers
from csist_jax.models.baselines import blocks

#: PyTorch's default ``ConvTranspose2d`` weight init: U(+-1/sqrt(out * k * k)); flax's kernel is
#: ``[k, k, in, out]``, so that fan is flax's ``fan_out``
_transpose_init = nn.initializers.variance_scaling(1.0 / 3.0, "fan_out", "uniform")


class ResBlock(nn.Module):
    """``x + conv3(relu(conv3(x)))``, no biases."""

    features: int

    @nn.compact
    def __call__(self, x):
        f = self.features
        y = nn.relu(blocks.conv(f, f, 3, use_bias=False, name="conv1")(x))
        return x + blocks.conv(f, f, 3, use_bias=False, name="conv2")(y)


def _resize_to(x, like):
    """``x`` resized bilinearly (half-pixel centres) to the spatial size of ``like`` when they differ."""
    if x.shape[1:3] == like.shape[1:3]:
        return x
    return jax.image.resize(x, x.shape[:1] + like.shape[1:3] + x.shape[3:], method="bilinear")


class ResUNet(nn.Module):
    """USRNet's prior: a residual U-Net of 4 widths ``channels * (1, 2, 4, 8)``, ``nb`` blocks per level."""

    channels: int = 16
    nb: int = 2

    @nn.compact
    def __call__(self, x):
        widths = [self.channels * 2**i for i in range(4)]
        x1 = blocks.conv(widths[0], x.shape[-1], 3, use_bias=False, name="head")(x)
        skips = [x1]
        h = x1
        for level in range(3):
            for b in range(self.nb):
                h = ResBlock(widths[level], name=f"down{level}_res{b}")(h)
            h = blocks.conv(
                widths[level + 1],
                widths[level],
                2,
                stride=2,
                padding="VALID",
                use_bias=False,
                name=f"down{level}_conv",
            )(h)
            skips.append(h)
        for b in range(self.nb):
            h = ResBlock(widths[3], name=f"body_res{b}")(h)
        for level in (2, 1, 0):
            h = h + skips[level + 1]
            h = nn.ConvTranspose(
                widths[level],
                (2, 2),
                strides=(2, 2),
                padding="VALID",
                use_bias=False,
                kernel_init=_transpose_init,
                name=f"up{level}_conv",
            )(h)
            for b in range(self.nb):
                h = ResBlock(widths[level], name=f"up{level}_res{b}")(h)
            h = _resize_to(h, skips[level])
        return blocks.conv(1, widths[0], 3, use_bias=False, name="tail")(h + x1)


class HyPaNet(nn.Module):
    """Hyper-parameters ``(alpha_1..K, beta_1..K)`` from ``[noise level, scale]``: 1x1 convolutions
    ``2 -> hidden -> hidden -> 2K`` with ReLU, softplus, + 1e-6."""

    outputs: int
    hidden: int = 64

    @nn.compact
    def __call__(self, cond):
        h = nn.relu(blocks.conv(self.hidden, cond.shape[-1], 1, name="fc1")(cond))
        h = nn.relu(blocks.conv(self.hidden, self.hidden, 1, name="fc2")(h))
        return nn.softplus(blocks.conv(self.outputs, self.hidden, 1, name="fc3")(h)) + 1e-6


def _gram(operator):
    """``Phi Phi^T`` ``[M, M]`` (``M = size^2``) through the operator: ``Phi`` of the rows of ``Phi``."""
    m = operator.size * operator.size
    eye = jnp.eye(m, dtype=operator.dtype).reshape((m,) + operator.out_shape)
    return operator.forward(operator.adjoint(eye)).reshape(m, m)


def data_step(x, phi_t_z, operator, gram, alpha, exact: bool = False):
    """``argmin_u ||Phi u - z||^2 + alpha ||u - x||^2`` exactly, by Woodbury on ``Phi Phi^T`` (``gram``,
    ``[M, M]``): ``(r - Phi^T (gram + alpha I)^{-1} Phi r) / alpha`` with ``r = Phi^T z + alpha x``."""
    n = x.shape[0]
    r = phi_t_z + alpha * x
    chol = jnp.linalg.cholesky(gram + alpha * jnp.eye(gram.shape[0], dtype=gram.dtype))
    solve = layers.rows(lambda v: jax.scipy.linalg.cho_solve((chol, True), v.T).T, exact)
    pixels = operator.size * operator.size  # explicit: reshape(n, -1) is ambiguous for an empty batch
    w = solve(operator.forward(r).reshape(n, pixels)).reshape((n,) + operator.out_shape)
    return (r - operator.adjoint(w)) / alpha


class USRNet(layers.UnfoldingNetwork):
    """USRNet: ``n_iter`` data / prior stages with hyper-parameters from :class:`HyPaNet`.

    ``channels`` (16: the prior's first width, doubled per level), ``nb`` (2 residual blocks per level),
    ``h_nc`` (64: the hyper-parameter module's width), ``noise_level`` (0.0: its first input, as the
    toolkit feeds), ``start``: ``"nearest"`` (the toolkit's) or ``"q"`` (``x_0 = Q z``).
    """

    n_iter: int = 8
    channels: int = 16
    nb: int = 2
    h_nc: int = 64
    noise_level: float = 0.0
    STARTS = ("nearest", "q")
    start: str = "nearest"

    def make_stages(self, q, operator):
        k = self.n_iter
        cond = jnp.array([[[[self.noise_level, float(self.c)]]]], jnp.float32)
        ab = HyPaNet(2 * k, self.h_nc, name="hypa")(cond).reshape(2 * k)
        prior = ResUNet(self.channels, self.nb, name="prior")
        gram = _gram(operator)

        def make(i):
            def stage(x, z, operator):
                alpha = ab[i].astype(x.dtype)
                beta = jnp.broadcast_to(ab[k + i].astype(x.dtype), x.shape)
                u = data_step(x, operator.adjoint(z), operator, gram.astype(x.dtype), alpha, self.batch_exact)
                return prior(jnp.stack([u, beta], axis=-1))[..., 0], {}

            return stage

        return [make(i) for i in range(k)]


SMALL = {"usrnet": {"n_iter": 1, "channels": 4, "nb": 1, "h_nc": 8}}
PARAMS_C3 = {"usrnet": 1_068_736}
