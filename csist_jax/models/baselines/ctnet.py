"""CTNet, the contextual transformation network of Wang, Zhou, Lu and Di, "Contextual Transformation
Network for Lightweight Remote-Sensing Image Super-Resolution" (IEEE TGRS 2022), as the GrokCSO toolkit
trains it for CSIST-100K (``configs/c_3/ctnet.py``, ``grokcso/models/editor/ctnet.py`` with its class
defaults: ``nf`` = 64 features, ``unf`` = 24 up-sampling features, 16 blocks).

On the 11 x 11 frame (raw 0..255, no normalisation): 3x3 conv 1 -> nf; ``nb`` contextual transformation
blocks (CTB), each but the first preceded by a context enhancement module (CEM), each followed by a
grouped 3x3 conv (no bias, ``nf // nb`` groups) giving ``nf // nb`` skip channels; the ``nb`` skips
concatenated (nf channels), 1x1 conv nf -> nf, plus the first features; up-sampling by nearest
interpolation, 3x3 conv to ``unf``, pixel attention (1x1 conv + sigmoid gate) and LeakyReLU(0.2), 3x3
conv ``unf -> unf`` and LeakyReLU; 3x3 conv unf -> 1; plus the bilinear up-sampling of the frame.

- CTB (a Ghost bottleneck of stride 1, no squeeze-excitation): ``x + CTL2(CTL1(x))``, CTL1 nf -> nf/2
  with ReLUs, CTL2 nf/2 -> nf without.
- CTL (in -> out, m = ceil(out / 2)): ``x1`` = CFE(x) (in -> m), ``x2`` = depthwise 3x3 conv of ``x1``
  (m -> m), ``e`` = 1x1 conv in -> 2m; out ``[x1, x2] + e`` (first ``out`` channels), each branch
  followed by a ReLU in CTL1; convs without bias.
- CFE: ``i = k1(x)`` (1x1, no bias), ``g`` = 1x1 conv (no bias) of the 2x2 / stride 2 average pool of
  ``x``, resized back by nearest interpolation (PyTorch's rule: source index ``floor(dst * in / out)``);
  out ``i * sigmoid(i + g)``.
- CEM (f = n / 4): ``a`` = 1x1 conv n -> f; ``b`` = 3x3 conv stride 2 (no padding) of ``a``, 3x3 max pool
  stride 1, 3x3 conv + ReLU, 3x3 conv + ReLU, 3x3 conv, bilinear resize to the input size; ``m =
  sigmoid(1x1 conv f -> n (b + 1x1 conv f -> f (a)))``; out ``x * m``.

Ratios: the toolkit up-samples once by ``c`` at c = 2, 3 and twice by 2 at c = 4 (other ratios fall
through without up-sampling and fail). Here one such stage (nearest x p, conv, attention, conv) per
prime factor ``p`` of ``c``, which is the toolkit's network at c = 2, 3, 4 and works for every ``c``.

Parameters at c = 3: 347,073. PyTorch's ``sum(p.numel() for p in CTNET().parameters())`` on the toolkit's
model gives 400,321 (published 0.400M, DISTA-Net Table 1): its CFE defines two more 1x1 convs (``k3``
in -> m, ``k4`` m -> m) that its forward never calls, 3,328 parameters per block, 53,248 in all (checked
by back-propagating through the toolkit's model: exactly these receive no gradient); they are not built
here. No frozen tensors.
"""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from csist_jax.models.baselines import blocks
from csist_jax.models.layers import SuperResolutionNetwork


def _nearest_resize(x, h: int, w: int):
    """PyTorch's ``interpolate(x, (h, w), mode="nearest")``: output pixel ``i`` takes input pixel
    ``floor(i * in / out)``."""
    rows = (jnp.arange(h) * x.shape[1]) // h
    cols = (jnp.arange(w) * x.shape[2]) // w
    return x[:, rows][:, :, cols]


