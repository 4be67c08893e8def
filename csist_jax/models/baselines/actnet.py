"""ACT, the aggregation CNN-Transformer of Yoo et al., "Enriched CNN-Transformer Feature Aggregation
Networks for Super-Resolution" (WACV 2023, arXiv 2203.07682), as the GrokCSO toolkit
trains it for CSIST-100K (``configs/c_3/actnet.py``, ``grokcso/models/editor/actnet.py``, class ``ACT``
with its defaults: 64 features, 4 residual groups of 12 RCABs, 8 transformer layers in 4 fusion
blocks, 8 heads, 3x3 tokens, no dropout, no mean shift).

On the 11 x 11 frame (raw 0..255, no normalisation): head 3x3 conv 1 -> F and two residual blocks of
5x5 convs (conv, ReLU, conv, plus input). Tokens: the non-overlapping 3x3 patches of the F-channel map
(PyTorch ``unfold`` order, channel-major vectors of E = 9F; on 11 x 11 the 3 x 3 grid covers the top-left
9 x 9 pixels, the last two rows and columns are not tokenised and come back as zeros from ``fold``), a
linear encoding plus the tokens. Then per fusion block ``i``:

- transformer: pre-norm multi-head self-attention and pre-norm feed-forward (E -> 4E -> E, exact GELU),
  each with a skip; cross-scale token attention: the tokens split into halves ``a`` and ``b`` (channels
  0..F/2 and F/2..F); ``b`` folded back to a map and re-tokenised as overlapping 6x6 patches with stride
  3 (2 x 2 large tokens of 2E), LayerNorm, Linear 2E -> E/2, GELU, Linear; ``a`` attends to ``b`` and
  ``b`` to ``a`` (pre-norm cross-attention with ``heads / 2`` heads, both from the values before either
  update, each with a skip), ``b`` through LayerNorm, Linear, GELU, Linear E/2 -> 2E, folded (overlaps
  summed) and re-tokenised as 3x3 patches; ``[a, b]`` through a pre-norm feed-forward with a skip;
- CNN branch: residual group ``i`` of RCAN (``n_resblocks`` RCABs -- conv, ReLU, conv, channel attention
  with reduction 16, plus input -- then a 3x3 conv, plus the group's input);
- fusion: ``f = [cnn, fold(tokens)]`` (2F channels) plus four 1x1 residual blocks (no bias) of ``f``;
  except after the last block, the first F channels of ``f`` become the tokens again (re-tokenised, a
  LayerNorm-MLP E -> 4E -> E, plus the tokens before the fusion) and the last F the CNN features (conv,
  ReLU, conv, plus the CNN features before the fusion) -- the toolkit's (and the original code's) order.

Tail: 3x3 conv 2F -> F on the last ``f``, plus the head's output; the EDSR up-sampler and a 3x3 conv F
-> 1. Linear layers and LayerNorms follow PyTorch (uniform ``1/sqrt(fan_in)`` initialisation, LayerNorm
epsilon 1e-5, exact GELU); attention ``softmax(q k^T / sqrt(E / heads))``.

Ratios: the toolkit's up-sampler handles 2^k and 3; here :class:`blocks.Upsampler` (one sub-pixel step
per prime factor of ``c``), the same network at c = 2, 3, 4, 8. The tokens live at LR and do not depend
on ``c``.

Parameters at c = 3: 46,175,105. PyTorch's ``sum(p.numel() for p in ACT().parameters())`` on the
toolkit's model gives 46,212,033 (published 46.212M, DISTA-Net Table 1): its CNN branch appends a fifth
3x3 conv (64 -> 64, 36,928 parameters) after the four residual groups that the forward never calls
(only ``cnn_branch[i]``, ``i < 4``, run; checked by back-propagating through the toolkit's model); it
is not built here. No frozen tensors. The toolkit ties the number of transformer blocks (``n_layers //
2``), residual groups and fusion blocks to 4; here the one field ``n_fusionblocks`` sets all three.
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from csist_jax.models.baselines import blocks
from csist_jax.models.layers import SuperResolutionNetwork, torch_default_bias, torch_default_kernel


def dense(features: int, in_features: int, use_bias: bool = True, name: str | None = None) -> nn.Dense:
    """PyTorch's ``nn.Linear(in_features, features)`` (uniform ``1/sqrt(in_features)`` weights and bias)."""
    return nn.Dense(
        features,
        use_bias=use_bias,
        kernel_init=torch_default_kernel,
        bias_init=torch_default_bias(in_features),
        name=name,
    )


def layer_norm(name: str | None = None) -> nn.LayerNorm:
    """PyTorch's ``nn.LayerNorm`` (epsilon 1e-5)."""
    return nn.LayerNorm(epsilon=1e-5, name=name)


def gelu(x):
    return nn.gelu(x, approximate=False)


