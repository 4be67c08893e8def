r"""Learned sparse coding baselines of the CSIST toolkit: LIHT, LAMP and TiLISTA (the relatives of
:mod:`csist_jax.models.lista`).

All three start from ``x_0 = Q z`` like every unfolding network, run 16 untied layers (configs
``c_3/LIHT.py``, ``c_3/LAMP.py``, ``c_3/TiLISTA.py``: ``LayerNo=16``; LAMP ``lam=0.4``) on the HR map
flattened row-major (``N = (11c)^2`` cells, ``M = 121`` pixels), and train on the plain MSE (the toolkit's
loss for all three is ``mean((x_16 - s)^2)``; no symmetry term, ``aux`` holds empty dicts). Where the
toolkit multiplies by its matrix ``Phi`` we apply the physics operator; the operator and ``Q`` of the
call also set the initial weights that the toolkit builds from ``Phi`` and ``Qinit``.

- **LIHT** (learned iterative hard thresholding; Xin et al., NeurIPS 2016, the toolkit's port):
  ``x_{k+1} = H(W_k x_k + B_k z, theta_k)``, ``H(r, t) = r 1[|r| > t]`` per cell, ``W_k [N, N]`` init
  ``I``, ``B_k [N, M]`` init ``Q``, ``theta_k [N]`` init ``sqrt(lam)`` (``lam = 0.4``). As in the toolkit
  the threshold gets no gradient (the hard threshold's indicator has none) and stays at its initial
  value. 16 (N^2 + N M + N) = 21,100,464 parameters at ``c = 3`` (published 21.10M in both tables:
  equal).
- **LAMP** (learned AMP; Borgerding, Schniter and Rangan, IEEE TSP 2017): with ``v_0 = 0``,
  ``v_{k+1} = z - Phi x_k + (N / M) ||x_k||_0 / N v_k`` (Onsager correction; ``||.||_0`` per sample),
  ``r = x_k + B_k v_{k+1}``, ``x_{k+1} = soft(r, max(lam_k sqrt(||v_{k+1}||^2 / M), 0))``; ``B_k [N, M]``
  init ``Phi^T / ||Phi||_2^2``, ``lam_k [N]`` init 0.4. 16 (N M + N) = 2,125,728 parameters at
  ``c = 3`` (published 2.126M / 2.13M: equal).
- **TiLISTA** (tied LISTA with support selection; Liu et al., ICLR 2019 / Chen et al., NeurIPS 2018, as
  the toolkit writes it, with one matrix per layer): ``x_{k+1} = ss(x_k + alpha_k W_k (z - Phi x_k),
  theta_k, p_k)``, ``W_k [N, M]`` init ``Q``, ``alpha_k`` init 1, ``theta_k [N]`` init ``lam / (1.001
  ||Phi||_2^2)`` (``lam = 0.4``). The support selection ``ss(r, t, p)`` keeps unshrunk every cell with
  ``|r| > t`` whose ``|r|`` is above the sample's ``(100 - p)``-th percentile over its cells (linear
  interpolation, no gradient through the selection) and soft-thresholds the rest by ``t``;
  ``p_k = min(1.2 (k + 1), 13)`` percent. 16 (N M + N + 1) = 2,125,744 parameters at ``c = 3``
  (published 2.126M in the CSIST-100K table: equal; the SeqCSIST table's 2.22M matches no configuration
  of the toolkit's code, whose SeqCSIST TiLISTA (``detectors/TiLISTA_det.py``) has the same layers).

In the toolkit the layers of each model are built from one shared initial tensor but become separate
parameters once the model is moved to the GPU (PyTorch copies each parameter), so they are untied, as
here; the published counts count them separately.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from csist_jax.models import layers
from csist_jax.models.lista import LISTAStage
from csist_jax.solvers import soft_threshold


def _matrix(operator) -> jnp.ndarray:
    """``Phi`` as a dense float32 ``[M, N]`` matrix (for initialisers): row ``i`` is ``Phi^T e_i``."""
    m = operator.size * operator.size
    eye = jnp.eye(m, dtype=operator.dtype).reshape((m,) + operator.out_shape)
    return operator.adjoint(eye).reshape(m, -1).astype(jnp.float32)


def _norm_squared(matrix: jnp.ndarray) -> jnp.ndarray:
    """``||A||_2^2``: the largest eigenvalue of ``A A^T`` (``A`` has the few rows)."""
    return jnp.linalg.eigvalsh(matrix @ matrix.T)[-1]


def _batched(layer, exact: bool):
    """``layer`` (a function of batched arrays) on the whole batch, or with ``exact`` on one sample at a
    time (as a batch of one, :func:`csist_jax.models.layers.per_sample`: the ``batch_exact`` mode)."""
    if not exact:
        return layer

    def one(*arrays):
        return jax.tree.map(lambda a: a[0], layer(*(a[None] for a in arrays)))

    return layers.per_sample(one)


class _Family(layers.UnfoldingNetwork):
    """Common fields: ``stages`` untied layers (16) and ``lam`` (0.4)."""

    stages: int = 16
    lam: float = 0.4


# --------------------------------------------------------------------------------------------- LIHT


class LIHT(_Family):
    """LIHT: ``stages`` untied learned layers with a per-cell hard threshold (init ``sqrt(lam)``); each
    layer is LISTA's with ``hard=True`` (``W`` starts at ``I``)."""

    def make_stages(self, q, operator):
        theta, exact = float(self.lam) ** 0.5, self.batch_exact
        return [LISTAStage(q, theta, exact, hard=True, name=f"stage_{k}") for k in range(self.stages)]


