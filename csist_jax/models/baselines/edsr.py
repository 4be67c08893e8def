"""EDSR, the enhanced deep residual network of Lim, Son, Kim, Nah and Lee, "Enhanced Deep Residual
Networks for Single Image Super-Resolution" (CVPR workshops 2017), as the GrokCSO toolkit trains it for
CSIST-100K (``configs/c_3/edsr.py``, ``grokcso/models/editor/edsr.py``: the class defaults, the
EDSR-baseline size of 16 residual blocks of 64 channels, the DISTA-Net table's row).

On the 11 x 11 frame (raw 0..255): a fixed grey mean shift subtracts ``img_range * img_mean`` (= 127.5),
a 3x3 head conv 1 -> ``n_feats``, ``n_resblocks`` residual blocks (conv, ReLU, conv, scaled by
``res_scale``, plus the input; no BatchNorm), a 3x3 conv, a long skip from the head, the sub-pixel
up-sampler (3x3 conv to ``p^2 n_feats`` channels and a pixel shuffle by ``p`` per prime factor ``p`` of
``c``: :class:`blocks.Upsampler`; the toolkit's handles only 2^k and 3, where the two agree), a 3x3 conv
``n_feats`` -> 1, and the mean added back.

Parameters at c = 3: 1,552,193 (head 640, body 1,218,624, up-sampler 332,352, tail 577); published
1.552M (DISTA-Net Table 1). PyTorch's ``sum(p.numel() for p in EDSR().parameters())`` gives 1,552,197: it
also counts the two frozen 1x1 mean-shift convolutions (weight and bias each, ``requires_grad=False``),
which here are constants of the forward pass, not parameters; the published 1.552M fits either count.

The SeqCSIST table's EDSR (0.39M) is another model of the toolkit, ``EDSRNet``
(``configs/c_3/EDSRNet.py``, ``backbones/EDSR_bb.py``): the BasicSR EDSR with 32 channels and 16 blocks,
no mean shift, its input multiplied by 255 and its output divided by 255. ``create("edsr", n_feats=32,
img_mean=0.0)`` builds that architecture, 389,025 parameters (PyTorch's count of ``EDSRNet`` too); the
x255 / /255 input-output scaling is not reproduced.
"""

from __future__ import annotations

import flax.linen as nn

from csist_jax.models.baselines import blocks
from csist_jax.models.layers import SuperResolutionNetwork


class ResBlock(nn.Module):
    """EDSR's residual block without BatchNorm: ``x + res_scale * conv(relu(conv(x)))``."""

    features: int
    kernel_size: int = 3
    res_scale: float = 1.0

    @nn.compact
    def __call__(self, x):
        y = nn.relu(blocks.conv(self.features, self.features, self.kernel_size, name="conv1")(x))
        y = blocks.conv(self.features, self.features, self.kernel_size, name="conv2")(y)
        return x + self.res_scale * y


class EDSR(SuperResolutionNetwork):
    """``n_resblocks`` residual blocks of ``n_feats`` channels (toolkit 16 and 64), ``kernel_size`` of the
    head, body and tail convolutions (3), ``res_scale`` (1); the fixed mean shift subtracts and adds back
    ``img_range * img_mean`` (toolkit 255 and 0.5; ``img_mean=0`` removes it)."""

    n_resblocks: int = 16
    n_feats: int = 64
    kernel_size: int = 3
    res_scale: float = 1.0
    img_range: float = 255.0
    img_mean: float = 0.5

    def forward(self, z):
        shift = self.img_range * self.img_mean
        k, f = self.kernel_size, self.n_feats
        x = blocks.conv(f, 1, k, name="head")(z[..., None] - shift)
        res = x
        for i in range(self.n_resblocks):
            res = ResBlock(f, k, self.res_scale, name=f"block_{i}")(res)
        res = blocks.conv(f, f, k, name="body_conv")(res) + x
        y = blocks.Upsampler(self.c, f, name="upsample")(res)
        y = blocks.conv(1, f, k, name="tail")(y)
        return blocks.to_map(y) + shift, []


SMALL = {"edsr": {"n_resblocks": 1, "n_feats": 16}}
PARAMS_C3 = {"edsr": 1_552_193}
