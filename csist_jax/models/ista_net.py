r"""ISTA-Net (Zhang and Ghanem, CVPR 2018) on the CSIST sampling operator (SPEC sec. 7).

Stage ``k``:

    r = x - lam_k Phi^T (Phi x - z)                      (shared gradient step, lam_k init 0.5)
    f = F(r) = conv3(32->32)(relu(conv3(1->32)(r)))
    x_next = F~(soft(f, theta_k)),   F~ = conv3(32->1) o relu o conv3(32->32)   (theta_k init 0.01)
    sym_k = F~(f) - r                                    (symmetry constraint of the loss)

Convolutions without bias, Xavier-normal. 9 stages and 32 channels: 171,090 parameters at any ``c``.
"""

from __future__ import annotations

import flax.linen as nn

from csist_jax.models import layers
from csist_jax.solvers import gradient_step, soft_threshold


class ISTANetStage(nn.Module):
    """One ISTA-Net stage; returns ``(x_next, {"sym": F~(F(r)) - r})``."""

    channels: int = 32
    step_init: float = 0.5

    @nn.compact
    def __call__(self, x, z, operator):
        step = self.param("step", nn.initializers.constant(self.step_init), ())
        threshold = self.param("threshold", nn.initializers.constant(0.01), ())
        r = gradient_step(x, z, operator, step)[..., None]
        f = layers.conv3(self.channels, "forward2")(nn.relu(layers.conv3(self.channels, "forward1")(r)))
        backward1 = layers.conv3(self.channels, "backward1")
        backward2 = layers.conv3(1, "backward2")

        def f_tilde(u):
            return backward2(nn.relu(backward1(u)))

        x_next = f_tilde(soft_threshold(f, threshold))[..., 0]
        return x_next, {"sym": f_tilde(f) - r}


class ISTANet(layers.UnfoldingNetwork):
    """ISTA-Net: ``stages`` unrolled ISTA iterations with a learned transform and scalar threshold."""

    stages: int = 9
    channels: int = 32
    step_init: float = 0.5

    def make_stages(self, q, operator):
        return [ISTANetStage(self.channels, self.step_init, name=f"stage_{k}") for k in range(self.stages)]


__all__ = ["ISTANet", "ISTANetStage"]
