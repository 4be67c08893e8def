"""Parameter counts and multiply-accumulates of any network, from XLA's own cost analysis.

``complexity(module)`` counts the trained parameters (the ``"params"`` collection) and the
multiply-accumulates of one forward pass per image: XLA's ``flops`` of the lowered (unoptimised)
inference program, divided by two (one multiply and one add per MAC) and by the batch. The published
tables print MACs under the name FLOPs (SPEC sec. 10.1: DISTA-Net 35.10G per batch of 64 = 546M per
image); ``complexity`` reports per image, and :func:`published_batch` scales to a table's batch.
Element-wise work (activations, soft thresholds, the gradient step's adds) counts too, so small models
land slightly above a count of convolutions and matrix products alone.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def complexity(module, variables=None, *, batch: int = 8, window: int | None = None) -> dict:
    """``{"params": int, "macs": float}``: trained parameters and MACs per image of ``module``'s forward
    pass (its inference program on a batch of ``batch`` zero inputs; ``window`` frames per window for a
    multi-frame network). ``variables`` default: abstract ones from ``module.init`` (nothing runs)."""
    from csist_jax import models

    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    inputs = models.example_inputs(module, batch, window)
    if variables is None:
        variables = jax.eval_shape(module.init, jax.random.PRNGKey(0), *(a[:1] for a in inputs))
    abstract = jax.tree.map(lambda a: jax.ShapeDtypeStruct(jnp.shape(a), jnp.result_type(a)), variables)
    cost = jax.jit(module.apply).lower(abstract, *inputs).cost_analysis()
    if isinstance(cost, (list, tuple)):  # older JAX: one dict per program
        cost = cost[0]
    flops = float(cost.get("flops", 0.0))
    return {"params": models.param_count(abstract), "macs": flops / 2.0 / batch}


def published_batch(macs_per_image: float, batch: int = 64) -> float:
    """MACs of a batch of ``batch`` images (the DISTA-Net table's FLOPs column uses 64)."""
    return macs_per_image * batch


__all__ = ["complexity", "published_batch"]
