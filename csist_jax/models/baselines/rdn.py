"""RDN, the residual dense network of Zhang, Tian, Kong, Zhong and Fu, "Residual Dense Network for Image
Super-Resolution" (CVPR 2018), as the GrokCSO toolkit trains it for CSIST-100K (``configs/c_3/rdn.py``,
``grokcso/models/editor/rdn.py``: the class defaults G0 = G = 64, D = 16 blocks of C = 8 layers, the
paper's size).

On the 11 x 11 frame (raw 0..255, no normalisation): shallow features ``F_-1`` = 3x3 conv 1 -> G0 and
``F_0`` = 3x3 conv G0 -> G0; ``D`` residual dense blocks, each ``C`` densely connected 3x3 conv + ReLU
layers (layer ``i`` sees G0 + i G channels and adds G), a 1x1 local fusion back to G0 channels and the
block's input added; global fusion of the ``D`` block outputs (concatenated, first block first): 1x1 conv
D G0 -> G0 then 3x3 conv, plus ``F_-1``; the sub-pixel up-sampler (3x3 conv G0 -> ``p^2`` G0 and a pixel
shuffle per prime factor ``p`` of ``c``, :class:`blocks.Upsampler`; the toolkit's RDN accepts only c = 2,
3, 4, where the two agree) and a 3x3 conv G0 -> 1.

The toolkit's ``editor/rdn.py`` fuses each block to G channels (its residual then needs G = G0) and
up-samples from G0 channels; ``backbones/RDN_bb.py`` (``RDN_det``, the SeqCSIST table's RDN, same
sizes) fuses to G0 and up-samples to G ``c^2``. With G = G0 = 64, as both train, the two are the same
network as this one.

Parameters at c = 3: 22,305,729 (shallow 37,568, blocks 16 x 1,364,544, global fusion 102,528,
up-sampler 332,352, output 577), exactly PyTorch's ``sum(p.numel() for p in RDN().parameters())`` (no
frozen tensors); published 22.306M (DISTA-Net Table 1) and 22.31M (SeqCSIST Table 7).
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from csist_jax.models.baselines import blocks
from csist_jax.models.layers import SuperResolutionNetwork


class RDB(nn.Module):
    """Residual dense block: ``layers`` 3x3 conv + ReLU layers, each concatenated to its input, a 1x1
    fusion to ``features`` channels and the block's input added."""

    features: int
    growth: int
    layers: int

    @nn.compact
    def __call__(self, x):
        y = x
        for i in range(self.layers):
            width = self.features + i * self.growth
            new = nn.relu(blocks.conv(self.growth, width, 3, name=f"dense_{i}")(y))
            y = jnp.concatenate([y, new], axis=-1)
        width = self.features + self.layers * self.growth
        return x + blocks.conv(self.features, width, 1, name="fusion")(y)


class RDN(SuperResolutionNetwork):
    """``n_feats`` = G0 (toolkit 64), ``growth`` = G (64), ``n_blocks`` = D (16) residual dense blocks
    of ``n_layers`` = C (8) layers."""

    n_feats: int = 64
    growth: int = 64
    n_blocks: int = 16
    n_layers: int = 8

    def forward(self, z):
        g0 = self.n_feats
        f1 = blocks.conv(g0, 1, 3, name="sfe1")(z[..., None])
        x = blocks.conv(g0, g0, 3, name="sfe2")(f1)
        outs = []
        for d in range(self.n_blocks):
            x = RDB(g0, self.growth, self.n_layers, name=f"rdb_{d}")(x)
            outs.append(x)
        x = blocks.conv(g0, self.n_blocks * g0, 1, name="gff_1x1")(jnp.concatenate(outs, axis=-1))
        x = blocks.conv(g0, g0, 3, name="gff_3x3")(x) + f1
        y = blocks.Upsampler(self.c, g0, name="upsample")(x)
        y = blocks.conv(1, g0, 3, name="output")(y)
        return blocks.to_map(y), []


SMALL = {"rdn": {"n_feats": 16, "growth": 8, "n_blocks": 2, "n_layers": 2}}
PARAMS_C3 = {"rdn": 22_305_729}
