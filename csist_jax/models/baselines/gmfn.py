"""GMFN, the gated multiple feedback network of Q. Li, Z. Li, Lu, Jeon, Liu and Yang, "Gated Multiple
Feedback Network for Image Super-Resolution" (BMVC 2019), as the GrokCSO toolkit trains it for SeqCSIST
(``configs/c_3/GMFNNet.py``, ``grokcso/models/detectors/GMFN_det.py`` building
``grokcso/models/backbones/GMFN_bb.py`` with its defaults: 32 features, 4 time steps, 8 residual dense
blocks, all 8 block outputs rerouted, PReLU, no normalisation).

On the 11 x 11 frame (raw 0..255, no normalisation): 3x3 conv 1 -> 4F + PReLU, 1x1 conv 4F -> F + PReLU
(``x``); per time step ``t``, ``num_blocks`` residual dense blocks in sequence starting from ``x``; from
the second step on, before each of the first ``num_refine_feats`` blocks a gated feedback module fuses
the previous step's rerouted features (the last ``num_reroute_feats`` block outputs, concatenated, 1x1
conv -> F + PReLU) with the block's input (concatenated, 1x1 conv 2F -> F + PReLU); reconstruction of
step ``t`` from its last block output: transposed conv F -> F (stride ``c``) + PReLU, 3x3 conv F -> 1,
plus the bilinear up-sampling of the frame. Residual dense block: 8 densely connected 3x3 conv + PReLU
layers of F channels each, a 1x1 fusion to F, ``0.2`` times that plus the input. Every PReLU has one
slope, initialised at 0.2.

Time steps and loss: the network returns the LAST step's map (the paper's output); ``aux`` is empty. The
paper trains every step's output; the toolkit concatenates the 4 steps' outputs along the batch and
scores rows 2..17 of that, which with its 20-frame batches are all FIRST-step outputs, so the published
GMFN is trained and evaluated on step 1 only and its gated feedback modules (10,306 parameters) never
receive a gradient. That is a defect of the toolkit, not reproduced; ``num_steps=1`` gives exactly the
network the toolkit scores (and has no feedback modules: 2,786,212 parameters at c = 3).

Projection kernel: the toolkit accepts c = 2, 3, 4 (kernel 6 / 7 / 8, stride c, padding 2); here kernel
``c + 4``, stride ``c``, padding 2 for every ``c`` (:func:`dbpn.geometry`), the same at c = 2, 3, 4.

Parameters at c = 3: 2,796,518 (head 5,410; 8 blocks of 341,288; feedback 10,306; reconstruction
50,498), exactly PyTorch's ``sum(p.numel() for p in GMFNNet().parameters())`` on the toolkit's model (no
frozen tensors); published 2.80M (SeqCSIST Table 7).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from csist_jax.models.baselines import blocks
from csist_jax.models.baselines.dbpn import PRELU_INIT, deconv, geometry
from csist_jax.models.layers import SuperResolutionNetwork


class ConvPReLU(nn.Module):
    """A 'same' ``size`` x ``size`` conv followed by a one-slope PReLU (the toolkit's ConvBlock)."""

    features: int
    in_features: int
    size: int

    @nn.compact
    def __call__(self, x):
        x = blocks.conv(self.features, self.in_features, self.size, name="conv")(x)
        return blocks.PReLU(PRELU_INIT, name="act")(x)


class RDB8(nn.Module):
    """Residual dense block of 8 conv + PReLU layers with ``growth`` channels each, a 1x1 fusion back to
    ``features`` and a 0.2-scaled residual."""

    features: int
    growth: int
    layers: int = 8

    @nn.compact
    def __call__(self, x):
        y = x
        for i in range(self.layers):
            width = self.features + i * self.growth
            y = jnp.concatenate([y, ConvPReLU(self.growth, width, 3, name=f"conv_{i}")(y)], axis=-1)
        width = self.features + self.layers * self.growth
        return 0.2 * blocks.conv(self.features, width, 1, name="fusion")(y) + x


class GFMRDB(nn.Module):
    """One time step: the residual dense blocks, with gated feedback of the previous step's rerouted
    features before the first ``num_refine_feats`` blocks; returns the last ``num_reroute_feats`` block
    outputs."""

    features: int
    num_blocks: int
    num_refine_feats: int
    num_reroute_feats: int

    @nn.compact
    def __call__(self, x, last):
        f = self.features
        select = fuse = None
        if last:
            # the toolkit recomputes this for every refined block from the same inputs: computed once
            select = ConvPReLU(f, self.num_reroute_feats * f, 1, name="gfm_select")(jnp.concatenate(last, -1))
            fuse = ConvPReLU(f, 2 * f, 1, name="gfm_fuse")
        feats = []
        for i in range(self.num_blocks):
            if last and i < self.num_refine_feats:
                x = fuse(jnp.concatenate([select, x], axis=-1))
            x = RDB8(f, f, name=f"rdb_{i}")(x)
            feats.append(x)
        return feats[-self.num_reroute_feats :]


class GMFN(SuperResolutionNetwork):
    """``num_features`` F (toolkit 32), ``num_steps`` (4) feedback steps (the last one's map is
    returned), ``num_blocks`` (8) residual dense blocks per step, ``num_reroute_feats`` (8) block
    outputs fed back, ``num_refine_feats`` (16: every block) blocks refined by them."""

    num_features: int = 32
    num_steps: int = 4
    num_blocks: int = 8
    num_reroute_feats: int = 8
    num_refine_feats: int = 16

    def forward(self, z):
        f, c = self.num_features, self.c
        k, s, p = geometry(c)
        x = z[..., None]
        n, h, w, _ = x.shape
        # bilinear up-sampling, half-pixel centres: PyTorch's interpolate(align_corners=False)
        up = jax.image.resize(x, (n, h * c, w * c, 1), method="bilinear")
        feat = ConvPReLU(f, 4 * f, 1, name="feat_in")(ConvPReLU(4 * f, 1, 3, name="conv_in")(x))
        block = GFMRDB(f, self.num_blocks, self.num_refine_feats, self.num_reroute_feats, name="block")
        out_deconv = deconv(f, k, s, p, name="out")
        out_act = blocks.PReLU(PRELU_INIT, name="out_act")
        conv_out = blocks.conv(1, f, 3, name="conv_out")
        last, y = [], None
        for _ in range(self.num_steps):
            last = block(feat, last)
            y = up + conv_out(out_act(out_deconv(last[-1])))
        return blocks.to_map(y), []


SMALL = {"gmfn": {"num_features": 8, "num_steps": 2, "num_blocks": 1, "num_reroute_feats": 1}}
PARAMS_C3 = {"gmfn": 2_796_518}
