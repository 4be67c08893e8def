"""EGASR, an edge-guided attention super-resolution network, as the GrokCSO toolkit trains it for
CSIST-100K (``configs/c_3/egasr.py``, ``grokcso/models/editor/egasr.py`` and
``grokcso/models/tricks/common.py``: the class defaults, 8 groups of 6 blocks of 32 channels). The toolkit's
code cites no paper for it and we could not identify the publication (the DISTA-Net paper lists it among
its comparison methods); this is the architecture of the toolkit's code: RCAN-style residual groups whose
blocks end in a core module with ECBSR-style Sobel / Laplacian edge convolutions and selective-kernel
fusion.

On the 11 x 11 frame (raw 0..255, no normalisation): a 3x3 conv 1 -> ``n_feats``; a shared 3x3 conv
(one weight, used twice: here and after the groups); ``n_resgroups`` residual edge-enhanced groups, each
followed by adding ``gamma`` (one trained scalar, initialised 0) times the output of the first shared
conv; the shared conv again; the sub-pixel up-sampler (3x3 conv to ``p^2 n_feats`` channels and a pixel
shuffle by ``p`` per prime factor ``p`` of ``c``, :class:`blocks.Upsampler`; the toolkit's handles 2^k and
3, where the two agree); a 3x3 conv ``n_feats`` -> 1; plus the input up-sampled bilinearly by ``c``
(half-pixel centres; the toolkit hard-codes a factor of 3).

A group is ``n_resblocks`` edge-guided residual attention blocks and a 3x3 conv, plus the group input. A
block is conv, PReLU (one slope), conv and the core module, plus the block input. The core module runs
two branches on its input ``x``: a residual block ``x + conv(PReLU_c(conv(x)))`` (per-channel PReLU, convs
initialised Kaiming-normal x 0.1 with zero bias) and an edge branch: three edge convolutions (a 1x1 conv
whose output is padded by one pixel with its own bias, then a fixed depthwise Sobel-x, Sobel-y or
Laplacian 3x3 template times a trained per-channel scale, plus a trained bias; run here as one ordinary
3x3 conv with the folded kernels, the same function, see :class:`EdgeConv`), concatenated, a 1x1 conv
back to ``n_feats``, and spatial attention (sigmoid of a bias-free 7x7 conv of the channel mean and max).
The two branches are fused by selective-kernel attention: the spatial mean of their sum, a linear layer
to ``d = max(n_feats / 2, 32)``, one linear layer back per branch, a softmax across the two branches per
channel, and the weighted sum.

Parameters at c = 3: 2,411,314. PyTorch's ``sum(p.numel() for p in EGASR().parameters())`` for the
toolkit's class gives 2,896,690, which is the published 2.897M (DISTA-Net Table 1), and includes
(a) 443,904 parameters of a 3x3 conv that every core module defines but never uses (48 x 9,248), and
(b) the 41,472 entries of the fixed edge templates, held as frozen ``nn.Parameter`` (``requires_grad``
False; 48 x 3 x 32 x 9). Neither changes the function: here the unused conv is left out and the templates
are constants of the forward pass, so 2,896,690 - 443,904 - 41,472 = 2,411,314.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from csist_jax.models.baselines import blocks
from csist_jax.models.layers import SuperResolutionNetwork, torch_default_bias, torch_default_kernel

#: Kaiming-normal (fan-in, gain sqrt 2) scaled by 0.1: ``initialize_weights(..., 0.1)`` of the toolkit
_kaiming_01 = nn.initializers.variance_scaling(2.0 * 0.01, "fan_in", "normal")

#: the fixed 3x3 templates of the three edge convolutions, ``[row, column]``
_TEMPLATES = {
    "sobelx": np.array([[1.0, 0.0, -1.0], [2.0, 0.0, -2.0], [1.0, 0.0, -1.0]], np.float32),
    "sobely": np.array([[1.0, 2.0, 1.0], [0.0, 0.0, 0.0], [-1.0, -2.0, -1.0]], np.float32),
    "laplacian": np.array([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]], np.float32),
}


def linear(features: int, in_features: int, name: str | None = None) -> nn.Dense:
    """A linear layer over the last axis, initialised as PyTorch's ``nn.Linear``."""
    return nn.Dense(
        features, kernel_init=torch_default_kernel, bias_init=torch_default_bias(in_features), name=name
    )


class ChannelPReLU(nn.Module):
    """``nn.PReLU(num_parameters=channels)``: one learned slope per channel (init 0.25)."""

    @nn.compact
    def __call__(self, x):
        a = self.param("alpha", nn.initializers.constant(0.25), (x.shape[-1],))
        return jnp.where(x >= 0, x, a.astype(x.dtype) * x)


def _normal_1e3(key, shape, dtype=jnp.float32):
    return 1e-3 * jax.random.normal(key, shape, dtype)


