"""SAN, the second-order attention network of Dai, Cai, Zhang, Xia and Zhang, "Second-Order Attention
Network for Single Image Super-Resolution" (CVPR 2019), as the GrokCSO toolkit trains it for CSIST-100K
(``configs/c_3/san.py``, ``grokcso/models/editor/san.py``: the class defaults, a reduced SAN of 10
local-source residual attention groups x 5 residual blocks, 64 channels, reduction 16; the paper's SAN has
20 x 10).

On the 11 x 11 frame (raw 0..255, no mean shift in the toolkit's SAN):

- head: 3x3 conv 1 -> ``n_feats``, giving ``x``;
- region-level non-local module (RL-NL) on ``x``: the map is cut into four quadrants (rows and columns
  split at ``floor(11 / 2)``) and one embedded-Gaussian non-local block (shared weights) runs on each:
  1x1 convs ``theta``, ``phi``, ``g`` to ``n_feats // nl_reduction`` channels, ``softmax(theta phi^T)``
  applied to ``g``, a 1x1 conv ``W`` back (zero-initialised, weight and bias) plus the input;
- ``n_resgroups`` local-source residual attention groups (LSRAG), share-source skip: ``h <- LSRAG(h) +
  gamma * h_0`` (``h_0`` the RL-NL output, ``gamma`` a learned scalar, zero at init). An LSRAG: residual
  blocks (conv, ReLU, conv, plus the input), second-order channel attention (SOCA), a 3x3 conv, plus the
  group's input;
- the same RL-NL module again (shared weights), plus ``x``; the sub-pixel up-sampler (3x3 conv and pixel
  shuffle per prime factor of ``c``, :class:`blocks.Upsampler`; the toolkit's handles only 2^k and 3,
  where the two agree) and a 3x3 conv ``n_feats`` -> 1.

SOCA, per sample: the channel covariance over the ``H W`` positions, ``S = X_c^T X_c / (H W)`` (``X_c``
the centred ``[H W, C]`` features; the toolkit's ``X I_hat X^T``), its square root by ``ns_iters`` (5)
coupled Newton-Schulz iterations on ``A = S / tr S`` (``Y_0 = A (3 I - A) / 2``, ``Z_0 = (3 I - A) / 2``;
``T = (3 I - Z Y) / 2``, ``Y <- Y T``, ``Z <- T Z``; last step ``Y (3 I - Z Y) / 2`` only) rescaled by
``sqrt(tr S)``; the column means of that ``[C, C]`` root give a per-channel statistic, then 1x1 conv C ->
C / ``reduction``, ReLU, 1x1 conv back, sigmoid, rescaling the channels. All of it is batched matrix
products within each sample (batch independent) and differentiated by JAX (the toolkit's hand-written
backward is the derivative of the same iteration). ``tr S`` is clamped at 1e-12 (only an all-constant
feature map reaches it; the toolkit divides by zero there).

Two toolkit details reproduced: the non-local block max-pools ``phi`` and ``g`` by 2 (floor) before the
affinity although SAN passes ``sub_sample=False`` (the toolkit's 2-D non-local block rebinds its
``sub_sample`` argument to ``nn.Upsample``, a class and so true, as in the original SAN code), so a 5 x 5
quadrant attends over 2 x 2 pooled positions; and the covariance is the biased one (divided by ``H W``).

Parameters at c = 3: 4,403,586 (head 640; RL-NL 2,136; 10 LSRAGs x 406,788; gamma 1; up-sampler
332,352; output 577). Published 4.442M (DISTA-Net Table 1): PyTorch's ``sum(p.numel() for p in
SAN().parameters())`` gives 4,441,620 = ours + 38,034 parameters the toolkit's forward never uses: the
model's ``conv_last`` (3x3, 64 -> 64, 36,928; defined, not called), the SOCA inside the RL-NL module
(1,096; never called) and each LSRAG's ``gamma`` (10 scalars; its use is commented out). Those receive no
gradient in the toolkit; they are not built here.
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from csist_jax.models.baselines import blocks
from csist_jax.models.layers import SuperResolutionNetwork


def covariance(x):
    """Per-sample channel covariance ``[n, C, C]`` of NHWC features over the positions (biased)."""
    n, h, w, ch = x.shape
    flat = x.reshape(n, h * w, ch)
    flat = flat - jnp.mean(flat, axis=1, keepdims=True)
    return jnp.einsum("nmc,nmd->ncd", flat, flat) / (h * w)


def newton_schulz_sqrt(s, iters: int):
    """Square root of each symmetric PSD matrix of ``s`` ``[n, C, C]`` by ``iters`` (>= 2) coupled
    Newton-Schulz iterations after trace pre-normalisation, with the trace post-compensation (the
    toolkit's ``SqrtmLayer``)."""
    if iters < 2:
        raise ValueError(f"ns_iters must be at least 2, got {iters}")
    ch = s.shape[-1]
    eye3 = 3.0 * jnp.eye(ch, dtype=s.dtype)
    trace = jnp.maximum(jnp.trace(s, axis1=-2, axis2=-1), 1e-12)[:, None, None]
    a = s / trace
    t = 0.5 * (eye3 - a)
    y = jnp.einsum("nij,njk->nik", a, t)
    zm = t
    for _ in range(iters - 2):
        t = 0.5 * (eye3 - jnp.einsum("nij,njk->nik", zm, y))
        y, zm = jnp.einsum("nij,njk->nik", y, t), jnp.einsum("nij,njk->nik", t, zm)
    root = 0.5 * jnp.einsum("nij,njk->nik", y, eye3 - jnp.einsum("nij,njk->nik", zm, y))
    return root * jnp.sqrt(trace)


class SOCA(nn.Module):
    """Second-order channel attention: covariance pooling, Newton-Schulz square root, column means, a
    two-layer 1x1 bottleneck with sigmoid, rescaling the channels."""

    features: int
    reduction: int = 16
    iters: int = 5

    @nn.compact
    def __call__(self, x):
        root = newton_schulz_sqrt(covariance(x), self.iters)
        y = jnp.mean(root, axis=1)[:, None, None, :]
        hidden = max(self.features // self.reduction, 1)
        y = nn.relu(blocks.conv(hidden, self.features, 1, name="down")(y))
        y = nn.sigmoid(blocks.conv(self.features, hidden, 1, name="up")(y))
        return x * y


class NonLocal(nn.Module):
    """Embedded-Gaussian non-local block (the toolkit's: ``phi`` and ``g`` max-pooled by 2), ``W``
    zero-initialised so that the block starts as the identity."""

    features: int
    inter: int

    @nn.compact
    def __call__(self, x):
        n, h, w, _ = x.shape

        def pool(v):
            return nn.max_pool(v, (2, 2), strides=(2, 2), padding="VALID")

        theta = blocks.conv(self.inter, self.features, 1, name="theta")(x).reshape(n, h * w, self.inter)
        pooled = (h // 2) * (w // 2)  # explicit: reshape(n, -1, ...) is ambiguous for an empty batch
        phi = pool(blocks.conv(self.inter, self.features, 1, name="phi")(x)).reshape(n, pooled, self.inter)
        g = pool(blocks.conv(self.inter, self.features, 1, name="g")(x)).reshape(n, pooled, self.inter)
        att = nn.softmax(jnp.einsum("nik,njk->nij", theta, phi), axis=-1)
        y = jnp.einsum("nij,njk->nik", att, g).reshape(n, h, w, self.inter)
        out = nn.Conv(
            self.features,
            (1, 1),
            kernel_init=nn.initializers.zeros,
            bias_init=nn.initializers.zeros,
            name="W",
        )(y)
        return out + x


class RegionNonLocal(nn.Module):
    """SAN's region-level non-local module: one shared :class:`NonLocal` on each of the four quadrants."""

    features: int
    inter: int

    @nn.compact
    def __call__(self, x):
        h1, w1 = x.shape[1] // 2, x.shape[2] // 2
        block = NonLocal(self.features, self.inter, name="block")
        top = jnp.concatenate([block(x[:, :h1, :w1]), block(x[:, :h1, w1:])], axis=2)
        bottom = jnp.concatenate([block(x[:, h1:, :w1]), block(x[:, h1:, w1:])], axis=2)
        return jnp.concatenate([top, bottom], axis=1)


class LSRAG(nn.Module):
    """Local-source residual attention group: residual blocks, SOCA, a conv, plus the group's input."""

    features: int
    n_blocks: int
    kernel_size: int = 3
    reduction: int = 16
    iters: int = 5

    @nn.compact
    def __call__(self, x):
        f, k = self.features, self.kernel_size
        y = x
        for i in range(self.n_blocks):
            r = nn.relu(blocks.conv(f, f, k, name=f"rb_{i}_conv1")(y))
            y = y + blocks.conv(f, f, k, name=f"rb_{i}_conv2")(r)
        y = SOCA(f, self.reduction, self.iters, name="soca")(y)
        return x + blocks.conv(f, f, k, name="conv")(y)


class SAN(SuperResolutionNetwork):
    """``n_resgroups`` LSRAGs of ``n_resblocks`` residual blocks with ``n_feats`` channels (toolkit 10, 5,
    64), SOCA ``reduction`` (16) and Newton-Schulz ``ns_iters`` (5), non-local inner width ``n_feats //
    nl_reduction`` (8), ``kernel_size`` (3)."""

    n_resgroups: int = 10
    n_resblocks: int = 5
    n_feats: int = 64
    kernel_size: int = 3
    reduction: int = 16
    nl_reduction: int = 8
    ns_iters: int = 5

    def forward(self, z):
        f, k = self.n_feats, self.kernel_size
        x = blocks.conv(f, 1, k, name="head")(z[..., None])
        non_local = RegionNonLocal(f, max(f // self.nl_reduction, 1), name="non_local")
        gamma = self.param("gamma", nn.initializers.zeros, ())
        h0 = non_local(x)
        h = h0
        for g in range(self.n_resgroups):
            block = LSRAG(f, self.n_resblocks, k, self.reduction, self.ns_iters, name=f"group_{g}")
            h = block(h) + gamma * h0
        res = non_local(h) + x
        y = blocks.Upsampler(self.c, f, name="upsample")(res)
        y = blocks.conv(1, f, k, name="tail")(y)
        return blocks.to_map(y), []


SMALL = {"san": {"n_resgroups": 1, "n_resblocks": 1, "n_feats": 16, "reduction": 4}}
PARAMS_C3 = {"san": 4_403_586}
