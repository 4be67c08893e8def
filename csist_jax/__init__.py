"""csist-jax: closely-spaced infrared small target unmixing in JAX.

Layers, top to bottom (nothing imports upward): ``physics`` (the sensor), ``data`` (generators and
the official on-disk layouts), ``solvers`` (analytic ISTA/FISTA), ``models`` (deep unfolding networks),
``refine`` (continuous sub-pixel localisation), ``metrics`` (CSO-mAP), ``train``.

For users, one call each: :func:`unmix` (11 x 11 frames) and :func:`unmix_windows` (windows of frames)
run the best shipped method for the frames' noise level (:mod:`csist_jax.unmixing`);
:func:`unmix_frames` finds and unmixes every group of whole sensor frames of any size
(:mod:`csist_jax.frames`).
"""

__version__ = "0.1.0"


def unmix(images, **options):
    """Point targets in ``[n, 11, 11]`` frames: see :func:`csist_jax.unmixing.unmix`."""
    from csist_jax.unmixing import unmix as run

    return run(images, **options)


def unmix_windows(windows, **options):
    """Point targets in the centre frames of ``[n, T, 11, 11]`` windows: see
    :func:`csist_jax.unmixing.unmix_windows`."""
    from csist_jax.unmixing import unmix_windows as run

    return run(windows, **options)


def unmix_frames(frames, **options):
    """Point targets in whole ``[n, H, W]`` sensor frames, in frame coordinates: see
    :func:`csist_jax.frames.unmix_frames`."""
    from csist_jax.frames import unmix_frames as run

    return run(frames, **options)
