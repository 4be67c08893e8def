"""DCTLSA, the densely connected transformer with linear self-attention of Zeng, Lin, Yan and Fang,
"Densely Connected Transformer With Linear Self-Attention for Lightweight Image Super-Resolution" (IEEE
Transactions on Instrumentation and Measurement, 2023), as the GrokCSO toolkit trains it for CSIST-100K
(``configs/c_3/dctlsa.py``, ``grokcso/models/editor/dctlsa.py``: the class defaults, 6 modules of 55
channels and 5 heads).

On the 11 x 11 frame (raw 0..255): a 3x3 conv 1 -> ``nf``; ``num_modules`` local self-attention blocks
(LSAB) densely connected: the input of block ``k + 1`` is a 1x1 conv + LeakyReLU(0.05) of the
concatenation of the head features and the outputs of blocks 1..k; a 1x1 conv + LeakyReLU(0.05) fuses
the outputs of all the blocks, a 3x3 conv and the head features (long skip) follow, and the up-sampler is
one 3x3 conv ``nf`` -> ``c^2`` and a pixel shuffle by ``c`` (any ``c``, as the toolkit's).

An LSAB is two Swin-style stages; a stage pads the map on the bottom and right by reflection to a
multiple of ``window_size`` (16: the 11 x 11 map becomes one 16 x 16 window), applies LayerNorm over the
channels, then two transformer blocks, the second on the map cyclically shifted by ``window_size / 2``
(rolled back after its attention; no attention mask), and crops the padding. A block is
``y = attn(x)``, ``y + mlp(y)`` (MLP ``nf`` -> ``2 nf`` -> ``nf`` with exact GELU; the toolkit has no
LayerNorm inside the block and no skip around the attention other than the one inside it). The attention
first runs a local branch, ``l = x + local(x)`` with ``local`` = norm, 1x1 conv, depthwise 3x3 conv, norm,
1x1 conv (all convs bias-free), then the linear (efficient) attention per window and head on
``qkv = Linear(l)``: keys soft-maxed over the window's positions, ``out = (q / sqrt(d)) (k^T v)``, a
linear projection, plus ``l``.

BatchNorm: the toolkit's local branch has two ``nn.BatchNorm2d`` (batch statistics in training, running
statistics in evaluation). Here each is a per-sample, per-channel normalisation over the spatial positions
(instance normalisation, eps 1e-5) with the same affine scale and shift: batch independent, no mutable
state, and the same parameter count; it equals the toolkit's training-mode BatchNorm at batch size 1.

Parameters at c = 3: 864,994 (head 550, 6 LSABs x 125,620, dense fusion 1x1 convs 78,980, 3x3 conv
27,280, up-sampler 4,464), exactly PyTorch's ``sum(p.numel() for p in DCTLSA().parameters())`` for the
toolkit's class (its 5,328 BatchNorm running statistics and counters are buffers, not parameters);
published 0.865M (DISTA-Net Table 1). The toolkit builds exactly six blocks whatever ``num_modules`` says;
here ``num_modules`` sets the number of blocks (and the dense fusion) so that small models can be built.
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from csist_jax.models.baselines import blocks
from csist_jax.models.layers import SuperResolutionNetwork, torch_default_bias, torch_default_kernel


def linear(features: int, in_features: int, name: str | None = None) -> nn.Dense:
    """A linear layer over the last axis, initialised as PyTorch's ``nn.Linear``."""
    return nn.Dense(
        features, kernel_init=torch_default_kernel, bias_init=torch_default_bias(in_features), name=name
    )


class InstanceNorm(nn.Module):
    """Per-sample, per-channel normalisation over the spatial positions with an affine scale and shift
    (initialised 1 and 0): the stand-in for the toolkit's ``nn.BatchNorm2d``."""

    eps: float = 1e-5

    @nn.compact
    def __call__(self, x):
        scale = self.param("scale", nn.initializers.ones, (x.shape[-1],))
        bias = self.param("bias", nn.initializers.zeros, (x.shape[-1],))
        mean = jnp.mean(x, axis=(1, 2), keepdims=True)
        var = jnp.mean(jnp.square(x - mean), axis=(1, 2), keepdims=True)
        return (x - mean) / jnp.sqrt(var + self.eps) * scale + bias


