"""csist-jax: closely-spaced infrared small target unmixing in JAX.

Layers, top to bottom (nothing imports upward): ``physics`` (the sensor), ``data`` (generators and
the official on-disk layouts), ``solvers`` (analytic ISTA/FISTA), ``models`` (deep unfolding networks),
``refine`` (continuous sub-pixel localisation), ``metrics`` (CSO-mAP), ``train``.
"""

__version__ = "0.1.0"