def unfold(x, size: int, stride: int):
    """PyTorch's ``F.unfold`` on NHWC maps: ``[n, h, w, C]`` -> tokens ``[n, T, C size^2]``, one per
    ``size`` x ``size`` patch at a multiple of ``stride`` (row-major), each vector channel-major
    (``channel * size^2 + row * size + column``)."""
    n, h, w, ch = x.shape
    th, tw = (h - size) // stride + 1, (w - size) // stride + 1
    patches = [
        x[:, i * stride : i * stride + size, j * stride : j * stride + size]
        for i in range(th)
        for j in range(tw)
    ]
    t = jnp.stack(patches, axis=1)  # n, T, size, size, C
    return t.transpose(0, 1, 4, 2, 3).reshape(n, th * tw, ch * size * size)


def fold(tokens, h: int, w: int, size: int, stride: int):
    """PyTorch's ``F.fold``, the adjoint of :func:`unfold`: tokens ``[n, T, C size^2]`` summed back into
    an ``[n, h, w, C]`` map (overlaps added, uncovered pixels zero)."""
    n, _, d = tokens.shape
    ch = d // (size * size)
    th, tw = (h - size) // stride + 1, (w - size) // stride + 1
    patches = tokens.reshape(n, th, tw, ch, size, size).transpose(0, 1, 2, 4, 5, 3)
    out = jnp.zeros((n, h, w, ch), tokens.dtype)
    for i in range(th):
        for j in range(tw):
            out = out.at[:, i * stride : i * stride + size, j * stride : j * stride + size].add(
                patches[:, i, j]
            )
    return out


def _attend(q, k, v, heads: int, dim_head: int):
    """Scaled dot-product attention of ``[n, tokens, heads dim_head]`` queries, keys and values, head by
    head: ``softmax(q k^T / sqrt(dim_head)) v``, heads concatenated again."""

    def split(t):
        return t.reshape(t.shape[0], t.shape[1], heads, dim_head).transpose(0, 2, 1, 3)

    q, k, v = split(q), split(k), split(v)
    attn = nn.softmax(jnp.einsum("bhid,bhjd->bhij", q, k) * dim_head**-0.5, axis=-1)
    out = jnp.einsum("bhij,bhjd->bhid", attn, v).transpose(0, 2, 1, 3)
    return out.reshape(out.shape[0], out.shape[1], heads * dim_head)


class Attention(nn.Module):
    """Multi-head attention of ``dim``-wide tokens, ``heads`` heads of ``dim_head`` channels, no bias on
    the input projections and an output projection unless ``heads == 1`` and ``dim_head == dim`` (the
    original rule). ``cross=False``: self-attention of ``x`` through one ``to_qkv`` projection;
    ``cross=True``: queries from ``x`` (``to_q``), keys and values from ``kv`` (``to_kv``)."""

    dim: int
    heads: int
    dim_head: int
    cross: bool = False

    @nn.compact
    def __call__(self, x, kv=None):
        inner = self.heads * self.dim_head
        if self.cross:
            q = dense(inner, self.dim, use_bias=False, name="to_q")(x)
            k, v = jnp.split(dense(2 * inner, self.dim, use_bias=False, name="to_kv")(kv), 2, axis=-1)
        else:
            q, k, v = jnp.split(dense(3 * inner, self.dim, use_bias=False, name="to_qkv")(x), 3, axis=-1)
        out = _attend(q, k, v, self.heads, self.dim_head)
        if self.heads == 1 and self.dim_head == self.dim:
            return out
        return dense(self.dim, inner, name="to_out")(out)


class MLP(nn.Module):
    """``[LayerNorm,] Linear in -> hidden, GELU, Linear hidden -> out``."""

    hidden: int
    out: int
    in_features: int
    norm: bool = True

    @nn.compact
    def __call__(self, x):
        if self.norm:
            x = layer_norm(name="norm")(x)
        x = gelu(dense(self.hidden, self.in_features, name="fc1")(x))
        return dense(self.out, self.hidden, name="fc2")(x)


class RCAB(nn.Module):
    """Residual channel attention block: conv, ReLU, conv, channel attention, plus input."""

    features: int
    reduction: int

    @nn.compact
    def __call__(self, x):
        f = self.features
        y = blocks.conv(f, f, 3, name="conv1")(nn.relu(blocks.conv(f, f, 3, name="conv0")(x)))
        return x + blocks.ChannelAttention(f, self.reduction, name="ca")(y)


class ResidualGroup(nn.Module):
    """RCAN's residual group: ``n_resblocks`` RCABs and a 3x3 conv, plus the group's input."""

    features: int
    reduction: int
    n_resblocks: int

    @nn.compact
    def __call__(self, x):
        y = x
        for i in range(self.n_resblocks):
            y = RCAB(self.features, self.reduction, name=f"rcab_{i}")(y)
        return x + blocks.conv(self.features, self.features, 3, name="conv")(y)


