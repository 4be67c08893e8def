"""Analytic solvers: ISTA and FISTA over a sampling operator, jitted and vmapped over images."""

from csist_jax.solvers.ista import (
    default_step,
    fista,
    gradient_step,
    ista,
    nonneg_soft_threshold,
    objective,
    soft_threshold,
)

__all__ = [
    "default_step",
    "fista",
    "gradient_step",
    "ista",
    "nonneg_soft_threshold",
    "objective",
    "soft_threshold",
]
