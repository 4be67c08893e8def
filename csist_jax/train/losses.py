"""The training objectives, as the training route reaches them.

Every model owns its objective (:mod:`csist_jax.models.objectives`, called through the model's kind,
:mod:`csist_jax.models.kinds`); this module re-exports those functions under their historical names and
adds what only training needs: :func:`batch_loss` (any model on a batch, with the config's options),
:func:`loss_fn` (an HR-map network against HR labels) and :func:`data_misfit` (a learned sampling
operator ``A`` fitted to ``mean_i ||A s_i - z_i||^2``, ``experiments/refine_learned_operator.py``).

>>> loss, parts = batch_loss(module, variables, {"image": images, "targets": targets})
"""

from __future__ import annotations

import jax.numpy as jnp
from jaxtyping import Array, Float

from csist_jax.models import kinds
from csist_jax.models.objectives import (
    ALIGN_WEIGHT,
    DEREFNET_OBJECTIVES,
    N_FRAMES,
    SYM_WEIGHT,
    TOOLKIT_ALIGN_WEIGHT,
    TOOLKIT_SYM_WEIGHT,
    count_term,
    derefnet_loss,
    frame_multiplicity,
    localizer_loss,
    regression,
    symmetry,
    target_count,
    unfolding_loss,
)


def batch_loss(module, variables, batch: dict, options: dict | None = None) -> tuple[Float[Array, ""], dict]:
    """``(loss, parts)`` of any model on ``batch`` (``image``, ``targets`` ``[B, K, 3]`` and for a
    window model ``frame``): its kind runs it and its own objective scores it with ``options`` (the
    config fields of ``module.LOSS_OPTIONS``; missing ones take the objective's defaults)."""
    return kinds.of(module).loss(module, variables, batch, options)


def loss_fn(module, variables, images, labels, sym_weight=SYM_WEIGHT) -> tuple[Float[Array, ""], dict]:
    """An HR-map network's objective on ``images`` ``[n, 11, 11]`` (raw 0..255) against the HR
    ``labels`` ``[n, 11c, 11c]``: ``module.objective`` (SPEC sec. 7's loss, or the network's own
    published one), with ``sym_weight`` where the objective reads it."""
    maps, aux = module.apply(variables, images, return_aux=True)
    options = {"sym_weight": sym_weight} if "sym_weight" in module.LOSS_OPTIONS else {}
    return module.objective(maps, aux, labels, **options)


def data_misfit(predicted: Float[Array, "n m"], observed: Float[Array, "n m"]) -> Float[Array, ""]:
    """``mean_i ||predicted_i - observed_i||^2``: the squared error summed over each sample's last axis,
    averaged over samples (an operator's fit ``A s_i`` to the stored images ``z_i``)."""
    return jnp.mean(jnp.sum((predicted - observed) ** 2, axis=-1))


__all__ = [
    "ALIGN_WEIGHT",
    "DEREFNET_OBJECTIVES",
    "N_FRAMES",
    "SYM_WEIGHT",
    "TOOLKIT_ALIGN_WEIGHT",
    "TOOLKIT_SYM_WEIGHT",
    "batch_loss",
    "count_term",
    "data_misfit",
    "derefnet_loss",
    "frame_multiplicity",
    "localizer_loss",
    "loss_fn",
    "regression",
    "symmetry",
    "target_count",
    "unfolding_loss",
]