# --------------------------------------------------------------------------------------------- LAMP


class LAMPStage(nn.Module):
    """One LAMP layer on the state ``(x, v)`` (estimate, corrected residual)."""

    lam: float = 0.4
    batch_exact: bool = False

    @nn.compact
    def __call__(self, state, z, operator):
        x, v = state
        hr = x.shape[-1]
        cells, pixels = hr * hr, z.shape[-1] * z.shape[-2]

        def init_B(key):
            A = _matrix(operator)
            return A.T / _norm_squared(A)

        B = self.param("B", init_B)
        lam = self.param("lam", nn.initializers.constant(self.lam), (cells,))

        def layer(x, v, z):
            m = x.shape[0]
            flat = x.reshape(m, cells)
            support = jnp.mean((jnp.abs(flat) > 0).astype(x.dtype), axis=-1)  # ||x||_0 / N per sample
            onsager = (support * (cells / pixels))[:, None, None]
            v = z - operator.forward(x) + onsager * v
            rows = v.reshape(m, pixels)
            rvar = jnp.sum(rows * rows, axis=-1, keepdims=True) / pixels
            r = flat + rows @ B.T.astype(x.dtype)
            theta = jnp.maximum(jnp.sqrt(rvar) * lam.astype(x.dtype), 0.0)
            return soft_threshold(r, theta).reshape(m, hr, hr), v

        return _batched(layer, self.batch_exact)(x, v, z), {}


class LAMP(_Family):
    """LAMP: ``stages`` learned AMP layers (per-layer ``B`` and per-cell threshold scale ``lam``)."""

    def make_stages(self, q, operator):
        return [LAMPStage(self.lam, self.batch_exact, name=f"stage_{k}") for k in range(self.stages)]

    def forward(self, z, q, operator):
        x0 = layers.linear_init(q, z, self.hr, self.batch_exact)
        (x, _), aux = layers.unroll(self.make_stages(q, operator), (x0, jnp.zeros_like(z)), z, operator)
        return x, aux


# ------------------------------------------------------------------------------------------ TiLISTA


def support_selection(r, theta, percent: float):
    """Shrink ``r`` ``[n, N]`` by ``theta`` except the cells with ``|r| > theta`` that lie above each
    sample's ``(100 - percent)``-th percentile of ``|r|`` (kept as they are; the selection is constant
    for the gradient)."""
    magnitude = jnp.abs(r)
    cut = jnp.quantile(magnitude, 1.0 - percent / 100.0, axis=-1, keepdims=True)
    keep = jax.lax.stop_gradient(((magnitude > theta) & (magnitude > cut)).astype(r.dtype))
    return keep * r + soft_threshold((1.0 - keep) * r, theta)


class TiLISTAStage(nn.Module):
    """One TiLISTA layer; ``q`` sets the initial ``W``, ``percent`` is the layer's support share."""

    q: jnp.ndarray
    lam: float
    percent: float
    batch_exact: bool = False

    @nn.compact
    def __call__(self, x, z, operator):
        hr = x.shape[-1]
        cells = hr * hr
        W = self.param("W", lambda key: jnp.array(self.q, jnp.float32, copy=True))

        def init_theta(key):
            theta = self.lam / (1.001 * _norm_squared(_matrix(operator)))
            return jnp.full((cells,), theta, jnp.float32)

        theta = self.param("threshold", init_theta)
        alpha = self.param("alpha", nn.initializers.ones, ())

        def layer(x, z):
            m = x.shape[0]
            residual = (z - operator.forward(x)).reshape(m, z.shape[-2] * z.shape[-1])
            r = x.reshape(m, cells) + alpha.astype(x.dtype) * (residual @ W.T.astype(x.dtype))
            return support_selection(r, theta.astype(r.dtype), self.percent).reshape(m, hr, hr)

        return _batched(layer, self.batch_exact)(x, z), {}


class TiLISTA(_Family):
    """TiLISTA: ``stages`` layers ``x + alpha W (z - Phi x)`` with support selection; the share kept
    grows by ``p`` percent per layer up to ``max_percent``."""

    p: float = 1.2
    max_percent: float = 13.0

    def make_stages(self, q, operator):
        return [
            TiLISTAStage(
                q,
                self.lam,
                min(max((k + 1) * self.p, 0.0), self.max_percent),
                self.batch_exact,
                name=f"stage_{k}",
            )
            for k in range(self.stages)
        ]


SMALL = {
    "liht": {"stages": 2},
    "lamp": {"stages": 2},
    "tilista": {"stages": 2},
}
PARAMS_C3 = {"liht": 21_100_464, "lamp": 2_125_728, "tilista": 2_125_744}

__all__ = ["LAMP", "LIHT", "LAMPStage", "TiLISTA", "TiLISTAStage", "support_selection"]
