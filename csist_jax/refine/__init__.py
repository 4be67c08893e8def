"""Beyond the grid: continuous sub-pixel localisation of point targets through the sensor model.

``localize`` / ``fit_sources`` fit point sources to images (optionally seeded by HR maps),
``calibrate_psf`` recovers the PSF width (and a background) from images, and ``position_crb`` gives the
Cramer-Rao bound on the localisation error; ``localize_windows`` fits a window of frames jointly.
"""

from csist_jax.refine.calibrate import calibrate_psf
from csist_jax.refine.crb import fisher_information, position_crb, rmse_bound
from csist_jax.refine.localize import fit_sources, localize
from csist_jax.refine.sequence import localize_windows

__all__ = [
    "calibrate_psf",
    "fisher_information",
    "fit_sources",
    "localize",
    "localize_windows",
    "position_crb",
    "rmse_bound",
]
