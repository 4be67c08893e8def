"""DBPN, the deep back-projection network of Haris, Shakhnarovich and Ukita, "Deep Back-Projection
Networks for Super-Resolution" (CVPR 2018), as the GrokCSO toolkit trains it for SeqCSIST
(``configs/c_3/DBPN.py``, ``grokcso/models/detectors/DBPN_det.py`` building
``grokcso/models/backbones/DBPN_bb.py`` with its defaults: 32 features, ``bp_stages`` = 7, PReLU, no
normalisation: the paper's plain back-projection chain, without D-DBPN's dense concatenations).

On the 11 x 11 frame (raw 0..255, no normalisation): 3x3 conv 1 -> 128 + PReLU, 1x1 conv 128 -> 32 +
PReLU; then ``bp_stages - 1`` pairs of an up-projection and a down-projection unit and a last
up-projection unit; a 1x1 conv 32 -> 1 on the ``11c x 11c`` features gives the map (no interpolated
skip). Up-projection: ``H0 = up(L)``, ``L0 = down(H0)``, ``H1 = up(L0 - L)``, out ``H0 + H1``;
down-projection: ``L0 = down(H)``, ``H0 = up(L0)``, ``L1 = down(H0 - H)``, out ``L0 + L1``; ``up`` a
transposed convolution with stride ``c``, ``down`` a convolution with stride ``c``, each followed by a
PReLU (one slope, initialised at 0.2 as the toolkit's ``activation()``).

The projection kernels depend on the ratio: the toolkit (and the paper) use kernel 6 / stride 2 /
padding 2 at c = 2, 7 / 3 / 2 at c = 3 and 8 / 4 / 2 at c = 4, i.e. kernel ``c + 4``, stride ``c``,
padding 2, and it rejects other ratios. That rule is taken for every ``c`` here (:func:`geometry`):
``(11 - 1) c - 2 * 2 + (c + 4) = 11c`` up, ``(11c + 4 - (c + 4)) // c + 1 = 11`` down, so c = 5 and 7
work with kernels 9 and 11 (the parameter count then grows with ``c``).

Transposed convolutions follow PyTorch's ``nn.ConvTranspose2d`` exactly (:func:`deconv`: flax
``ConvTranspose`` with ``transpose_kernel``, padding ``k - 1 - p`` on the dilated input) including its
initialisation, which takes the fan-in from the OUTPUT channels (``weight.size(1) k^2``).

Parameters at c = 3: 1,963,594 (head 5,410; 13 projection units of three 7x7 (transposed) convs 32 ->
32 with their PReLUs, 150,627 each; output 33), exactly PyTorch's ``sum(p.numel() for p in
DBPN().parameters())`` on the toolkit's model (no frozen tensors); published 1.96M (SeqCSIST Table 7).
The toolkit's detector trains on frames 2..17 of each 20-frame trajectory batch with the plain MSE; the
network is single-frame, trained here with the shared single-frame loss.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from csist_jax.models.baselines import blocks
from csist_jax.models.layers import SuperResolutionNetwork

#: PReLU slope at initialisation in the toolkit's ``activation("prelu")`` (backbones/blocks.py)
PRELU_INIT = 0.2


def geometry(c: int) -> tuple[int, int, int]:
    """``(kernel, stride, padding)`` of the projection (de)convolutions for ratio ``c``: ``(c + 4, c,
    2)``, the toolkit's values at c = 2, 3, 4 extended to every ``c`` (``11 -> 11c -> 11`` exactly)."""
    return c + 4, c, 2


def _uniform(bound: float):
    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


def deconv(features: int, size: int, stride: int, padding: int, name: str | None = None) -> nn.ConvTranspose:
    """PyTorch's ``nn.ConvTranspose2d(in, features, size, stride, padding)``: output ``(i - 1) stride -
    2 padding + size``, kernel and bias drawn from ``U(+-1/sqrt(features size^2))`` (PyTorch's fan-in of
    a transposed convolution counts the output channels)."""
    pad = size - 1 - padding
    init = _uniform(1.0 / np.sqrt(features * size * size))
    return nn.ConvTranspose(
        features,
        (size, size),
        strides=(stride, stride),
        padding=((pad, pad), (pad, pad)),
        transpose_kernel=True,
        kernel_init=init,
        bias_init=init,
        name=name,
    )


def down_conv(features: int, in_features: int, size: int, stride: int, padding: int, name=None) -> nn.Conv:
    """The strided projection convolution (PyTorch ``nn.Conv2d(in, features, size, stride, padding)``)."""
    pad = ((padding, padding), (padding, padding))
    return blocks.conv(features, in_features, size, stride=stride, padding=pad, name=name)


class Projection(nn.Module):
    """DBPN's projection unit: ``up=True`` LR ``[n, h, w, f]`` -> HR ``[n, hc, wc, f]`` (up-projection),
    ``up=False`` HR -> LR (down-projection). With ``P`` the unit's direction and ``R`` the reverse (each a
    strided (de)convolution and PReLU): ``a = P(x)``, ``out = a + P(R(a) - x)``."""

    features: int
    c: int
    up: bool = True

    @nn.compact
    def __call__(self, x):
        k, s, p = geometry(self.c)
        f = self.features

        def project(kind, y, name):
            conv = deconv(f, k, s, p, name=name) if kind == "up" else down_conv(f, f, k, s, p, name=name)
            return blocks.PReLU(PRELU_INIT, name=f"{name}_act")(conv(y))

        there, back = ("up", "down") if self.up else ("down", "up")
        a = project(there, x, f"{there}0")
        return a + project(there, project(back, a, back) - x, f"{there}1")


class DBPN(SuperResolutionNetwork):
    """``num_features`` (toolkit 32) channels in the projection units, ``bp_stages`` (7) up-projections
    with ``bp_stages - 1`` down-projections between them, ``extract_features`` (128) channels of the
    first 3x3 conv."""

    num_features: int = 32
    bp_stages: int = 7
    extract_features: int = 128

    def forward(self, z):
        f, e = self.num_features, self.extract_features
        x = blocks.conv(e, 1, 3, name="extract_1")(z[..., None])
        x = blocks.PReLU(PRELU_INIT, name="extract_1_act")(x)
        x = blocks.PReLU(PRELU_INIT, name="extract_2_act")(blocks.conv(f, e, 1, name="extract_2")(x))
        for i in range(self.bp_stages - 1):
            x = Projection(f, self.c, up=True, name=f"up_{i}")(x)
            x = Projection(f, self.c, up=False, name=f"down_{i}")(x)
        x = Projection(f, self.c, up=True, name=f"up_{self.bp_stages - 1}")(x)
        x = blocks.conv(1, f, 1, name="conv_hr")(x)
        return blocks.to_map(x), []


SMALL = {"dbpn": {"num_features": 8, "bp_stages": 2, "extract_features": 16}}
PARAMS_C3 = {"dbpn": 1_963_594}
