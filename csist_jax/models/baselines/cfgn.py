"""CFGN, "CFGN: A Lightweight Context Feature Guided Network for Image Super-Resolution" (IEEE, 2023;
IEEE Xplore document 10177815, code github.com/yamengxi/CFGN-PyTorch, as the toolkit cites it; authors
not restated here), as the GrokCSO toolkit defines it for CSIST-100K (``configs/c_3/cfgn.py``,
``grokcso/models/editor/cfgn.py`` with its class defaults: 48 features, 6 main blocks, identity
activation in the branches, ``block_type="base"``); not in the published tables.

On the 11 x 11 frame (raw 0..255, no normalisation): 3x3 conv 1 -> F (``x``); ``n_resgroups`` main
blocks in sequence; the first features and every block's output concatenated, 1x1 conv -> F,
LeakyReLU(0.05), 3x3 conv F -> F, plus ``x``; a 3x3 conv F -> ``c^2`` and a pixel shuffle by ``c`` (works
for every ``c`` as in the toolkit).

- Main block: three shallow residual blocks (SRB: ``lrelu(conv3x3(y) + y)``, slope 0.05) in sequence;
  before each, a 1x1 conv F -> F/2 of its input (the distilled features), and a 3x3 conv F -> F/2 of
  the last one's output (each followed by the ``act`` activation, identity in the toolkit's
  configuration); the four concatenated, 1x1 conv 2F -> F, LeakyReLU(0.05), contrast-aware channel
  attention, plus the block's input.
- Contrast-aware channel attention (reduction 8): per channel the spatial standard deviation plus the
  mean, 1x1 conv F -> F/8, LeakyReLU(0.05), 1x1 conv F/8 -> F, sigmoid; rescales the channels.

The toolkit's other block types (``cfgm_v1``, ``cfgm_v2``, butterfly convs) are not ported: the
configuration it trains uses ``"base"`` (SRB).

Parameters at c = 3: 530,685, exactly PyTorch's ``sum(p.numel() for p in CFGN().parameters())`` on the
toolkit's model (no frozen tensors, every parameter used); no published count.
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from csist_jax.models.baselines import blocks
from csist_jax.models.layers import SuperResolutionNetwork

#: LeakyReLU slope of the toolkit's ``activation("lrelu")`` in cfgn.py
LRELU_SLOPE = 0.05


def _lrelu(x):
    return nn.leaky_relu(x, LRELU_SLOPE)


class _Act(nn.Module):
    """The toolkit's ``activation(kind)``: identity, relu, lrelu (0.05) or a one-slope PReLU (0.05)."""

    kind: str

    @nn.compact
    def __call__(self, x):
        if self.kind == "identity":
            return x
        if self.kind == "relu":
            return nn.relu(x)
        if self.kind == "lrelu":
            return _lrelu(x)
        if self.kind == "prelu":
            return blocks.PReLU(LRELU_SLOPE, name="prelu")(x)
        raise ValueError(f"CFGN: act must be identity, relu, lrelu or prelu, got {self.kind!r}")


class ContrastChannelAttention(nn.Module):
    """Contrast-aware channel attention: (spatial std + mean) -> 1x1 down, LeakyReLU, 1x1 up, sigmoid."""

    features: int
    reduction: int = 8

    @nn.compact
    def __call__(self, x):
        mean = jnp.mean(x, axis=(1, 2), keepdims=True)
        std = jnp.sqrt(jnp.mean((x - mean) ** 2, axis=(1, 2), keepdims=True))
        hidden = self.features // self.reduction
        y = _lrelu(blocks.conv(hidden, self.features, 1, name="down")(std + mean))
        y = nn.sigmoid(blocks.conv(self.features, hidden, 1, name="up")(y))
        return x * y


class MainBlock(nn.Module):
    """Three SRBs with feature distillation, 1x1 fusion, contrast-aware attention and a skip."""

    features: int
    act: str
    num: int = 3

    @nn.compact
    def __call__(self, x):
        f = self.features
        now, feats = x, []
        for i in range(self.num):
            feats.append(
                _Act(self.act, name=f"distill_{i}_act")(blocks.conv(f // 2, f, 1, name=f"distill_{i}")(now))
            )
            now = _lrelu(blocks.conv(f, f, 3, name=f"srb_{i}")(now) + now)
        feats.append(_Act(self.act, name="last_act")(blocks.conv(f // 2, f, 3, name="last")(now)))
        width = (self.num + 1) * (f // 2)
        out = _lrelu(blocks.conv(f, width, 1, name="fuse")(jnp.concatenate(feats, axis=-1)))
        return ContrastChannelAttention(f, name="cca")(out) + x


class CFGN(SuperResolutionNetwork):
    """``n_feats`` F (toolkit 48), ``n_resgroups`` (6) main blocks, ``act`` (``"identity"``) after the
    distillation convs."""

    n_feats: int = 48
    n_resgroups: int = 6
    act: str = "identity"

    def forward(self, z):
        f, g, c = self.n_feats, self.n_resgroups, self.c
        x = blocks.conv(f, 1, 3, name="head")(z[..., None])
        now, outs = x, [x]
        for i in range(g):
            now = MainBlock(f, self.act, name=f"block_{i}")(now)
            outs.append(now)
        y = _lrelu(blocks.conv(f, f * (g + 1), 1, name="fusion_1x1")(jnp.concatenate(outs, axis=-1)))
        y = blocks.conv(f, f, 3, name="fusion_3x3")(y) + x
        y = blocks.pixel_shuffle(blocks.conv(c * c, f, 3, name="upsample")(y), c)
        return blocks.to_map(y), []


SMALL = {"cfgn": {"n_feats": 16, "n_resgroups": 1}}
PARAMS_C3 = {"cfgn": 530_685}
