r"""Every training objective of the project, written once.

Single-frame networks (SPEC sec. 7), on the raw 0..255 scale:

    L = mean((x_N - s)^2) + sym_weight * sum_k mean(sym_k^2)                       (sym_weight = 0.01)

with ``x_N`` the network's HR map, ``s`` the HR label (:func:`csist_jax.physics.hr_label`) and ``sym_k``
the symmetry residual of stage ``k`` (none for LISTA).

DeRefNet (SPEC sec. 7), on a window's centre frame:

    L = mean((x - s)^2) + sym_weight * sum_k mean(sym_k^2) + align_weight * mean |a_t - x_c|

with ``a_t`` the aligned neighbour maps and ``x_c`` the centre frame's unfolded map (both weights 0.01).

A learned sampling operator ``A`` (``experiments/refine_learned_operator.py``) is fitted to the data
misfit ``mean_i ||A s_i - z_i||^2`` (:func:`data_misfit`).

The terms are computed in at least float32: a network run in bfloat16 gets a float32 loss, and a float64
one (gradient checks) keeps float64. The functions on outputs (:func:`unfolding_loss`,
:func:`derefnet_loss`) compose with any user code; :func:`loss_fn` runs a single-frame network first.

>>> maps, aux = module.apply(variables, images, return_aux=True)   # maps [n, 11c, 11c]
>>> loss, parts = unfolding_loss(maps, aux, physics.hr_label(targets, c))
"""

from __future__ import annotations

from collections.abc import Sequence

import jax.numpy as jnp
from jaxtyping import Array, Float

#: weight of the symmetry term (SPEC sec. 7; both networks)
SYM_WEIGHT = 0.01
#: weight of DeRefNet's alignment term (SPEC sec. 7)
ALIGN_WEIGHT = 0.01


def _at_least_float32(x: Array) -> Array:
    x = jnp.asarray(x)
    return x.astype(jnp.promote_types(x.dtype, jnp.float32))


def regression(maps: Float[Array, "*b h w"], labels: Float[Array, "*b h w"]) -> Float[Array, ""]:
    """``mean((maps - labels)^2)`` over every element (the data term of every network's loss)."""
    return jnp.mean((_at_least_float32(maps) - labels) ** 2)


def symmetry(residuals: Sequence[Array]) -> Float[Array, ""]:
    """``sum_k mean(sym_k^2)`` over the stages' symmetry residuals (0 for none)."""
    return sum((jnp.mean(_at_least_float32(r) ** 2) for r in residuals), jnp.zeros((), jnp.float32))


def unfolding_loss(
    maps: Float[Array, "n hr hr"],
    aux: Sequence[dict],
    labels: Float[Array, "n hr hr"],
    *,
    sym_weight=SYM_WEIGHT,
) -> tuple[Float[Array, ""], dict]:
    """The single-frame loss ``mse + sym_weight * sym`` of a network's ``(maps, aux)`` (SPEC sec. 7).

    ``aux`` is the per-stage list of ``apply(..., return_aux=True)``. Returns ``(loss, parts)``,
    ``parts`` = ``{"mse", "sym"}`` plus each stage's threshold ``threshold_k`` where the stage reports one
    (monitors, not terms).
    """
    mse = regression(maps, labels)
    sym = symmetry([a["sym"] for a in aux if "sym" in a])
    parts = {"mse": mse, "sym": sym}
    for k, a in enumerate(aux):
        if "threshold" in a:
            parts[f"threshold_{k}"] = jnp.asarray(a["threshold"], jnp.float32)
    return mse + sym_weight * sym, parts


def loss_fn(module, variables, images, labels, sym_weight=SYM_WEIGHT) -> tuple[Float[Array, ""], dict]:
    """:func:`unfolding_loss` of ``module`` run on ``images`` ``[n, 11, 11]`` (raw 0..255) against the
    HR ``labels`` ``[n, 11c, 11c]``; the network runs in the dtype of ``variables`` and ``images``."""
    maps, aux = module.apply(variables, images, return_aux=True)
    return unfolding_loss(maps, aux, labels, sym_weight=sym_weight)


def derefnet_loss(
    out: Float[Array, "n hr hr"],
    aux: dict,
    label: Float[Array, "n hr hr"],
    *,
    sym_weight: float = SYM_WEIGHT,
    align_weight: float = ALIGN_WEIGHT,
) -> tuple[Float[Array, ""], dict]:
    """DeRefNet's loss ``mse(out, s) + sym_weight sum_k mean(sym_k^2) + align_weight mean |a_t - x_c|``.

    ``aux`` is ``DeRefNet.apply(..., return_aux=True)[1]``: ``"sym"`` (per-stage residuals),
    ``"aligned"`` ``[n, T-1, hr, hr]`` and ``"centre"`` ``[n, hr, hr]``. Returns ``(loss, parts)`` with
    parts ``{"regression", "symmetry", "alignment"}``.
    """
    mse = regression(out, label)
    sym = symmetry(aux["sym"])
    alignment = jnp.mean(
        jnp.abs(_at_least_float32(aux["aligned"]) - _at_least_float32(aux["centre"])[:, None])
    )
    total = mse + sym_weight * sym + align_weight * alignment
    return total, {"regression": mse, "symmetry": sym, "alignment": alignment}


def data_misfit(predicted: Float[Array, "n m"], observed: Float[Array, "n m"]) -> Float[Array, ""]:
    """``mean_i ||predicted_i - observed_i||^2``: the squared error summed over each sample's last axis,
    averaged over samples (an operator's fit ``A s_i`` to the stored images ``z_i``)."""
    return jnp.mean(jnp.sum((predicted - observed) ** 2, axis=-1))


__all__ = [
    "ALIGN_WEIGHT",
    "SYM_WEIGHT",
    "data_misfit",
    "derefnet_loss",
    "loss_fn",
    "regression",
    "symmetry",
    "unfolding_loss",
]
