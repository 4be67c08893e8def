r"""RPCANet (Wu, Xiao, Liu, Zhang and Zhang, WACV 2024: deep unfolding of robust PCA for infrared small
targets) as the CSIST toolkit trains it for SeqCSIST (GrokCSO ``detectors/RPCANet_det.py``, config
``c_3/RPCANet.py``: ``stage_num=6, slayers=6, llayers=3, mlayers=3, channel=32``).

The map is split into a background ``B`` and a sparse target part ``T``. From ``D_0 = Q z``, ``T_0 = 0``,
each of the ``K = 6`` stages runs

    B_k = (D - T) + L(D - T)                  L = conv3(C->1) o [relu o norm o conv3(C->C)] x llayers
                                                    o relu o norm o conv3(1->C)
    T_k = u - eps_k S(u),  u = T + D - B_k    S = conv3(C->1) o [relu o conv3(C->C)] x slayers
                                                    o relu o conv3(1->C)          (eps_k init 0.01)
    D_k = M(B_k + T_k)                        M like L with mlayers

and the network returns ``T_K`` (the toolkit's prediction). Convolutions with bias, Xavier-normal weights
and PyTorch's default biases (the toolkit re-initialises the weights only). The physics operator is not
used: the toolkit loads ``Phi`` but RPCANet only applies ``Qinit``.

Which ``D`` a stage decomposes: in the paper and its authors' code each stage takes the previous
stage's ``D_k`` (``propagate_d=True``, default). The toolkit's loop (``D_out, T = decos[i](D, T)``)
keeps ``D = D_0`` for every stage, so there ``D_k`` reaches only its loss term below and the merge
mappings ``M`` never act on ``T``; ``propagate_d=False`` reproduces that computation (then, with the
shared loss here, the ``M`` parameters get no gradient). We treat the toolkit's loop as a defect (the
renaming serves its loss, which compares ``D_K`` with ``D_0``) and default to the paper's recurrence.

BatchNorm: the toolkit's ``L`` and ``M`` have a ``BatchNorm2d`` after every convolution but the last. It
is replaced (``norm="instance"``, default) by a per-sample, per-channel normalisation over the map
(BatchNorm's training-mode computation on a batch of one: no running statistics, no dependence on the
batch) with the same learned scale and shift (init 1 and 0, eps 1e-5); ``norm="none"`` drops it.

Toolkit loss: ``0.9 mean((T_K - s)^2) + 0.1 * 0.9 mean((D_K - D_0)^2)``. Here the shared single-frame
loss, the MSE of ``T_K``; the reconstruction term of ``D_K`` is not reproduced (it is no symmetry
residual; ``aux`` holds empty dicts).

Parameters: 679,896 at the class defaults (any ``c``): per stage 28,609 (``L``) + 56,098 (``S`` and
``eps``) + 28,609 (``M``); published 0.68M (SeqCSIST table): equal, the normalisation's scales and shifts
standing where the toolkit's BatchNorm affine parameters are (3,072 of them; ``norm="none"``: 676,824).
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from csist_jax.models import layers


def _conv(features: int, in_features: int, name: str) -> nn.Conv:
    """3x3 'same' convolution: Xavier-normal weight, PyTorch's default bias."""
    return nn.Conv(
        features,
        (3, 3),
        padding="SAME",
        kernel_init=layers.xavier_normal,
        bias_init=layers.torch_default_bias(in_features * 9),
        name=name,
    )


class InstanceNorm(nn.Module):
    """Per-sample, per-channel normalisation over the spatial axes with a learned scale and shift."""

    channels: int
    eps: float = 1e-5

    @nn.compact
    def __call__(self, x):
        scale = self.param("scale", nn.initializers.ones, (self.channels,))
        shift = self.param("bias", nn.initializers.zeros, (self.channels,))
        mean = jnp.mean(x, axis=(1, 2), keepdims=True)
        var = jnp.mean(jnp.square(x - mean), axis=(1, 2), keepdims=True)
        y = (x - mean) * jnp.reciprocal(jnp.sqrt(var + self.eps))
        return y * scale.astype(x.dtype) + shift.astype(x.dtype)


class ConvChain(nn.Module):
    """``conv3(1->C)``, then ``hidden`` times ``conv3(C->C)``, each followed by [norm] and ReLU, then
    ``conv3(C->1)``: the toolkit's ``L``, ``S`` and ``M`` mappings (``norm`` only in ``L`` and ``M``)."""

    channels: int
    hidden: int
    norm: str = "none"

    @nn.compact
    def __call__(self, x):
        c = self.channels
        for i in range(self.hidden + 1):
            x = _conv(c, 1 if i == 0 else c, f"conv{i}")(x)
            if self.norm == "instance":
                x = InstanceNorm(c, name=f"norm{i}")(x)
            elif self.norm != "none":
                raise ValueError(f"norm must be 'instance' or 'none', got {self.norm!r}")
            x = nn.relu(x)
        return _conv(1, c, f"conv{self.hidden + 1}")(x)


class RPCAStage(nn.Module):
    """One decomposition stage on the state ``(D, T, D_0)`` (``[n, hr, hr, 1]`` each)."""

    channels: int = 32
    slayers: int = 6
    llayers: int = 3
    mlayers: int = 3
    norm: str = "instance"
    propagate_d: bool = True

    @nn.compact
    def __call__(self, state, z, operator):
        d, t, d0 = state
        d_in = d if self.propagate_d else d0
        x = d_in - t
        b = x + ConvChain(self.channels, self.llayers, self.norm, name="lowrank")(x)
        eps = self.param("epsilon", nn.initializers.constant(0.01), ())
        u = t + d_in - b
        t = u - eps.astype(u.dtype) * ConvChain(self.channels, self.slayers, "none", name="sparse")(u)
        d = ConvChain(self.channels, self.mlayers, self.norm, name="merge")(b + t)
        return (d, t, d0), {}


class RPCANet(layers.UnfoldingNetwork):
    """RPCANet: ``stages`` low-rank / sparse / merge stages from ``D_0 = Q z``; returns ``T``.

    ``channels`` (32), ``slayers`` / ``llayers`` / ``mlayers`` (hidden convolutions of the sparse,
    low-rank and merge mappings: 6, 3, 3), ``norm`` (``"instance"`` or ``"none"``) and ``propagate_d``
    (the paper's ``True`` or the toolkit's ``False``), see the module doc.
    """

    stages: int = 6
    channels: int = 32
    slayers: int = 6
    llayers: int = 3
    mlayers: int = 3
    norm: str = "instance"
    propagate_d: bool = True

    def make_stages(self, q, operator):
        return [
            RPCAStage(
                self.channels,
                self.slayers,
                self.llayers,
                self.mlayers,
                self.norm,
                self.propagate_d,
                name=f"stage_{k}",
            )
            for k in range(self.stages)
        ]

    def forward(self, z, q, operator):
        d0 = layers.linear_init(q, z, self.hr, self.batch_exact)[..., None]
        state = (d0, jnp.zeros_like(d0), d0)
        (_, t, _), aux = layers.unroll(self.make_stages(q, operator), state, z, operator)
        return t[..., 0], aux


SMALL = {"rpcanet": {"stages": 2, "channels": 8, "slayers": 1, "llayers": 1, "mlayers": 1}}
PARAMS_C3 = {"rpcanet": 679_896}
