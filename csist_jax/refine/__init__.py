"""Beyond the grid: continuous sub-pixel localisation of point targets through the sensor model."""

from csist_jax.refine.localize import localize

__all__ = ["localize"]
