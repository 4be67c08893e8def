"""The sensor model shared by every other layer: PSF, rendering, sampling operator, grid, storage."""

from csist_jax.physics.grid import hr_cell_centres, hr_index, hr_label, hr_offset
from csist_jax.physics.operator import (
    DenseOperator,
    PerSampleOperator,
    SamplingOperator,
    SeparableOperator,
    dense_operator,
    q_init,
    register_operator,
    sampling_matrix,
    sampling_operator,
)
from csist_jax.physics.psf import DEFAULT_SIGMA, pixel_integrated_gaussian, render, separable_factor
from csist_jax.physics.sensor import gaussian_noise, observe, poisson_noise, quantize, quantize_float

__all__ = [
    "DEFAULT_SIGMA",
    "DenseOperator",
    "PerSampleOperator",
    "SamplingOperator",
    "SeparableOperator",
    "dense_operator",
    "gaussian_noise",
    "hr_cell_centres",
    "hr_index",
    "hr_label",
    "hr_offset",
    "observe",
    "pixel_integrated_gaussian",
    "poisson_noise",
    "q_init",
    "quantize",
    "quantize_float",
    "register_operator",
    "render",
    "sampling_matrix",
    "sampling_operator",
    "separable_factor",
]
