r"""DeRefNet (SeqCSIST, IEEE TGRS 2025): multi-frame unmixing with deformable temporal alignment.

For a window of ``T`` frames (5 by default) predicting its centre frame (SPEC sec. 7):

1. every frame goes through the same ISTA-Net unfolding (9 stages, 32 channels): ``x_t`` ``[hr, hr]``;
2. a temporal encoding of each frame's TRUE index ``i_t`` in its trajectory,
   ``e_t = sigmoid(W (i_t / n_frames) 1 + b)`` (a learned ``hr^2 x hr^2`` linear map of a constant
   vector), multiplies ``x_t``;
3. each neighbour ``t != centre`` is aligned to the centre: shared features ``f = relu(conv3(1->32))``
   of both, selective attention ``a = SK(f_centre, f_t)``, a deformable 3x3 conv of ``f_t`` whose offsets
   come from ``a`` (offset conv zero-initialised, so alignment starts as a plain conv), a second
   deformable conv with offsets from its own input, then ``conv3(32->1)``;
4. tail: the ``T - 1`` aligned maps and the centre map (in frame order) -> ``conv3(T->32)`` + ReLU ->
   5 residual blocks (conv-ReLU-conv + skip) -> ``conv3(32->1)``: the centre frame's HR map.

Loss: :func:`csist_jax.train.losses.derefnet_loss`, by default the objective the toolkit trains
(regression + symmetry over the distinct frames + 0.1 x the summed L1 alignment error of the aligned
neighbours against the centre frame's unfolded map BEFORE the time encoding), per window.

Initialisation as the toolkit's: the deformable kernels are mmcv's ``DeformConv2d`` (Kaiming uniform for
ReLU, ``U(-sqrt(6 / fan_in), sqrt(6 / fan_in))``, ``fan_in = 9 C``) and both offset convs start at zero
(weights and bias), so alignment starts as a plain convolution.

Unlike the toolkit, the time encoding uses each frame's true index (passed in), not its position inside
the batch, so any batch of windows from any trajectories works and every window is independent of the
others in its batch.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from csist_jax.models import layers
from csist_jax.models.ista_net import ISTANetStage

#: mmcv's ``DeformConv2d.reset_parameters``: ``kaiming_uniform_(weight, nonlinearity="relu")``, i.e.
#: ``U(-sqrt(6 / fan_in), sqrt(6 / fan_in))`` with ``fan_in = 9 x`` input channels.
MMCV_DEFORM_KERNEL = nn.initializers.variance_scaling(2.0, "fan_in", "uniform")


def bilinear_sample(x: Float[Array, "h w c"], py: Float[Array, "..."], px: Float[Array, "..."]) -> Array:
    """``x`` read at fractional positions ``(py, px)`` (any shape ``S``) by bilinear interpolation, zero
    outside the map: ``[*S, c]``."""
    h, w = x.shape[:2]
    y0, x0 = jnp.floor(py), jnp.floor(px)
    out = 0.0
    for dy in (0, 1):
        for dx in (0, 1):
            yi, xi = y0 + dy, x0 + dx
            weight = (1.0 - jnp.abs(py - yi)) * (1.0 - jnp.abs(px - xi))
            inside = (yi >= 0) & (yi <= h - 1) & (xi >= 0) & (xi <= w - 1)
            yc = jnp.clip(yi, 0, h - 1).astype(jnp.int32)
            xc = jnp.clip(xi, 0, w - 1).astype(jnp.int32)
            out = out + jnp.where(inside, weight, 0.0)[..., None] * x[yc, xc]
    return out


def deform_conv3(
    x: Float[Array, "n h w c"], offsets: Float[Array, "n h w 18"], kernel: Float[Array, "3 3 c o"]
) -> Float[Array, "n h w o"]:
    """Deformable 3x3 convolution (stride 1, padding 1, one offset group).

    ``out[p] = sum_k W_k x(p + p_k + dp_k)`` over the nine taps ``p_k``; ``offsets[..., 2k]`` is the row
    (``dy``) and ``offsets[..., 2k+1]`` the column (``dx``) shift of tap ``k = 3a + b``. With zero offsets
    this is the ordinary 3x3 cross-correlation with zero padding. The nine taps are sampled together
    (one bilinear read of ``[n, h, w, 9]`` positions) and contracted with the kernel in one product.
    """
    n, h, w, c = x.shape
    rows, cols = jnp.meshgrid(jnp.arange(h, dtype=x.dtype), jnp.arange(w, dtype=x.dtype), indexing="ij")
    tap_rows = jnp.repeat(jnp.arange(-1, 2, dtype=x.dtype), 3)  # tap k = 3a + b: row a - 1
    tap_cols = jnp.tile(jnp.arange(-1, 2, dtype=x.dtype), 3)  # column b - 1
    py = rows[..., None] + tap_rows + offsets[..., 0::2]
    px = cols[..., None] + tap_cols + offsets[..., 1::2]
    sampled = jax.vmap(bilinear_sample)(x, py, px)  # [n, h, w, 9, c]
    return jnp.einsum("nhwkc,kco->nhwo", sampled, kernel.reshape(9, c, -1).astype(x.dtype))


class DeformConv3(nn.Module):
    """Deformable 3x3 conv (no bias) whose offsets come from ``guide`` through a zero-initialised conv.

    Initialised as mmcv's ``DeformConv2d`` / ``DeformConv2dPack``: kernel Kaiming uniform for ReLU
    (``U(-sqrt(6 / fan_in), sqrt(6 / fan_in))``, ``fan_in = 9 x`` input channels), offset conv weights and
    bias zero.
    """

    features: int

    @nn.compact
    def __call__(self, x, guide):
        offsets = nn.Conv(
            18,
            (3, 3),
            padding="SAME",
            kernel_init=nn.initializers.zeros,
            bias_init=nn.initializers.zeros,
            name="offset",
        )(guide)
        kernel = self.param("kernel", MMCV_DEFORM_KERNEL, (3, 3, x.shape[-1], self.features))
        return deform_conv3(x, offsets, kernel)


class SelectiveAttention(nn.Module):
    """``[W0 f_c, W1 f_n]`` (1x1, C -> C/2 each) reweighted by sigmoid masks from ``[mean_c, max_c]``."""

    channels: int = 32

    @nn.compact
    def __call__(self, centre, neighbour):
        half = self.channels // 2
        a1 = layers.torch_conv(half, 1, self.channels, name="squeeze0")(centre)
        a2 = layers.torch_conv(half, 1, self.channels, name="squeeze1")(neighbour)
        both = jnp.concatenate([a1, a2], axis=-1)
        pooled = jnp.concatenate([jnp.mean(both, -1, keepdims=True), jnp.max(both, -1, keepdims=True)], -1)
        masks = nn.sigmoid(layers.torch_conv(2, 3, 2, name="select")(pooled))
        return jnp.concatenate([a1 * masks[..., 0:1], a2 * masks[..., 1:2]], axis=-1)


class DeRefNet(layers.WindowNetwork):
    """DeRefNet on windows ``[n, T, size, size]`` with their centre frames' indices ``[n]``.

    ``__call__(windows, centre_index, return_aux=False, *, operator=None, q=None)``: the per-frame
    unfolding runs ``operator`` (default: the analytic ``Phi`` of ``(c, size, sigma)``) from ``Q`` ``q``
    (default: the ``"constants"`` one), exactly as in
    :class:`csist_jax.models.layers.UnfoldingNetwork`.

    Returns the centre frames' HR maps ``[n, hr, hr]``; with ``return_aux=True`` also a dict of the
    training-only outputs: ``"sym"`` (per stage, the symmetry residuals of all ``n T`` frames, window-major),
    ``"aligned"`` ``[n, T-1, hr, hr]`` (the aligned neighbour maps, frame order), ``"centre"``
    ``[n, hr, hr]`` (the centre frame's unfolded map BEFORE the time encoding: the toolkit's alignment
    target), ``"encoded_centre"`` ``[n, hr, hr]`` (after it: what the tail sees) and ``"frame"``
    ``[n, T]`` int32 (each frame's true index in its trajectory).
    """

    stages: int = 9
    channels: int = 32
    residual_blocks: int = 5
    n_frames: int = 20
    step_init: float = 0.5  # the unfolding stages' initial step (published 0.5, as ISTA-Net)

    def forward_windows(self, z, centre_index, q, op):
        n, t = z.shape[:2]
        hr, half, dtype = self.hr, t // 2, z.dtype
        z = z.reshape(n * t, self.size, self.size)
        stages = [ISTANetStage(self.channels, self.step_init, name=f"stage_{k}") for k in range(self.stages)]
        x, aux = layers.unroll(stages, layers.linear_init(q, z, hr, self.batch_exact), z, op)
        x = x.reshape(n, t, hr, hr)

        index = jnp.asarray(centre_index, dtype)[:, None] + jnp.arange(-half, half + 1, dtype=dtype)  # [n, T]
        ones = jnp.ones((n, t, hr * hr), dtype)
        time_encoding = nn.Dense(
            hr * hr,
            kernel_init=layers.torch_default_kernel,
            bias_init=layers.torch_default_bias(hr * hr),
            name="time_encoding",
        )
        encoding = nn.sigmoid(time_encoding(ones * index[..., None] / self.n_frames))
        unencoded_centre = x[:, half]  # the alignment target of the toolkit's loss
        x = x * encoding.reshape(n, t, hr, hr)

        extract = nn.Conv(self.channels, (3, 3), padding="SAME", name="features")
        attention = SelectiveAttention(self.channels, name="attention")
        align1 = DeformConv3(self.channels, name="align1")
        align2 = DeformConv3(self.channels, name="align2")
        to_map = nn.Conv(1, (3, 3), padding="SAME", name="to_map")
        centre = x[:, half, :, :, None]
        others = [k for k in range(t) if k != half]
        # the T - 1 neighbours of every window go through the alignment together, as one batch
        neighbours = jnp.swapaxes(x[:, others], 0, 1).reshape((t - 1) * n, hr, hr, 1)
        f_centre = jnp.tile(nn.relu(extract(centre)), (t - 1, 1, 1, 1))
        f_neighbours = nn.relu(extract(neighbours))
        aligned = align1(f_neighbours, attention(f_centre, f_neighbours))
        aligned_maps = to_map(align2(aligned, aligned)).reshape(t - 1, n, hr, hr, 1)
        maps = [aligned_maps[others.index(k)] if k != half else centre for k in range(t)]
        stacked = jnp.concatenate(maps, axis=-1)  # [n, hr, hr, T]
        h = nn.relu(nn.Conv(self.channels, (3, 3), padding="SAME", name="tail_in")(stacked))
        for b in range(self.residual_blocks):
            r = nn.Conv(self.channels, (3, 3), padding="SAME", name=f"res{b}_a")(h)
            h = h + nn.Conv(self.channels, (3, 3), padding="SAME", name=f"res{b}_b")(nn.relu(r))
        out = nn.Conv(1, (3, 3), padding="SAME", use_bias=False, name="tail_out")(h)[..., 0]
        neighbours = jnp.stack([maps[k][..., 0] for k in range(t) if k != half], axis=1)
        return out, {
            "sym": [a["sym"] for a in aux],
            "aligned": neighbours,
            "centre": unencoded_centre,
            "encoded_centre": centre[..., 0],
            "frame": layers.window_frame_index(centre_index, t),
        }


__all__ = [
    "DeRefNet",
    "DeformConv3",
    "SelectiveAttention",
    "bilinear_sample",
    "deform_conv3",
]
