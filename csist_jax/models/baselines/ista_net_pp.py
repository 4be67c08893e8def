r"""ISTA-Net++ (You, Li, Zhang and Zhang, ICME 2021) as the CSIST toolkit trains it for SeqCSIST
(GrokCSO ``backbones/ISTA_Net_pp_bb.py``, ``detectors/ISTA_Net_pp_det.py``, config ``c_3/ISTA_Net_pp.py``:
``LayerNo=20``).

A condition network maps the constant ``sigma / 100`` (the PSF width, the toolkit's ``get_cond(0.5, 0,
'org_sigma')``) to the per-stage step sizes and noise levels:
``(lam_1..K, nu_1..K) = a(L3(a(L2(a(L1(sigma / 100))))))``, ``L1: 1 -> 32``, ``L2: 32 -> 32``,
``L3: 32 -> 2K`` (linear with bias), ``a`` = LeakyReLU(0.01). Stage ``k``:

    r = x - lam_k Phi^T (Phi x - z)                                 (gradient step, physics operator)
    h = conv3(2->32)([r, nu_k])                                      (nu_k as a constant second channel)
    h = h + conv3(32->32)(leaky_0.1(conv3(32->32)(h)))  twice        (residual blocks)
    x_next = r + conv3(32->1)(h)

Convolutions with bias; PyTorch's default initialisation throughout (the toolkit sets none).
The toolkit starts from ``x_0 = Phi^T z`` (not ``Q z``); ``start="adjoint"`` (default) reproduces that,
``start="q"`` starts from ``Q z`` like the other unfolding networks. Toolkit loss: ``mean((x_K - s)^2)``
only (no symmetry term; ``aux`` holds empty dicts).

Parameters: 20 x 37,889 (stages) + 2,440 (condition network) = 760,220 at ``c = 3`` (any ``c``);
published 0.76M (SeqCSIST table): equal.
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from csist_jax.models import layers
from csist_jax.models.baselines import blocks
from csist_jax.solvers import gradient_step


class ISTANetPPStage(nn.Module):
    """One ISTA-Net++ stage; the step ``lam`` and noise level ``nu`` come from the condition network."""

    channels: int = 32
    res_blocks: int = 2

    @nn.compact
    def __call__(self, x, z, operator, lam, nu):
        r = gradient_step(x, z, operator, lam.astype(x.dtype))
        level = jnp.broadcast_to(nu.astype(x.dtype), r.shape)
        h = blocks.conv(self.channels, 2, 3, name="head")(jnp.stack([r, level], axis=-1))
        for b in range(self.res_blocks):
            t = blocks.conv(self.channels, self.channels, 3, name=f"res{b}_conv1")(h)
            t = nn.leaky_relu(t, 0.1)
            h = h + blocks.conv(self.channels, self.channels, 3, name=f"res{b}_conv2")(t)
        return r + blocks.conv(1, self.channels, 3, name="tail")(h)[..., 0], {}


class ISTANetPP(layers.UnfoldingNetwork):
    """ISTA-Net++: ``stages`` residual stages with steps and noise levels from a condition network.

    ``channels`` (32), ``res_blocks`` per stage (2), ``cond_hidden`` (32, the condition network's width),
    ``start``: ``"adjoint"`` (``x_0 = Phi^T z``, the toolkit's) or ``"q"`` (``x_0 = Q z``).
    """

    stages: int = 20
    channels: int = 32
    res_blocks: int = 2
    cond_hidden: int = 32
    STARTS = ("adjoint", "q")
    start: str = "adjoint"

    def make_stages(self, q, operator):
        k = self.stages
        cond = jnp.full((1, 1), self.sigma / 100.0, jnp.float32)
        h = nn.leaky_relu(layers.Dense(self.cond_hidden, 1, name="cond_fc1")(cond), 0.01)
        h = nn.leaky_relu(layers.Dense(self.cond_hidden, self.cond_hidden, name="cond_fc2")(h), 0.01)
        out = nn.leaky_relu(layers.Dense(2 * k, self.cond_hidden, name="cond_fc3")(h), 0.01)[0]
        steps, levels = out[:k], out[k:]
        stage_modules = [ISTANetPPStage(self.channels, self.res_blocks, name=f"stage_{i}") for i in range(k)]

        def bind(i):
            return lambda x, z, operator: stage_modules[i](x, z, operator, steps[i], levels[i])

        return [bind(i) for i in range(k)]


SMALL = {"ista_net_pp": {"stages": 2, "channels": 8, "res_blocks": 1, "cond_hidden": 8}}
PARAMS_C3 = {"ista_net_pp": 760_220}
