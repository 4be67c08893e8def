"""HAN, the holistic attention network of Niu, Wen, Ren, Zhang, Yang, Wang, Zhang, Cao and Shen, "Single
Image Super-Resolution via a Holistic Attention Network" (ECCV 2020), as the GrokCSO toolkit trains it for
CSIST-100K (``configs/c_3/han.py``, ``grokcso/models/editor/han.py``: the class defaults, the paper's
size: 10 residual groups x 20 RCABs, 128 channels, channel reduction 16).

On the 11 x 11 frame (raw 0..255, no mean shift in the toolkit's HAN): a 3x3 head conv 1 -> ``n_feats``;
the body, ``n_resgroups`` RCAN residual groups (``n_resblocks`` residual channel attention blocks and a
3x3 conv, plus the group's input; :mod:`rcan`) and a final 3x3 conv, run in sequence. Its ``N =
n_resgroups + 1`` intermediate outputs (the groups' and the final conv's) feed two attention branches:

- layer attention (LAM): the outputs stacked newest first as ``F [N, H W C]``, the correlation ``E = F
  F^T [N, N]``, weights ``softmax(max_j E_ij - E_ij)`` over ``j``, then ``gamma (A F) + F`` (``gamma`` a
  learned scalar, zero at init), reshaped to ``N n_feats`` channels (layer-major) and fused by a 3x3 conv
  back to ``n_feats``;
- channel-spatial attention (CSAM) on the body's last output ``x``: one 3x3x3 convolution (1 -> 1
  channel) over the (height, width, channel) volume, sigmoid, times a learned ``gamma`` (zero at init),
  ``x * that + x``.

The two are concatenated, fused by a 3x3 conv ``2 n_feats`` -> ``n_feats`` and the head's output added;
the sub-pixel up-sampler (3x3 conv and pixel shuffle per prime factor of ``c``, :class:`blocks.Upsampler`;
the toolkit's handles only 2^k and 3, where the two agree) and a 3x3 conv ``n_feats`` -> 1 give the map.
All attention is within a sample (batch independent).

Parameters at c = 3: 64,341,727 (head 1,280; body 61,093,824; LAM 1 + fusion 1,622,144; CSAM 29; fusion
295,040; up-sampler 1,328,256; output 1,153), exactly PyTorch's ``sum(p.numel() for p in
HAN().parameters())`` (no frozen tensors, no normalisation layers); published 64.342M (DISTA-Net Table
1). The 3x3x3 kernel is stored over (height, width, channel) where PyTorch's ``Conv3d`` holds (channel,
height, width): the same operator with its kernel axes permuted.
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from csist_jax.models.baselines import blocks
from csist_jax.models.baselines.rcan import ResidualGroup
from csist_jax.models.layers import SuperResolutionNetwork, torch_default_bias, torch_default_kernel


class LayerAttention(nn.Module):
    """HAN's layer attention module over ``[n, N, h, w, c]`` stacked features; returns ``[n, h, w, N c]``
    (layer-major channels)."""

    @nn.compact
    def __call__(self, feats):
        n, layers, h, w, ch = feats.shape
        gamma = self.param("gamma", nn.initializers.zeros, ())
        flat = feats.reshape(n, layers, h * w * ch)
        energy = jnp.einsum("nik,njk->nij", flat, flat)
        energy = jnp.max(energy, axis=-1, keepdims=True) - energy
        attention = nn.softmax(energy, axis=-1)
        out = jnp.einsum("nij,njk->nik", attention, flat).reshape(feats.shape)
        out = gamma * out + feats
        return out.transpose(0, 2, 3, 1, 4).reshape(n, h, w, layers * ch)


class ChannelSpatialAttention(nn.Module):
    """HAN's channel-spatial attention: ``x + x * gamma * sigmoid(conv3d(x))``, one 3x3x3 kernel over the
    (height, width, channel) volume."""

    @nn.compact
    def __call__(self, x):
        conv3d = nn.Conv(
            1,
            (3, 3, 3),
            padding="SAME",
            kernel_init=torch_default_kernel,
            bias_init=torch_default_bias(27),
            name="conv3d",
        )
        gamma = self.param("gamma", nn.initializers.zeros, ())
        att = nn.sigmoid(conv3d(x[..., None]))[..., 0]
        return x * (gamma * att) + x


class HAN(SuperResolutionNetwork):
    """``n_resgroups`` groups of ``n_resblocks`` RCABs with ``n_feats`` channels (toolkit 10, 20, 128),
    channel-attention ``reduction`` (16), ``kernel_size`` (3)."""

    n_resgroups: int = 10
    n_resblocks: int = 20
    n_feats: int = 128
    kernel_size: int = 3
    reduction: int = 16

    def forward(self, z):
        f, k = self.n_feats, self.kernel_size
        x = blocks.conv(f, 1, k, name="head")(z[..., None])
        res = x
        stack = []
        for g in range(self.n_resgroups):
            res = ResidualGroup(f, self.n_resblocks, k, self.reduction, name=f"group_{g}")(res)
            stack.append(res)
        res = blocks.conv(f, f, k, name="body_conv")(res)
        stack.append(res)
        layers = len(stack)
        la = LayerAttention(name="la")(jnp.stack(stack[::-1], axis=1))
        out2 = blocks.conv(f, layers * f, 3, name="la_fusion")(la)
        out1 = ChannelSpatialAttention(name="csa")(res)
        res = blocks.conv(f, 2 * f, 3, name="fusion")(jnp.concatenate([out1, out2], axis=-1)) + x
        y = blocks.Upsampler(self.c, f, name="upsample")(res)
        y = blocks.conv(1, f, k, name="tail")(y)
        return blocks.to_map(y), []


SMALL = {"han": {"n_resgroups": 1, "n_resblocks": 1, "n_feats": 8, "reduction": 4}}
PARAMS_C3 = {"han": 64_341_727}
