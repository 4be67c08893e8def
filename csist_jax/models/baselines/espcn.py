"""ESPCN, the efficient sub-pixel convolutional network of Shi, Caballero, Huszar, Totz, Aitken, Bishop,
Rueckert and Wang, "Real-Time Single Image and Video Super-Resolution Using an Efficient Sub-Pixel
Convolutional Neural Network" (CVPR 2016), as the GrokCSO toolkit trains it for SeqCSIST
(``configs/c_3/ESPCN.py``: the detector ``ESPCN`` wrapping ``ESPCNNet(upscale_factor=3)``).

On the 11 x 11 frame (raw 0..255, no normalisation, as the toolkit): 5x5 conv 1 -> 64, ReLU, 3x3 conv
64 -> 32, ReLU, 3x3 conv 32 -> ``c^2``, then one pixel shuffle by ``c`` (PyTorch's channel order). No
activation on the output. The single sub-pixel step by ``c`` is valid for every ``c``: nothing to
generalise.

Parameters at c = 3: 22,729 (1,664 + 18,464 + 2,601), what ``sum(p.numel() for p in
ESPCNNet(3).parameters())`` gives (no frozen tensors, no normalisation layers). The SeqCSIST table
(SPEC sec. 10.2) prints "54.75M" for ESPCN, clearly a misprint for a three-layer network of this width;
its FLOPs column for ESPCN, "22.73K", is in fact this parameter count (the two figures look swapped or
shifted). The DISTA-Net table has no ESPCN row.
"""

from __future__ import annotations

import flax.linen as nn

from csist_jax.models.baselines import blocks
from csist_jax.models.layers import SuperResolutionNetwork


class ESPCN(SuperResolutionNetwork):
    """``width1``, ``width2``: the two hidden widths (toolkit 64 and 32); ``kernel1``: the first kernel
    size (toolkit 5; the other two convolutions are 3x3)."""

    width1: int = 64
    width2: int = 32
    kernel1: int = 5

    def forward(self, z):
        x = z[..., None]
        x = nn.relu(blocks.conv(self.width1, 1, self.kernel1, name="conv1")(x))
        x = nn.relu(blocks.conv(self.width2, self.width1, 3, name="conv2")(x))
        x = blocks.conv(self.c * self.c, self.width2, 3, name="conv3")(x)
        return blocks.to_map(blocks.pixel_shuffle(x, self.c)), []


SMALL = {"espcn": {"width1": 16, "width2": 8}}
PARAMS_C3 = {"espcn": 22_729}
