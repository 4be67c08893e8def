"""RCAN, the residual channel attention network of Zhang, Li, Li, Wang, Zhong and Fu, "Image
Super-Resolution Using Very Deep Residual Channel Attention Networks" (ECCV 2018), as the GrokCSO
toolkit trains it for CSIST-100K (``configs/c_3/rcan.py``, ``grokcso/models/editor/rcan.py``: the class
defaults, a reduced RCAN of 5 residual groups x 10 blocks, 32 channels, channel reduction 8; the paper's
RCAN has 10 x 20 blocks of 64 channels and reduction 16).

On the 11 x 11 frame (raw 0..255, no mean shift in the toolkit's RCAN): a 3x3 head conv 1 -> ``n_feats``;
``n_resgroups`` residual groups, each ``n_resblocks`` residual channel attention blocks (conv, ReLU, conv,
channel attention :class:`blocks.ChannelAttention`, plus the input; no BatchNorm) and a 3x3 conv, plus the
group's input; a 3x3 conv after the groups and a long skip from the head; the sub-pixel up-sampler (3x3
conv and pixel shuffle per prime factor of ``c``, :class:`blocks.Upsampler`: the toolkit's handles only
2^k and 3, where the two agree) and a 3x3 conv ``n_feats`` -> 1.

Parameters at c = 3: 1,078,729 (head 320, 5 groups x 197,128, body conv 9,248, up-sampler 83,232, tail
289), exactly the toolkit's ``sum(p.numel() for p in RCAN().parameters())`` (no frozen tensors);
published 1.079M (DISTA-Net Table 1).
"""

from __future__ import annotations

import flax.linen as nn

from csist_jax.models.baselines import blocks
from csist_jax.models.layers import SuperResolutionNetwork


class RCAB(nn.Module):
    """Residual channel attention block: ``x + CA(conv(relu(conv(x))))``."""

    features: int
    kernel_size: int = 3
    reduction: int = 16

    @nn.compact
    def __call__(self, x):
        f, k = self.features, self.kernel_size
        y = nn.relu(blocks.conv(f, f, k, name="conv1")(x))
        y = blocks.conv(f, f, k, name="conv2")(y)
        y = blocks.ChannelAttention(f, self.reduction, name="ca")(y)
        return x + y


class ResidualGroup(nn.Module):
    """``n_blocks`` RCABs and a conv, plus the group's input."""

    features: int
    n_blocks: int
    kernel_size: int = 3
    reduction: int = 16

    @nn.compact
    def __call__(self, x):
        y = x
        for i in range(self.n_blocks):
            y = RCAB(self.features, self.kernel_size, self.reduction, name=f"rcab_{i}")(y)
        y = blocks.conv(self.features, self.features, self.kernel_size, name="conv")(y)
        return x + y


class RCAN(SuperResolutionNetwork):
    """``n_resgroups`` groups of ``n_resblocks`` RCABs with ``n_feats`` channels (toolkit 5, 10, 32),
    channel-attention ``reduction`` (8), ``kernel_size`` (3)."""

    n_resgroups: int = 5
    n_resblocks: int = 10
    n_feats: int = 32
    kernel_size: int = 3
    reduction: int = 8

    def forward(self, z):
        f, k = self.n_feats, self.kernel_size
        x = blocks.conv(f, 1, k, name="head")(z[..., None])
        res = x
        for g in range(self.n_resgroups):
            res = ResidualGroup(f, self.n_resblocks, k, self.reduction, name=f"group_{g}")(res)
        res = blocks.conv(f, f, k, name="body_conv")(res) + x
        y = blocks.Upsampler(self.c, f, name="upsample")(res)
        y = blocks.conv(1, f, k, name="tail")(y)
        return blocks.to_map(y), []


SMALL = {"rcan": {"n_resgroups": 1, "n_resblocks": 1, "n_feats": 16, "reduction": 4}}
PARAMS_C3 = {"rcan": 1_078_729}
