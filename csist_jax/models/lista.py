r"""LISTA (Gregor and LeCun, 2010) as configured in the CSIST toolkit: untied layers, per-cell thresholds.

Stage ``k`` replaces the gradient step by two learned linear maps and applies a soft threshold per HR
cell,

    x_next = soft(W_k x + B_k z, max(theta_k, 0)),      W_k in R^{hr^2 x hr^2}, B_k in R^{hr^2 x m^2},

initialised at ``W_k = I - Q Phi``, ``B_k = Q`` (so the first pass is the step
``x - Q (Phi x - z)``, the shared gradient step with ``Q`` in place of ``lam Phi^T``) and
``theta_k = lam / (1.001 ||Phi||_2^2)`` with ``lam = 0.4``. The start is ``x_0 = Q z`` like every network.
The operator enters only through that initialisation (``W_k`` and ``B_k`` replace the gradient step), so
an ``operator`` given to ``apply`` sets ``W_k`` at ``init`` and is unused afterwards; ``q`` still sets
``x_0``. No symmetry term. 16 stages: 16 (1089^2 + 1089 * 121 + 1089) = 21,100,464 parameters at ``c = 3``.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from csist_jax import physics
from csist_jax.models import layers
from csist_jax.solvers import soft_threshold


class LISTAStage(nn.Module):
    """One LISTA layer; ``q`` (the network's ``Q``) only sets the initial ``W`` and ``B``.

    ``hard=True`` gives LIHT's layer (:mod:`csist_jax.models.baselines.lista_family`): ``W`` starts at
    ``I`` and the per-cell threshold is hard, ``r 1[|r| > theta]``.
    """

    q: jnp.ndarray
    theta: float
    batch_exact: bool = False
    hard: bool = False

    @nn.compact
    def __call__(self, x, z, operator):
        n, hr = x.shape[0], x.shape[-1]
        cells = hr * hr

        def init_W(key):
            eye = jnp.eye(cells, dtype=jnp.float32)
            return eye if self.hard else eye - self.q @ operator.matrix().astype(jnp.float32)

        W = self.param("W", init_W)
        B = self.param("B", lambda key: jnp.array(self.q, jnp.float32, copy=True))
        theta = self.param("threshold", nn.initializers.constant(self.theta), (cells,))
        step = layers.rows(lambda v, y: v @ W.T.astype(v.dtype) + y @ B.T.astype(v.dtype), self.batch_exact)
        r = step(x.reshape(n, cells), z.reshape(n, z.shape[-2] * z.shape[-1]))
        if self.hard:
            x_next = jnp.where(jnp.abs(r) > theta.astype(r.dtype), r, 0.0)
        else:
            x_next = soft_threshold(r, jnp.maximum(theta, 0.0))
        return x_next.reshape(n, hr, hr), {}


class LISTA(layers.UnfoldingNetwork):
    """LISTA: ``stages`` untied learned layers (16 in the toolkit's CSIST-100K runs)."""

    stages: int = 16
    lam: float = 0.4

    def make_stages(self, q, operator):
        with jax.ensure_compile_time_eval():  # a constant of the architecture, also under jit
            G = np.asarray(physics.separable_factor(self.c, self.size, self.sigma), np.float64)
        # ||Phi||_2^2 = ||kron(G, G)||_2^2 = ||G||_2^4
        theta = self.lam / (1.001 * np.linalg.norm(G, 2) ** 4)
        return [LISTAStage(q, theta, self.batch_exact, name=f"stage_{k}") for k in range(self.stages)]


__all__ = ["LISTA", "LISTAStage"]