class CFE(nn.Module):
    """Contextual feature extraction: a 1x1 conv gated by the sigmoid of itself plus the 1x1 conv of a
    2x2 average pool (resized back, nearest)."""

    features: int
    in_features: int

    @nn.compact
    def __call__(self, x):
        f, i = self.features, self.in_features
        identity = blocks.conv(f, i, 1, use_bias=False, name="k1")(x)
        n, h, w, ch = x.shape
        pooled = x[:, : h // 2 * 2, : w // 2 * 2].reshape(n, h // 2, 2, w // 2, 2, ch).mean(axis=(2, 4))
        g = blocks.conv(f, i, 1, use_bias=False, name="k2")(pooled)
        return identity * nn.sigmoid(identity + _nearest_resize(g, h, w))


class CTL(nn.Module):
    """Contextual transformation layer ``in_features -> features`` (ReLUs when ``relu``)."""

    features: int
    in_features: int
    relu: bool

    @nn.compact
    def __call__(self, x):
        m = math.ceil(self.features / 2)
        act = nn.relu if self.relu else (lambda y: y)
        x1 = act(CFE(m, self.in_features, name="cfe")(x))
        x2 = act(blocks.conv(m, m, 3, use_bias=False, groups=m, name="cft")(x1))
        e = act(blocks.conv(2 * m, self.in_features, 1, use_bias=False, name="feat_enhanced")(x))
        return (jnp.concatenate([x1, x2], axis=-1) + e)[..., : self.features]


class CTB(nn.Module):
    """Contextual transformation block: ``x + CTL(n/2 -> n)(CTL(n -> n/2)(x))``."""

    features: int

    @nn.compact
    def __call__(self, x):
        n = self.features
        y = CTL(n // 2, n, True, name="ctl1")(x)
        return x + CTL(n, n // 2, False, name="ctl2")(y)


class CEM(nn.Module):
    """Context enhancement module: a sigmoid gate from a strided, max-pooled context branch."""

    features: int

    @nn.compact
    def __call__(self, x):
        n = self.features
        f = n // 4
        a = blocks.conv(f, n, 1, name="conv1")(x)
        b = blocks.conv(f, f, 3, stride=2, padding="VALID", name="conv2")(a)
        b = nn.max_pool(b, (3, 3), strides=(1, 1), padding="VALID")
        b = nn.relu(blocks.conv(f, f, 3, name="conv_max")(b))
        b = nn.relu(blocks.conv(f, f, 3, name="conv3")(b))
        b = blocks.conv(f, f, 3, name="conv3_")(b)
        b = jax.image.resize(b, (b.shape[0], x.shape[1], x.shape[2], f), method="bilinear")
        m = nn.sigmoid(blocks.conv(n, f, 1, name="conv4")(b + blocks.conv(f, f, 1, name="conv_f")(a)))
        return x * m


class CTNet(SuperResolutionNetwork):
    """``nf`` (toolkit 64) trunk features, ``unf`` (24) up-sampling features, ``nb`` (16) blocks; each
    block's skip has ``nf // nb`` channels (``nf`` must be a multiple of ``nb``)."""

    nf: int = 64
    unf: int = 24
    nb: int = 16

    def forward(self, z):
        nf, unf, nb = self.nf, self.unf, self.nb
        if nf % nb:
            raise ValueError(f"CTNet: nf = {nf} must be a multiple of nb = {nb}")
        x = z[..., None]
        fea = blocks.conv(nf, 1, 3, name="conv_first")(x)
        out, skips = fea, []
        for i in range(nb):
            if i > 0:
                out = CEM(nf, name=f"cem_{i}")(out)
            out = CTB(nf, name=f"ctb_{i}")(out)
            skips.append(blocks.conv(nf // nb, nf, 3, use_bias=False, groups=nf // nb, name=f"cfa_{i}")(out))
        fea = fea + blocks.conv(nf, nf, 1, name="fuse")(jnp.concatenate(skips, axis=-1))
        width = nf
        for k, p in enumerate(blocks.prime_factors(self.c)):
            fea = jnp.repeat(jnp.repeat(fea, p, axis=1), p, axis=2)  # nearest x p
            fea = blocks.conv(unf, width, 3, name=f"upconv_{k}")(fea)
            gate = nn.sigmoid(blocks.conv(unf, unf, 1, name=f"att_{k}")(fea))  # pixel attention
            fea = nn.leaky_relu(fea * gate, 0.2)
            fea = nn.leaky_relu(blocks.conv(unf, unf, 3, name=f"hrconv_{k}")(fea), 0.2)
            width = unf
        y = blocks.conv(1, unf, 3, name="conv_last")(fea)
        n, h, w, _ = x.shape
        y = y + jax.image.resize(x, (n, h * self.c, w * self.c, 1), method="bilinear")
        return blocks.to_map(y), []


SMALL = {"ctnet": {"nf": 16, "unf": 8, "nb": 2}}
PARAMS_C3 = {"ctnet": 347_073}