class FusionBlock(nn.Module):
    """Four 1x1 residual blocks (conv, ReLU, conv without bias, plus input) of ``features`` channels in
    sequence (the caller adds the block's input once more, as the toolkit)."""

    features: int

    @nn.compact
    def __call__(self, x):
        f = self.features
        for i in range(4):
            y = nn.relu(blocks.conv(f, f, 1, use_bias=False, name=f"fb_{i}_conv0")(x))
            x = x + blocks.conv(f, f, 1, use_bias=False, name=f"fb_{i}_conv1")(y)
        return x


class ACTNet(SuperResolutionNetwork):
    """``n_feats`` F (toolkit 64), ``n_fusionblocks`` (4) transformer blocks / residual groups / fusion
    blocks, ``n_resblocks`` (12) RCABs per group, ``reduction`` (16) of the channel attention,
    ``n_heads`` (8) self-attention heads (half as many in the cross-attention), ``token_size`` (3)."""

    n_feats: int = 64
    n_fusionblocks: int = 4
    n_resblocks: int = 12
    reduction: int = 16
    n_heads: int = 8
    token_size: int = 3

    def forward(self, z):
        f, ts, nh = self.n_feats, self.token_size, self.n_heads
        e = f * ts * ts
        half, dim_head = e // 2, e // nh
        x = z[..., None]
        _, h, w, _ = x.shape

        x = blocks.conv(f, 1, 3, name="head_conv")(x)
        for i in range(2):
            y = nn.relu(blocks.conv(f, f, 5, name=f"head_res_{i}_conv0")(x))
            x = x + blocks.conv(f, f, 5, name=f"head_res_{i}_conv1")(y)
        identity = x

        tkn = unfold(x, ts, ts)
        tkn = dense(e, e, name="linear_encoding")(tkn) + tkn
        f_map = None
        for i in range(self.n_fusionblocks):
            tkn = Attention(e, nh, dim_head, name=f"mhsa_{i}_attn")(layer_norm(f"mhsa_{i}_norm0")(tkn)) + tkn
            tkn = MLP(4 * e, e, e, name=f"mhsa_{i}_ff")(tkn) + tkn

            a, b = tkn[..., :half], tkn[..., half:]
            b = unfold(fold(b, h, w, ts, ts), 2 * ts, ts)
            b = MLP(half, half, 2 * e, name=f"csta_{i}_ff_in")(b)
            a0, b0 = a, b
            cross_a = Attention(half, nh // 2, dim_head, True, name=f"csta_{i}_cross_a")
            cross_b = Attention(half, nh // 2, dim_head, True, name=f"csta_{i}_cross_b")
            a = (
                cross_a(layer_norm(f"csta_{i}_cross_a_norm")(a), layer_norm(f"csta_{i}_cross_a_norm2")(b0))
                + a
            )
            b = (
                cross_b(layer_norm(f"csta_{i}_cross_b_norm")(b), layer_norm(f"csta_{i}_cross_b_norm2")(a0))
                + b
            )
            b = MLP(half, 2 * e, half, name=f"csta_{i}_ff_out")(b)
            b = unfold(fold(b, h, w, 2 * ts, ts), ts, ts)
            tkn = jnp.concatenate([a, b], axis=-1)
            tkn = MLP(4 * e, e, e, name=f"csta_{i}_ff")(tkn) + tkn

            x = ResidualGroup(f, self.reduction, self.n_resblocks, name=f"group_{i}")(x)
            tkn_res, x_res = tkn, x
            f_map = jnp.concatenate([x, fold(tkn, h, w, ts, ts)], axis=-1)
            f_map = f_map + FusionBlock(2 * f, name=f"fusion_{i}")(f_map)
            if i != self.n_fusionblocks - 1:
                # the toolkit's order: the FIRST F channels (the CNN side of the concatenation) become
                # the tokens and the last F (the token side) the CNN features
                tkn = MLP(4 * e, e, e, name=f"fusion_mlp_{i}")(unfold(f_map[..., :f], ts, ts)) + tkn_res
                y = nn.relu(blocks.conv(f, f, 3, name=f"fusion_cnn_{i}_conv0")(f_map[..., f:]))
                x = blocks.conv(f, f, 3, name=f"fusion_cnn_{i}_conv1")(y) + x_res

        x = blocks.conv(f, 2 * f, 3, name="conv_last")(f_map) + identity
        x = blocks.Upsampler(self.c, f, name="upsample")(x)
        x = blocks.conv(1, f, 3, name="tail_conv")(x)
        return blocks.to_map(x), []


SMALL = {"actnet": {"n_feats": 8, "n_fusionblocks": 1, "n_resblocks": 1, "reduction": 4, "n_heads": 4}}
PARAMS_C3 = {"actnet": 46_175_105}
