r"""DISTA-Net (ICCV 2025): ISTA unfolding with a dynamic per-sample transform and a dynamic threshold.

Stage ``k`` (``C = 64`` channels, SPEC sec. 7-8):

    r = x - lam_k Phi^T (Phi x - z)                              (shared gradient step, lam_k init 0.5)
    main = conv3(C->C)(relu(conv3(1->C)(r)))                      (static transform)
    K = W2 (W1 vec(x) + b1) + b2,  K in R^{3x3}                   (per-sample kernel from the stage input)
    dyn = sigmoid(K * r)                                          (3x3 cross-correlation, zero padding)
    x_f = (1 - share) main + share dyn                            (share = 0.3; dyn broadcast over C)
    theta = x_f LSK(x_f),   u = sign(x_f) relu(|x_f| - theta)     (dynamic threshold)
    x_next = F~(u),   F~ = conv3(C->1) o relu o conv3(C->C)
    sym_k = F~(x_f) - r

Unlike the published toolkit, the kernel ``K`` of each sample filters only that sample (its output never
depends on the rest of the batch) and gradients flow through ``K`` into ``W1, W2`` (the toolkit detaches
it and applies sample ``j``'s kernel as output channel ``j`` of a batch-wide convolution). See
``docs/models.md``.

6 stages (4 at ``c = 7``): 2,179,104 parameters at ``c = 3``; the kernel MLP has ``(11c)^2 * 256``
weights per stage, so the count grows with ``c``.
"""

from __future__ import annotations

import functools

import flax.linen as nn
import jax.numpy as jnp

from csist_jax.models import layers
from csist_jax.solvers import gradient_step


class DISTANetStage(nn.Module):
    """One DISTA-Net stage; returns ``(x_next, {"sym": F~(x_f) - r, "threshold": mean |theta|})``."""

    channels: int = 64
    dynamic_share: float = 0.3
    hidden: int = 256
    step_init: float = 0.5
    batch_exact: bool = False

    @nn.compact
    def __call__(self, x, z, operator):
        n, hr = x.shape[0], x.shape[-1]
        step = self.param("step", nn.initializers.constant(self.step_init), ())
        r = gradient_step(x, z, operator, step)
        main = layers.conv3(self.channels, "forward2")(
            nn.relu(layers.conv3(self.channels, "forward1")(r[..., None]))
        )
        dense = functools.partial(layers.Dense, exact=self.batch_exact)
        hidden = dense(self.hidden, hr * hr, name="kernel_in")(x.reshape(n, hr * hr))
        kernels = dense(9, self.hidden, name="kernel_out")(hidden).reshape(n, 3, 3)
        dyn = nn.sigmoid(layers.dynamic_conv3(r, kernels))
        x_f = (1.0 - self.dynamic_share) * main + self.dynamic_share * dyn[..., None]
        theta = layers.LSKThreshold(self.channels, name="threshold")(x_f)
        u = jnp.sign(x_f) * nn.relu(jnp.abs(x_f) - theta)
        backward1 = layers.conv3(self.channels, "backward1")
        backward2 = layers.conv3(1, "backward2")

        def f_tilde(v):
            return backward2(nn.relu(backward1(v)))

        x_next = f_tilde(u)[..., 0]
        aux = {"sym": f_tilde(x_f) - r[..., None], "threshold": jnp.mean(jnp.abs(theta))}
        return x_next, aux


class DISTANet(layers.UnfoldingNetwork):
    """DISTA-Net: ``stages`` unrolled stages with per-sample dynamic kernels and LSK thresholds."""

    stages: int = 6
    channels: int = 64
    dynamic_share: float = 0.3
    hidden: int = 256
    step_init: float = 0.5

    def make_stages(self, q, operator):
        return [
            DISTANetStage(
                self.channels,
                self.dynamic_share,
                self.hidden,
                self.step_init,
                self.batch_exact,
                name=f"stage_{k}",
            )
            for k in range(self.stages)
        ]


__all__ = ["DISTANet", "DISTANetStage"]
