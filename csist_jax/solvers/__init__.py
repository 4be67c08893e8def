"""Analytic solvers: ISTA and FISTA over a sampling operator, on one image or a batch, with warm starts;
jittable, vmappable and differentiable."""

from csist_jax.solvers.ista import (
    default_step,
    fista,
    gradient_step,
    ista,
    nonneg_soft_threshold,
    objective,
    proximal_gradient,
    soft_threshold,
)

__all__ = [
    "default_step",
    "fista",
    "gradient_step",
    "ista",
    "nonneg_soft_threshold",
    "objective",
    "proximal_gradient",
    "soft_threshold",
]
