"""FENet, the frequency-based enhancement network of Behjati, Rodriguez, Tena, Mehri, Roca, Ozawa and
Gonzalez, "Frequency-Based Enhancement Network for Efficient Super-Resolution" (IEEE Access, 2022), as
the GrokCSO toolkit trains it for CSIST-100K (``configs/c_3/fenet.py``, ``grokcso/models/editor/fenet.py``
and ``grokcso/models/tricks/ops.py``: the class defaults, 12 blocks of 64 channels, a 4-group up-sampler).

On the 11 x 11 frame (raw 0..255, no normalisation: the toolkit drops the RGB mean shift of the paper's
code): a 3x3 conv 1 -> 64, ``n_blocks`` frequency-based enhancement blocks (FEB), a 1x1 conv + ReLU that
fuses the head and every block output (``64 (n_blocks + 1)`` -> 64) plus the last block's output, the
up-sampler, a 3x3 conv 64 -> 1, and a bicubic-interpolated copy of the input added to the result.

An FEB splits its input with two bias-free 1x1 convs to ``width / 2`` channels each (ReLU after each): the
low-frequency path is a 3x3 conv + ReLU; the high-frequency path is the frequency-enhancement operation
(FE) + ReLU; a 1x1 conv fuses the two back to ``width`` channels and the block input is added. FE takes
the low frequencies of its input ``x`` as a 4x4 average pool (stride 4, the trailing rows and columns that
do not fill a window dropped, as ``nn.AvgPool2d(4, 4)``) up-sampled back by nearest neighbour (PyTorch's
``mode="nearest"`` index ``floor(i in / out)``), so ``h = x - up(pool(x))`` is the high-frequency part,
and returns ``k4(k3(x) * sigmoid(k2(h) + x))`` with three bias-free 3x3 convs.

Every convolution is weight-normalised (``torch.nn.utils.weight_norm``: weight = ``g v / ||v||`` with one
norm per output channel, ``v`` and ``g`` both trained, ``g`` initialised to ``||v||`` so the initial weight
is PyTorch's default one); here too (:class:`WNConv`). The up-sampler is, per prime factor ``p`` of ``c``,
a weight-normalised grouped 3x3 conv (``group`` groups) to ``p^2 width`` channels, ReLU and a pixel
shuffle by ``p``; the toolkit's handles 2^k, 3 and 5 (one conv per factor 2, one for 3, one for 5), which
this reproduces, and the prime factorisation extends it to every ``c`` (7 included). The toolkit hard-codes
the fusion width as ``64 * 13`` and FE's width as 32 (right only for 12 blocks of 64 channels); here they
follow ``n_blocks`` and ``width``. The bicubic skip is the toolkit's ``F.interpolate(mode="bicubic",
align_corners=False)`` in PyTorch's convention (the ``a = -0.75`` cubic kernel, source indices clamped at
the border; :func:`blocks.bicubic_upsample`), not ``jax.image.resize``'s (``a = -0.5``, weights
renormalised at the border), which differs by 5-7 % of the output's maximum on CSIST frames.

Parameters at c = 3: 682,498 (head 704, blocks 12 x 45,312, fusion 53,376, up-sampler 84,096, tail 578;
the weight-norm ``g`` vectors included), exactly PyTorch's ``sum(p.numel() for p in FENet().parameters())``
for the toolkit's class (no frozen parameters or buffers). Published: 0.348M (DISTA-Net Table 1), about
half of this count. The published FLOPs (2.578G) are likewise about half of what ``thop`` gives for the
toolkit's class on a batch of 64 frames (5.29G; the same measure gives 1.36G for the toolkit's SRCNN and
13.2G for its DCTLSA, published 1.345G and 13.69G), and the published DCTLSA and EGASR counts equal
PyTorch's count of their toolkit classes: the FENet row was measured on some other configuration that
neither repository of the toolkit contains (FENet's own code has the same blocks and widths as the
toolkit's). We keep the toolkit's code and its count.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from csist_jax.models.baselines import blocks
from csist_jax.models.layers import SuperResolutionNetwork, torch_default_bias, torch_default_kernel


class WNConv(nn.Module):
    """A weight-normalised 'same' convolution, ``torch.nn.utils.weight_norm(nn.Conv2d(...))``: parameters
    ``v`` (the kernel, PyTorch's default initialisation), ``g`` (one gain per output channel, initialised
    to the norm of its ``v``) and optionally ``bias``; the applied kernel is ``g v / ||v||``."""

    features: int
    in_features: int
    size: int = 3
    groups: int = 1
    use_bias: bool = True

    @nn.compact
    def __call__(self, x):
        shape = (self.size, self.size, self.in_features // self.groups, self.features)
        v = self.param("v", torch_default_kernel, shape)
        g = self.param("g", lambda key, s: jnp.sqrt(jnp.sum(jnp.square(v), axis=(0, 1, 2))), (self.features,))
        kernel = v * (g / jnp.sqrt(jnp.sum(jnp.square(v), axis=(0, 1, 2))))
        pad = self.size // 2
        y = jax.lax.conv_general_dilated(
            x,
            kernel.astype(x.dtype),
            (1, 1),
            ((pad, pad), (pad, pad)),
            dimension_numbers=("NHWC", "HWIO", "NHWC"),
            feature_group_count=self.groups,
        )
        if self.use_bias:
            fan_in = self.in_features // self.groups * self.size * self.size
            bias = self.param("bias", torch_default_bias(fan_in), (self.features,))
            y = y + bias.astype(x.dtype)
        return y


def _low_frequency(x):
    """``nn.AvgPool2d(4, 4)`` then nearest-neighbour interpolation back to the input size (PyTorch's
    source index ``floor(i * in / out)``)."""
    n, h, w, ch = x.shape
    ph, pw = max(h // 4, 1), max(w // 4, 1)
    if h >= 4 and w >= 4:
        pooled = x[:, : ph * 4, : pw * 4].reshape(n, ph, 4, pw, 4, ch).mean(axis=(2, 4))
    else:  # smaller than one window (not reached on 11 x 11 frames): the mean of what there is
        pooled = x.mean(axis=(1, 2), keepdims=True)
    rows = (np.arange(h) * ph) // h
    cols = (np.arange(w) * pw) // w
    return pooled[:, rows][:, :, cols]


class FE(nn.Module):
    """The frequency-enhancement operation: ``k4(k3(x) * sigmoid(k2(x - up(pool(x))) + x))``."""

    features: int

    @nn.compact
    def __call__(self, x):
        f = self.features
        high = x - _low_frequency(x)
        gate = nn.sigmoid(WNConv(f, f, 3, use_bias=False, name="k2")(high) + x)
        out = WNConv(f, f, 3, use_bias=False, name="k3")(x) * gate
        return WNConv(f, f, 3, use_bias=False, name="k4")(out)


class FEB(nn.Module):
    """The frequency-based enhancement block: a low-frequency path (1x1, ReLU, 3x3, ReLU) and a
    high-frequency path (1x1, ReLU, FE, ReLU), fused by a 1x1 conv, plus the input."""

    width: int

    @nn.compact
    def __call__(self, x):
        half = self.width // 2
        low = nn.relu(WNConv(half, self.width, 1, use_bias=False, name="path_1")(x))
        low = nn.relu(WNConv(half, half, 3, use_bias=False, name="k1")(low))
        high = nn.relu(WNConv(half, self.width, 1, use_bias=False, name="path_2")(x))
        high = nn.relu(FE(half, name="HConv")(high))
        out = WNConv(self.width, 2 * half, 1, use_bias=False, name="conv")(jnp.concatenate([low, high], -1))
        return out + x


class FENet(SuperResolutionNetwork):
    """``width``: channels (published 64); ``n_blocks``: FEBs (12); ``group``: groups of the up-sampler's
    convolutions (4)."""

    width: int = 64
    n_blocks: int = 12
    group: int = 4

    def forward(self, z):
        x = z[..., None]
        skip = blocks.bicubic_upsample(x, self.c)
        feat = WNConv(self.width, 1, 3, name="entry_1")(x)
        outs = [feat]
        for k in range(self.n_blocks):
            feat = FEB(self.width, name=f"body_{k}")(feat)
            outs.append(feat)
        fused = WNConv(self.width, self.width * (self.n_blocks + 1), 1, name="reduction")
        y = nn.relu(fused(jnp.concatenate(outs, -1))) + feat
        for k, p in enumerate(blocks.prime_factors(self.c)):
            y = WNConv(p * p * self.width, self.width, 3, groups=self.group, name=f"up_{k}")(y)
            y = blocks.pixel_shuffle(nn.relu(y), p)
        y = WNConv(1, self.width, 3, name="exit")(y)
        return blocks.to_map(y + skip), []


SMALL = {"fenet": {"width": 16, "n_blocks": 1, "group": 4}}
PARAMS_C3 = {"fenet": 682_498}
