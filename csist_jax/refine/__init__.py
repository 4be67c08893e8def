"""Beyond the grid: continuous sub-pixel localisation of point targets through the sensor model.

Host-side conveniences (validation, chunking over a batch): ``localize`` / ``fit_sources`` fit point
sources to images (optionally seeded by HR maps), ``localize_windows`` fits a window of frames jointly,
``polish`` runs one short fit from a detector's points (no model-order search; ``polish_windows``
the same over windows), ``estimate_noise`` estimates the read noise of frames,
``calibrate_psf`` recovers the PSF width (and a background) from images, and ``position_crb`` gives the
Cramer-Rao bound on the localisation error.

The pure, jittable, vmappable and differentiable cores they are built from, for composing with other JAX
code: ``localize_one`` (one image), ``fit_one`` (one image from a start), ``polish_one`` (a detector's
points, fitted once), ``localize_window`` / ``fit_window`` (one window of frames), ``levenberg_marquardt``
(the one solver every fit uses) and ``position_score`` (the predicted position error and the detection
score).
"""

from csist_jax.refine.calibrate import calibrate_psf
from csist_jax.refine.crb import fisher_information, position_crb, rmse_bound
from csist_jax.refine.fit import fit_one
from csist_jax.refine.lm import levenberg_marquardt
from csist_jax.refine.localize import fit_sources, localize, localize_one
from csist_jax.refine.noise import estimate_noise
from csist_jax.refine.polish import polish, polish_one
from csist_jax.refine.score import SCORE_SCALE, pixel_variance, position_score
from csist_jax.refine.sequence import fit_window, localize_window, localize_windows, polish_windows

__all__ = [
    "SCORE_SCALE",
    "calibrate_psf",
    "estimate_noise",
    "fisher_information",
    "fit_one",
    "fit_sources",
    "fit_window",
    "levenberg_marquardt",
    "localize",
    "localize_one",
    "localize_window",
    "localize_windows",
    "pixel_variance",
    "polish",
    "polish_one",
    "polish_windows",
    "position_crb",
    "position_score",
    "rmse_bound",
]