class EdgeConv(nn.Module):
    """The parameters of one edge convolution, folded into one 3x3 kernel.

    The toolkit's edge convolution is a 1x1 conv ``k0`` (bias ``b0``), its output padded by one pixel
    with ``b0``, then the fixed depthwise 3x3 ``template`` times a trained per-channel ``scale`` (init
    N(0, 1e-6)) plus a trained ``bias``. The template is the same for every channel, so it commutes with
    the 1x1 conv, and ``b0`` (interior and border alike) meets a template whose taps sum to 0: the
    composition is exactly one ordinary 3x3 conv of the zero-padded input with the kernel
    ``template[i, j] * k0 * scale`` plus ``bias`` (``b0`` has no effect, as in the toolkit, where its
    gradient is 0 too; it is kept so the parameters match the toolkit's). Returns that kernel
    ``[3, 3, in, features]`` and ``bias``, for :class:`CoreModule` to run the three edge convolutions
    as one conv. ``tests/models/test_baselines.py`` checks the fold against the toolkit's form in float64.
    """

    features: int
    template: str

    @nn.compact
    def __call__(self, in_features: int):
        f = self.features
        k0 = self.param("k0", torch_default_kernel, (1, 1, in_features, f))
        self.param("b0", torch_default_bias(in_features), (f,))
        scale = self.param("scale", _normal_1e3, (f,))
        bias = self.param("bias", _normal_1e3, (f,))
        t = _TEMPLATES[self.template]
        return jnp.asarray(t)[:, :, None, None] * (k0[0, 0] * scale), bias


class CoreModule(nn.Module):
    """The residual branch and the edge branch, fused by selective-kernel attention."""

    features: int

    @nn.compact
    def __call__(self, x):
        f = self.features
        conv1 = nn.Conv(f, (3, 3), padding="SAME", kernel_init=_kaiming_01, name="res_conv1")
        conv2 = nn.Conv(f, (3, 3), padding="SAME", kernel_init=_kaiming_01, name="res_conv2")
        res = x + conv2(ChannelPReLU(name="res_act")(conv1(x)))

        kernels, biases = zip(
            *(EdgeConv(f, t, name=f"edge_{t}")(x.shape[-1]) for t in ("sobelx", "sobely", "laplacian"))
        )
        edges = jax.lax.conv_general_dilated(
            x,
            jnp.concatenate(kernels, -1).astype(x.dtype),
            (1, 1),
            "SAME",
            dimension_numbers=("NHWC", "HWIO", "NHWC"),
        ) + jnp.concatenate(biases).astype(x.dtype)
        edge = blocks.conv(f, 3 * f, 1, name="conv_reduce")(edges)
        pooled = jnp.concatenate(
            [jnp.mean(edge, axis=-1, keepdims=True), jnp.max(edge, axis=-1, keepdims=True)], -1
        )
        edge = nn.sigmoid(blocks.conv(1, 2, 7, use_bias=False, name="sa")(pooled)) * edge

        d = max(f // 2, 32)
        s = jnp.mean(res + edge, axis=(1, 2))  # [n, f]
        zv = linear(d, f, name="fc")(s)
        logits = jnp.stack([linear(f, d, name=f"fcs_{i}")(zv) for i in range(2)], axis=1)  # [n, 2, f]
        att = nn.softmax(logits, axis=1)[:, :, None, None, :]
        return att[:, 0] * res + att[:, 1] * edge


class EGRAB(nn.Module):
    """Edge-guided residual attention block: ``x + core(conv(PReLU(conv(x))))``."""

    features: int

    @nn.compact
    def __call__(self, x):
        f = self.features
        y = blocks.PReLU(name="act")(blocks.conv(f, f, 3, name="conv_0")(x))
        y = blocks.conv(f, f, 3, name="conv_1")(y)
        return x + CoreModule(f, name="core")(y)


class REG(nn.Module):
    """Residual edge-enhanced group: ``x + conv(blocks(x))``."""

    features: int
    n_resblocks: int

    @nn.compact
    def __call__(self, x):
        y = x
        for k in range(self.n_resblocks):
            y = EGRAB(self.features, name=f"block_{k}")(y)
        return x + blocks.conv(self.features, self.features, 3, name="conv")(y)


class EGASR(SuperResolutionNetwork):
    """``n_feats``: channels (published 32); ``n_resgroups``: groups (8); ``n_resblocks``: blocks per
    group (6)."""

    n_feats: int = 32
    n_resgroups: int = 8
    n_resblocks: int = 6

    def forward(self, z):
        f = self.n_feats
        x = z[..., None]
        head = blocks.conv(f, 1, 3, name="head")(x)
        shared = blocks.conv(f, f, 3, name="conv")
        gamma = self.param("gamma", nn.initializers.zeros, (1,))
        residual = shared(head)
        y = residual
        for k in range(self.n_resgroups):
            y = REG(f, self.n_resblocks, name=f"REG_{k}")(y) + gamma * residual
        y = shared(y)
        y = blocks.Upsampler(self.c, f, name="upsampler")(y)
        y = blocks.conv(1, f, 3, name="tail")(y)
        n, h, w, _ = x.shape
        base = jax.image.resize(x, (n, h * self.c, w * self.c, 1), method="linear")
        return blocks.to_map(y + base), []


SMALL = {"egasr": {"n_feats": 8, "n_resgroups": 1, "n_resblocks": 1}}
PARAMS_C3 = {"egasr": 2_411_314}
