r"""ISTA-Net+ (Zhang and Ghanem, CVPR 2018) on the CSIST sampling operator (SPEC sec. 7).

Stage ``k``, on ``C = 32`` feature channels:

    r = x - lam_k Phi^T (Phi x - z)                       (shared gradient step, lam_k init 0.5)
    d = D(r) = conv3(1->C)(r),    f = F(d) = conv3(C->C)(relu(conv3(C->C)(d)))
    x_next = r + G(F~(soft(f, theta_k))),   F~ = conv3(C->C) o relu o conv3(C->C),  G = conv3(C->1)
    sym_k = F~(f) - d                                     (symmetry constraint on the features)

Convolutions without bias, Xavier-normal. 9 stages: 336,978 parameters at any ``c``.
"""

from __future__ import annotations

import flax.linen as nn

from csist_jax.models import layers
from csist_jax.solvers import gradient_step, soft_threshold


class ISTANetPlusStage(nn.Module):
    """One ISTA-Net+ stage; returns ``(x_next, {"sym": F~(F(D r)) - D r})``."""

    channels: int = 32
    step_init: float = 0.5

    @nn.compact
    def __call__(self, x, z, operator):
        step = self.param("step", nn.initializers.constant(self.step_init), ())
        threshold = self.param("threshold", nn.initializers.constant(0.01), ())
        r = gradient_step(x, z, operator, step)
        d = layers.conv3(self.channels, "D")(r[..., None])
        f = layers.conv3(self.channels, "forward2")(nn.relu(layers.conv3(self.channels, "forward1")(d)))
        backward1 = layers.conv3(self.channels, "backward1")
        backward2 = layers.conv3(self.channels, "backward2")

        def f_tilde(u):
            return backward2(nn.relu(backward1(u)))

        x_next = r + layers.conv3(1, "G")(f_tilde(soft_threshold(f, threshold)))[..., 0]
        return x_next, {"sym": f_tilde(f) - d}


class ISTANetPlus(layers.UnfoldingNetwork):
    """ISTA-Net+: ISTA-Net with a residual update and a feature-space symmetry constraint."""

    stages: int = 9
    channels: int = 32
    step_init: float = 0.5

    def make_stages(self, q, operator):
        return [
            ISTANetPlusStage(self.channels, self.step_init, name=f"stage_{k}") for k in range(self.stages)
        ]


__all__ = ["ISTANetPlus", "ISTANetPlusStage"]
