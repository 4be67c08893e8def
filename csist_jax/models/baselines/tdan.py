r"""TDAN (Tian, Zhang, Fu and Xu, "TDAN: Temporally-Deformable Alignment Network for Video
Super-Resolution", CVPR 2020) as the GrokCSO toolkit trains it on SeqCSIST (``tdan_det.py``,
``configs/c_3/tdan.py``: ``TDAN_Net()`` with its defaults, 32 channels, 5 residual blocks before the
alignment, 10 after, deformable groups 8, one trajectory of 20 frames per batch, Adam lr 1e-4, weight
decay 1e-5).

For a window of ``T`` frames (5 in the toolkit) predicting its centre frame, all on the raw 0..255 LR
frames (the toolkit does not use ``Q`` or ``Phi``; the initial ``x = Q z`` is commented out):

1. features of every frame: ``relu(conv3(1 -> 32))`` then 5 residual blocks (conv-ReLU-conv + skip);
2. per neighbour ``t`` of the centre ``c``: ``g = conv3([f_c, f_t], 64 -> 32)``, then two deformable
   3x3 convs (each with offsets from its own input), ``g`` drives the offsets of a deformable conv of
   ``f_t`` and a last deformable conv (offsets from its own input) follows, then ``conv3(32 -> 1)``: the
   neighbour aligned to the centre as an 11 x 11 LR frame (no activations inside the alignment);
3. reconstruction: the ``T`` LR frames in frame order, the centre slot holding the centre frame itself,
   ``relu(conv3(T -> 32))``, 10 residual blocks, a sub-pixel conv (``conv3(32 -> 32 c^2)`` and a pixel
   shuffle by ``c``) and ``conv3(32 -> 1)`` without bias: the centre frame's HR map ``[11c, 11c]``.

Every deformable conv is mmcv's ``DeformConv2dPack`` layout: 8 deformable groups (each group of 4 input
channels has its own 9 offsets), no bias, an offset conv ``conv3(32 -> 8 x 18)`` with bias, zero-initialised
(alignment starts as plain convolutions); its kernel is initialised as mmcv's (Kaiming uniform for ReLU).
The sampling is :func:`csist_jax.models.derefnet.deform_conv3` per group (:func:`grouped_deform_conv3`).
The other initialisations follow the toolkit's modules too: mmcv ``ConvModule`` (the two convs followed
by ReLU) Kaiming normal fan-out with zero bias, mmagic's residual blocks Kaiming normal fan-in scaled by
0.1 with zero bias, its ``PixelShufflePack`` Kaiming normal fan-in with zero bias, the plain ``nn.Conv2d``
layers PyTorch's default.

Parameters at c = 3: 584,833, exactly ``sum(p.numel() for p in TDAN_Net().parameters())`` of the toolkit
(no buffers are parameters: its ``Phi`` and ``Qinit`` are plain tensors). The SeqCSIST table prints 0.59M:
584,833 is 0.585M to three places, 0.58M to two; we take 0.59M to be that three-place figure rounded again.
Its FLOPs, 2.18G per 20-frame batch, is our count of the convolutions without the four deformable
sampling products per neighbour (a counter that skips mmcv's custom op): 20 x 11.19M (features) +
16 x 4 x 22.34M (aggregation, offset convs, ``to_rgb``) + 16 x 32.83M (reconstruction) = 2.18G.

Differences from the toolkit (documented, not reproduced):

- The toolkit's centre slot of the reconstruction input is the MIDDLE frame of the whole 20-frame batch
  (``x[t // 2]``) for all 16 windows, not each window's centre frame (and its alignment loss compares that
  slot too). Here each window uses its own centre frame, so any batch of windows works and a window's
  output does not depend on the rest of its batch.
- The sub-pixel step is the toolkit's ``PixelShufflePack`` with its scale 3 replaced by ``c``: one conv to
  ``32 c^2`` channels and one pixel shuffle by ``c`` (identical at c = 3; any ``c`` works).
- The window length ``T`` is the input's (any odd ``T >= 3``; the toolkit hard-codes 5).

Interface as :class:`csist_jax.models.DeRefNet`: ``apply(variables, windows [n, T, 11, 11],
centre_index [n], return_aux=False)``. The network reads neither ``Q`` nor ``Phi`` nor the frame indices
(``USES_PHYSICS = False``, as the single-frame super-resolution baselines): it holds no ``Q`` (no
``"constants"`` collection), training fits none, and a ``q`` or ``operator`` given to ``apply`` is a
``TypeError``. Training objective: :func:`tdan_loss`.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from csist_jax.models import layers
from csist_jax.models.baselines import blocks
from csist_jax.models.derefnet import MMCV_DEFORM_KERNEL, deform_conv3

#: weight of the alignment term of the toolkit's loss (``lq_pixel_loss = MSEloss(alpha=0.01)``)
ALIGN_WEIGHT = 0.01

#: mmcv ``ConvModule`` (followed by ReLU): ``kaiming_normal_(mode="fan_out", nonlinearity="relu")``
_CONVMODULE_KERNEL = nn.initializers.variance_scaling(2.0, "fan_out", "normal")
#: mmagic ``default_init_weights(scale)``: ``kaiming_normal_(mode="fan_in")`` times ``scale``
_RESBLOCK_KERNEL = nn.initializers.variance_scaling(2.0 * 0.1**2, "fan_in", "normal")
_SHUFFLE_KERNEL = nn.initializers.variance_scaling(2.0, "fan_in", "normal")


def _conv(features: int, kernel_init, name: str) -> nn.Conv:
    """A 3x3 'same' conv with bias initialised to zero (the mmcv / mmagic modules)."""
    return nn.Conv(
        features, (3, 3), padding="SAME", kernel_init=kernel_init, bias_init=nn.initializers.zeros, name=name
    )


def grouped_deform_conv3(
    x: Float[Array, "n h w c"],
    offsets: Float[Array, "n h w g18"],
    kernel: Float[Array, "3 3 c o"],
    groups: int,
) -> Float[Array, "n h w o"]:
    """Deformable 3x3 conv with ``groups`` deformable groups (mmcv's ``deform_groups``; stride 1, padding 1).

    Input channels are split into ``groups`` consecutive blocks; block ``g`` is sampled at the offsets
    ``offsets[..., 18 g : 18 g + 18]`` (per tap ``k = 3a + b``: row shift at ``2k``, column shift at
    ``2k + 1``, as in :func:`csist_jax.models.derefnet.deform_conv3`) and contracted with its rows of the
    one kernel; the blocks' outputs add up. ``groups = 1`` is ``deform_conv3`` itself.
    """
    n, h, w, c = x.shape
    if c % groups or offsets.shape[-1] != 18 * groups:
        raise ValueError(
            f"grouped_deform_conv3: {c} channels and {offsets.shape[-1]} offsets do not fit {groups} groups"
        )
    per = c // groups
    xg = x.reshape(n, h, w, groups, per)
    og = offsets.reshape(n, h, w, groups, 18)
    kg = kernel.reshape(3, 3, groups, per, kernel.shape[-1])
    return jnp.sum(jax.vmap(deform_conv3, in_axes=(3, 3, 2))(xg, og, kg), axis=0)


class DeformConvPack(nn.Module):
    """mmcv's ``DeformConv2dPack`` (``guide`` None: offsets from ``x``) and TDAN's augmented variant
    (offsets from ``guide``): a zero-initialised offset conv (``18 groups`` outputs, bias) and a
    deformable 3x3 conv without bias."""

    features: int
    groups: int = 8

    @nn.compact
    def __call__(self, x, guide=None):
        offsets = nn.Conv(
            18 * self.groups,
            (3, 3),
            padding="SAME",
            kernel_init=nn.initializers.zeros,
            bias_init=nn.initializers.zeros,
            name="offset",
        )(x if guide is None else guide)
        kernel = self.param("kernel", MMCV_DEFORM_KERNEL, (3, 3, x.shape[-1], self.features))
        return grouped_deform_conv3(x, offsets, kernel.astype(x.dtype), self.groups)


class ResidualBlock(nn.Module):
    """mmagic's ``ResidualBlockNoBN``: ``x + conv3(relu(conv3(x)))`` (biases; init 0.1 x Kaiming)."""

    features: int

    @nn.compact
    def __call__(self, x):
        r = nn.relu(_conv(self.features, _RESBLOCK_KERNEL, "conv1")(x))
        return x + _conv(self.features, _RESBLOCK_KERNEL, "conv2")(r)


class TDAN(layers.WindowNetwork):
    """TDAN on windows ``[n, T, size, size]`` (raw 0..255) with their centre frames' indices ``[n]``.

    Returns the centre frames' HR maps ``[n, hr, hr]``; with ``return_aux=True`` also a dict:
    ``"aligned"`` ``[n, T-1, size, size]`` (the aligned neighbours as LR frames, frame order),
    ``"centre"`` ``[n, size, size]`` (the centre LR frame: the alignment target), ``"frame"`` ``[n, T]``
    int32 (each frame's index in its trajectory) and ``"sym"`` (empty: no unfolding stages).

    Fields: ``channels`` (published 32), ``blocks_before`` / ``blocks_after`` (residual blocks before and
    after the alignment, 5 and 10), ``deform_groups`` (8); ``n_frames``: the trajectory length (20; not
    read by the network, kept for the training route as DeRefNet's).
    """

    MIN_FRAMES = 3
    USES_PHYSICS = False  # a super-resolution network: no Q, no operator (layers.SuperResolutionNetwork)
    n_frames: int = 20
    channels: int = 32
    blocks_before: int = 5
    blocks_after: int = 10
    deform_groups: int = 8

    LOSS_OPTIONS = ()  # its published loss has no config weights

    @staticmethod
    def objective(out, aux, labels):
        """The toolkit's loss (:func:`tdan_loss`), this network's training loss (its ``objective``)."""
        return tdan_loss(out, aux, labels)

    def forward_windows(self, z, centre_index):
        if self.channels % self.deform_groups:
            raise ValueError(
                f"channels={self.channels} must be a multiple of deform_groups={self.deform_groups}"
            )
        n, t = z.shape[:2]
        m, half, ch = self.size, t // 2, self.channels

        # 1. features of every frame
        f = nn.relu(_conv(ch, _CONVMODULE_KERNEL, "features_in")(z.reshape(n * t, m, m, 1)))
        for b in range(self.blocks_before):
            f = ResidualBlock(ch, name=f"features_res{b}")(f)
        f = f.reshape(n, t, m, m, ch)

        # 2. alignment of the T - 1 neighbours of every window, as one batch
        others = [k for k in range(t) if k != half]
        f_nb = jnp.swapaxes(f[:, others], 0, 1).reshape((t - 1) * n, m, m, ch)
        f_centre = jnp.tile(f[:, half], (t - 1, 1, 1, 1))
        g = blocks.conv(ch, 2 * ch, 3, name="aggregate")(jnp.concatenate([f_centre, f_nb], axis=-1))
        g = DeformConvPack(ch, self.deform_groups, name="aggregate_dcn1")(g)
        g = DeformConvPack(ch, self.deform_groups, name="aggregate_dcn2")(g)
        a = DeformConvPack(ch, self.deform_groups, name="align1")(f_nb, g)
        a = DeformConvPack(ch, self.deform_groups, name="align2")(a)
        aligned = blocks.conv(1, ch, 3, name="to_frame")(a).reshape(t - 1, n, m, m)

        # 3. reconstruction of the centre frame's HR map
        frames = [aligned[others.index(k)] if k != half else z[:, half] for k in range(t)]
        h = nn.relu(_conv(ch, _CONVMODULE_KERNEL, "reconstruct_in")(jnp.stack(frames, axis=-1)))
        for b in range(self.blocks_after):
            h = ResidualBlock(ch, name=f"reconstruct_res{b}")(h)
        h = blocks.pixel_shuffle(_conv(ch * self.c * self.c, _SHUFFLE_KERNEL, "upsample")(h), self.c)
        out = blocks.to_map(blocks.conv(1, ch, 3, use_bias=False, name="reconstruct_out")(h))
        return out, {
            "aligned": jnp.swapaxes(aligned, 0, 1),
            "centre": z[:, half],
            "frame": layers.window_frame_index(centre_index, t),
            "sym": [],
        }


def tdan_loss(
    out: Float[Array, "n hr hr"], aux: dict, label: Float[Array, "n hr hr"], *, align_weight=ALIGN_WEIGHT
) -> tuple[Float[Array, ""], dict]:
    """The toolkit's TDAN objective (``tdan_det.py``, mode ``"loss"``) per window, averaged over windows:

        L_w = mean((x_w - s_w)^2) + 0.01 * sum_{t != centre} sum((a_{w,t} - z_{w,centre})^2) / (T size^2)

    on the raw 0..255 scale: ``x_w`` the HR map ``out``, ``s_w`` the HR ``label``, ``a_{w,t}`` the
    aligned neighbours (``aux["aligned"]``, LR frames) and ``z_{w,centre}`` the window's centre frame
    (``aux["centre"]``). The toolkit's alignment term is ``0.01 * MSE`` over all ``T`` slots of the
    reconstruction input against the centre frame; its centre slot is the centre frame itself here (the
    toolkit's holds the batch's middle frame, module docstring), contributing zero but still counted in
    the ``T size^2`` of the mean. The toolkit SUMS over the 16 windows of its 20-frame batch: its loss
    is 16 times this one on those windows.

    Returns ``(loss, parts)`` with the unweighted batch means ``{"regression", "alignment"}``
    (``loss = regression + align_weight * alignment``). Computed in at least float32.
    """
    dtype = jnp.promote_types(jnp.result_type(out), jnp.float32)
    out = jnp.asarray(out).astype(dtype)
    aligned, centre = jnp.asarray(aux["aligned"]).astype(dtype), jnp.asarray(aux["centre"]).astype(dtype)
    n, window = out.shape[0], aligned.shape[1] + 1
    mse = jnp.mean(((out - label) ** 2).reshape(n, -1), axis=-1)
    alignment = jnp.sum(((aligned - centre[:, None]) ** 2).reshape(n, -1), axis=-1) / (
        window * centre[0].size
    )
    parts = {"regression": jnp.mean(mse), "alignment": jnp.mean(alignment)}
    return parts["regression"] + align_weight * parts["alignment"], parts


SMALL = {"tdan": {"channels": 8, "blocks_before": 1, "blocks_after": 1, "deform_groups": 2}}
PARAMS_C3 = {"tdan": 584_833}
