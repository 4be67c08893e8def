"""SRFBN, the feedback network of Li, Yang, Liu, Yang, Jeon and Wu, "Feedback Network for Image
Super-Resolution" (CVPR 2019), as the GrokCSO toolkit trains it for CSIST-100K (``configs/c_3/srfbn.py``,
``grokcso/models/editor/srfbn.py`` with its class defaults: 32 features, 3 projection groups, one time
step, PReLU, no normalisation).

On the 11 x 11 frame (raw 0..255): the toolkit's fixed grey mean shift first (``z - 127.5``); LR
features: 3x3 conv 1 -> 4F + PReLU, 1x1 conv 4F -> F + PReLU; the feedback block, per time step
``t``: 1x1 conv 2F -> F + PReLU on ``[features, hidden]`` (the hidden state starts as the features
themselves), then ``num_groups`` up/down projection groups with dense connections (group ``g`` up-samples
the 1x1-fused concatenation of all earlier LR outputs, down-samples the 1x1-fused concatenation of all
earlier HR outputs), a 1x1 conv G F -> F + PReLU on the groups' LR outputs giving the new hidden state;
reconstruction: transposed conv F -> F (stride ``c``) + PReLU, 3x3 conv F -> 1, plus the bilinear
up-sampling of the shifted frame, plus the toolkit's output shift. Every conv is followed by a one-slope
PReLU initialised at 0.2.

Time steps and the loss. The toolkit's SRFBN runs the feedback block ONCE (its forward has no loop over
``num_steps``, whose default is 1) and trains on the mean squared error of that single output; the
paper's per-step L1 losses are not used. ``num_steps`` here runs the block ``num_steps`` times
(the hidden state fed back) and returns the LAST step's map; at the default 1 this is the toolkit's
network. No intermediate outputs are returned (``aux`` is empty): the training loss uses the final map
only, as the toolkit's does.

Mean shifts. The toolkit's ``sub_mean = MeanShiftGray(255)`` subtracts 127.5; its ``add_mean =
MeanShiftGray(255, 1)`` passes 1 as the grey MEAN with the default sign -1, so it subtracts 255 from
the output (the original SRFBN adds the mean back). Both are frozen 1x1 convs; they are reproduced as
the constant shifts ``input_shift = 127.5`` and ``output_shift = -255`` (fields; a constant offset that
the learned output bias can absorb).

Projection kernels: the toolkit uses kernel 7 / stride 3 / padding 2 at c = 3 and 8 / 4 / 2 at c = 4;
its c = 5 and 7 branches (kernel 6, stride 2) up-sample by 2 only, so its model cannot run there. Here
kernel ``c + 4``, stride ``c``, padding 2 for every ``c`` (:func:`dbpn.geometry`: 11 -> 11c -> 11
exactly), identical at c = 3 and 4.

Parameters at c = 3: 372,720 trainable; PyTorch's ``sum(p.numel() for p in SRFBN().parameters())`` on the
toolkit's model gives 372,724, the 4 extra being the frozen weights and biases of the two mean-shift
convs (published 0.373M, DISTA-Net Table 1, so the published count includes them).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from csist_jax.models.baselines import blocks
from csist_jax.models.baselines.dbpn import PRELU_INIT, deconv, down_conv, geometry
from csist_jax.models.layers import SuperResolutionNetwork


def _conv_act(features: int, in_features: int, size: int, name: str):
    """A ``size`` x ``size`` 'same' conv followed by a one-slope PReLU (the toolkit's ConvBlock)."""

    conv = blocks.conv(features, in_features, size, name=name)
    act = blocks.PReLU(PRELU_INIT, name=f"{name}_act")
    return lambda x: act(conv(x))


class FeedbackBlock(nn.Module):
    """SRFBN's feedback block: ``(features, hidden)`` ``[n, h, w, F]`` each -> new hidden ``[n, h, w,
    F]`` through ``num_groups`` densely connected up/down projection groups at ratio ``c``."""

    features: int
    num_groups: int
    c: int

    @nn.compact
    def __call__(self, x, hidden):
        f, g = self.features, self.num_groups
        k, s, p = geometry(self.c)
        x = _conv_act(f, 2 * f, 1, "compress_in")(jnp.concatenate([x, hidden], axis=-1))
        lr, hr = [x], []
        for i in range(g):
            y = jnp.concatenate(lr, axis=-1)
            if i > 0:
                y = _conv_act(f, (i + 1) * f, 1, f"uptran_{i - 1}")(y)
            y = blocks.PReLU(PRELU_INIT, name=f"up_{i}_act")(deconv(f, k, s, p, name=f"up_{i}")(y))
            hr.append(y)
            y = jnp.concatenate(hr, axis=-1)
            if i > 0:
                y = _conv_act(f, (i + 1) * f, 1, f"downtran_{i - 1}")(y)
            y = blocks.PReLU(PRELU_INIT, name=f"down_{i}_act")(down_conv(f, f, k, s, p, name=f"down_{i}")(y))
            lr.append(y)
        return _conv_act(f, g * f, 1, "compress_out")(jnp.concatenate(lr[1:], axis=-1))


class SRFBN(SuperResolutionNetwork):
    """``num_features`` F (toolkit 32), ``num_groups`` (3) projection groups, ``num_steps`` (1) feedback
    iterations (the last one's map is returned), ``input_shift`` / ``output_shift``: the toolkit's
    frozen grey mean shifts (subtract 127.5 before, add -255 after)."""

    num_features: int = 32
    num_groups: int = 3
    num_steps: int = 1
    input_shift: float = 127.5
    output_shift: float = -255.0

    def forward(self, z):
        f = self.num_features
        k, s, p = geometry(self.c)
        x = z[..., None] - self.input_shift
        # bilinear up-sampling, half-pixel centres: PyTorch's interpolate(align_corners=False)
        n, h, w, _ = x.shape
        inter = jax.image.resize(x, (n, h * self.c, w * self.c, 1), method="bilinear")
        x = _conv_act(4 * f, 1, 3, "conv_in")(x)
        x = _conv_act(f, 4 * f, 1, "feat_in")(x)
        block = FeedbackBlock(f, self.num_groups, self.c, name="block")
        out_deconv = deconv(f, k, s, p, name="out")
        out_act = blocks.PReLU(PRELU_INIT, name="out_act")
        conv_out = blocks.conv(1, f, 3, name="conv_out")
        hidden, y = x, None
        for _ in range(self.num_steps):
            hidden = block(x, hidden)
            y = inter + conv_out(out_act(out_deconv(hidden))) + self.output_shift
        return blocks.to_map(y), []


SMALL = {"srfbn": {"num_features": 8, "num_groups": 2}}
PARAMS_C3 = {"srfbn": 372_720}
