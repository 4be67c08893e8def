"""SRCNN (Dong et al., 2014) as the CSIST toolkit trains it: bicubic up-sampling by ``c`` (PyTorch's
``F.interpolate(mode="bicubic", align_corners=False)``: ``a = -0.75``, source indices clamped at the border;
:func:`blocks.bicubic_upsample`), then three 3x3 convolutions 1 -> 64 -> 32 -> 1 with ReLU between (the
toolkit's variant: 3x3 kernels throughout, not the paper's 9-1-5). 19,393 parameters (published 0.019M in
the CSIST-100K table; the SeqCSIST table's 15.84K belongs to a different configuration of that toolkit)."""

from __future__ import annotations

import flax.linen as nn

from csist_jax.models.baselines import blocks
from csist_jax.models.layers import SuperResolutionNetwork


class SRCNN(SuperResolutionNetwork):
    """``width1``, ``width2``: the two hidden widths (published 64 and 32)."""

    width1: int = 64
    width2: int = 32

    def forward(self, z):
        x = blocks.bicubic_upsample(z[..., None], self.c)
        x = nn.relu(blocks.conv(self.width1, 1, 3, name="conv1")(x))
        x = nn.relu(blocks.conv(self.width2, self.width1, 3, name="conv2")(x))
        x = blocks.conv(1, self.width2, 3, name="conv3")(x)
        return blocks.to_map(x), []


SMALL = {"srcnn": {"width1": 16, "width2": 8}}
PARAMS_C3 = {"srcnn": 19_393}
