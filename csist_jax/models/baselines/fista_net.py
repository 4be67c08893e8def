r"""FISTA-Net (Xiang, Dong and Yang, IEEE Trans. Computational Imaging, 2021) as the CSIST toolkit trains
it (GrokCSO ``editor/fista.py`` for CSIST-100K, ``backbones/fistanet_bb.py`` + ``detectors/fistanet_det.py``
for SeqCSIST; both configs ``c_3/fista.py`` and ``c_3/fistanet.py``: 7 layers).

One block (a single set of weights, shared by all ``K = 7`` layers) and six scalars
``w_theta, b_theta, w_mu, b_mu, w_rho, b_rho`` (init -0.5, -2, -0.2, 0.1, 0.5, 0). With
``sp = softplus``, from ``x_0 = y_0 = Q z``, layer ``k = 0 .. K-1``:

    r   = y_k - sp(w_mu k + b_mu) Phi^T (Phi y_k - z)            (gradient step with the physics operator)
    d   = D(r)                                                    (3x3 conv 1 -> 32)
    f   = F(d),   F = conv3(32->32) o relu o conv3(32->32)
    u   = sign(f) relu(|f| - sp(w_theta k + b_theta))              (soft threshold)
    x_{k+1} = relu(r + G(F~(u))),  F~ like F, G = conv3(32->1)    (non-negative output)
    sym_k = F~(f) - d
    y_{k+1} = x_{k+1} + rho_k (x_{k+1} - x_k),
    rho_k = (sp(w_rho k + b_rho) - sp(b_rho)) / sp(w_rho k + b_rho)  (momentum)

All convolutions have biases; weights Xavier-normal, biases zero (the toolkit's initialisation).

Toolkit loss: ``mean((x_K - s)^2) + 0.1 mean|x_K - s| + 0.01 sum_k mean(sym_k^2) + 0.001 sum_k
mean|u_k|``. Here the shared single-frame loss (MSE + 0.01 sum of the ``"sym"`` terms, which each layer
returns); the L1 data term and the sparsity term of ``u`` are not reproduced.

Parameters: 37,607 at the class defaults (any ``c``). The published 0.074M / 74.60K is PyTorch's
``parameters()`` count of the toolkit's model, 74,599: its block declares four 3x3 32 -> 32 convolutions
per transform (``conv1..conv4_forward``, ``conv1..conv4_backward``) but its forward pass uses only the
first and the last of each; the two unused ones per side (36,992 parameters) never train. ``depth``
counts the convolutions computed per transform (2, the toolkit's computation); ``depth=4`` is the
four-layer transform of the FISTA-Net paper and has exactly the toolkit's 74,599 parameters.
"""

from __future__ import annotations

import flax.linen as nn

from csist_jax.models import layers
from csist_jax.solvers import gradient_step, soft_threshold


def _conv(features: int, name: str) -> nn.Conv:
    """3x3 'same' convolution with bias: Xavier-normal weights, zero bias (the toolkit's init)."""
    return nn.Conv(
        features,
        (3, 3),
        padding="SAME",
        kernel_init=layers.xavier_normal,
        bias_init=nn.initializers.zeros,
        name=name,
    )


class FISTABlock(nn.Module):
    """The block every layer shares: ``(r, threshold) -> (x_next, sym, u)`` on ``[n, hr, hr]`` maps."""

    features: int = 32
    depth: int = 2

    def _transform(self, prefix: str):
        convs = [_conv(self.features, f"{prefix}{i}") for i in range(self.depth)]

        def apply(v):
            for i, conv in enumerate(convs):
                v = conv(v)
                if i < len(convs) - 1:
                    v = nn.relu(v)
            return v

        return apply

    @nn.compact
    def __call__(self, r, threshold):
        forward = self._transform("forward")
        backward = self._transform("backward")
        d = _conv(self.features, "conv_D")(r[..., None])
        f = forward(d)
        u = soft_threshold(f, threshold)
        g = _conv(1, "conv_G")(backward(u))
        x_next = nn.relu(r + g[..., 0])
        return x_next, backward(f) - d, u


class FISTANet(layers.UnfoldingNetwork):
    """FISTA-Net: ``stages`` layers of one shared block, linearly scheduled step/threshold/momentum.

    ``features``: transform width (32); ``depth``: convolutions per transform (2, see the module doc).
    """

    stages: int = 7
    features: int = 32
    depth: int = 2

    def make_stages(self, q, operator):
        block = FISTABlock(self.features, self.depth, name="block")
        w_theta = self.param("w_theta", nn.initializers.constant(-0.5), ())
        b_theta = self.param("b_theta", nn.initializers.constant(-2.0), ())
        w_mu = self.param("w_mu", nn.initializers.constant(-0.2), ())
        b_mu = self.param("b_mu", nn.initializers.constant(0.1), ())
        w_rho = self.param("w_rho", nn.initializers.constant(0.5), ())
        b_rho = self.param("b_rho", nn.initializers.constant(0.0), ())

        def make(k):
            def stage(state, z, operator):
                y, x_old = state
                step = nn.softplus(w_mu * k + b_mu)
                threshold = nn.softplus(w_theta * k + b_theta)
                r = gradient_step(y, z, operator, step.astype(y.dtype))
                x_new, sym, _ = block(r, threshold.astype(y.dtype))
                sp = nn.softplus(w_rho * k + b_rho)
                rho = ((sp - nn.softplus(b_rho)) / sp).astype(y.dtype)
                return (x_new + rho * (x_new - x_old), x_new), {"sym": sym}

            return stage

        return [make(k) for k in range(self.stages)]

    def forward(self, z, q, operator):
        x0 = layers.linear_init(q, z, self.hr, self.batch_exact)
        (_, x), aux = layers.unroll(self.make_stages(q, operator), (x0, x0), z, operator)
        return x, aux


SMALL = {"fista_net": {"stages": 2, "features": 8}}
PARAMS_C3 = {"fista_net": 37_607}