class WindowAttention(nn.Module):
    """The local branch plus the linear window attention (see the module docstring)."""

    dim: int
    num_heads: int
    window_size: int

    @nn.compact
    def __call__(self, x):
        c, ws = self.dim, self.window_size
        local = InstanceNorm(name="norm_0")(x)
        local = blocks.conv(c, c, 1, use_bias=False, name="pointwise_0")(local)
        local = blocks.conv(c, c, 3, use_bias=False, groups=c, name="depthwise")(local)
        local = InstanceNorm(name="norm_1")(local)
        local = blocks.conv(c, c, 1, use_bias=False, name="pointwise_1")(local)
        local = local + x
        qkv = linear(3 * c, c, name="qkv")(local)
        n, h, w, _ = qkv.shape
        hd = c // self.num_heads
        # windows: [n * h/ws * w/ws, ws * ws, 3, heads, hd]
        win = qkv.reshape(n, h // ws, ws, w // ws, ws, 3 * c).transpose(0, 1, 3, 2, 4, 5)
        win = win.reshape(-1, ws * ws, 3, self.num_heads, hd)
        q, k, v = win[:, :, 0], win[:, :, 1], win[:, :, 2]  # [b, N, heads, hd]
        k = nn.softmax(k, axis=1)
        q = q * hd**-0.5
        context = jnp.einsum("bnhd,bnhe->bhde", k, v)
        out = jnp.einsum("bnhd,bhde->bnhe", q, context).reshape(-1, ws * ws, c)
        out = linear(c, c, name="proj")(out)
        out = out.reshape(n, h // ws, w // ws, ws, ws, c).transpose(0, 1, 3, 2, 4, 5).reshape(n, h, w, c)
        return out + local


class TransformerBlock(nn.Module):
    """``y = attn(x)`` (on the map rolled by ``-shift``, rolled back), then ``y + mlp(y)``."""

    dim: int
    num_heads: int
    window_size: int
    shift: int
    mlp_ratio: float = 2.0

    @nn.compact
    def __call__(self, x):
        s = self.shift
        if s:
            x = jnp.roll(x, (-s, -s), axis=(1, 2))
        x = WindowAttention(self.dim, self.num_heads, self.window_size, name="attn")(x)
        if s:
            x = jnp.roll(x, (s, s), axis=(1, 2))
        hidden = int(self.dim * self.mlp_ratio)
        y = nn.gelu(linear(hidden, self.dim, name="fc1")(x), approximate=False)
        return x + linear(self.dim, hidden, name="fc2")(y)


class SwinStage(nn.Module):
    """Reflect-pad to a multiple of the window, LayerNorm, a plain and a shifted block, crop."""

    dim: int
    num_heads: int
    window_size: int

    @nn.compact
    def __call__(self, x):
        n, h, w, _ = x.shape
        ws = self.window_size
        ph, pw = (-h) % ws, (-w) % ws
        if ph or pw:
            x = jnp.pad(x, ((0, 0), (0, ph), (0, pw), (0, 0)), mode="reflect")
        x = nn.LayerNorm(epsilon=1e-5, name="norm")(x)
        for k in range(2):
            shift = 0 if k % 2 == 0 else ws // 2
            x = TransformerBlock(self.dim, self.num_heads, ws, shift, name=f"block_{k}")(x)
        return x[:, :h, :w]


class DCTLSA(SuperResolutionNetwork):
    """``nf``: channels (published 55); ``num_modules``: LSABs (6); ``num_head``: attention heads (5);
    ``window_size``: attention window (16)."""

    nf: int = 55
    num_modules: int = 6
    num_head: int = 5
    window_size: int = 16

    def forward(self, z):
        nf = self.nf
        fea = blocks.conv(nf, 1, 3, name="fea_conv")(z[..., None])
        dense, outs, inp = [fea], [], fea
        for k in range(self.num_modules):
            out = inp
            for j in range(2):
                out = SwinStage(nf, self.num_head, self.window_size, name=f"B{k + 1}_{j}")(out)
            outs.append(out)
            dense.append(out)
            if k + 1 < self.num_modules:
                cat = jnp.concatenate(dense, -1)
                inp = nn.leaky_relu(blocks.conv(nf, cat.shape[-1], 1, name=f"c{k + 1}")(cat), 0.05)
        cat = jnp.concatenate(outs, -1)
        fused = nn.leaky_relu(blocks.conv(nf, cat.shape[-1], 1, name="c")(cat), 0.05)
        lr = blocks.conv(nf, nf, 3, name="LR_conv")(fused) + fea
        y = blocks.conv(self.c * self.c, nf, 3, name="upsampler")(lr)
        return blocks.to_map(blocks.pixel_shuffle(y, self.c)), []


SMALL = {"dctlsa": {"nf": 10, "num_modules": 2, "num_head": 2}}
PARAMS_C3 = {"dctlsa": 864_994}
