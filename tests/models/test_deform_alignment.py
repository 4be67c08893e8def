"""DeRefNet's deformable alignment against a loop reference, and its gradients against finite differences.

The reference is mmcv's / torchvision's ``DeformConv2d`` (stride 1, padding 1, one offset group) written
pixel by pixel: tap ``k = 3a + b`` of output pixel ``(i, j)`` reads the input at
``(i + a - 1 + offsets[2k], j + b - 1 + offsets[2k + 1])`` (row shift first, as mmcv's offset layout) by
bilinear interpolation in which every neighbour outside the map reads as zero (so a point a full pixel or
more outside reads zero). Gradients are checked in float64 by central differences at random fractional
offsets: bilinear sampling is piecewise linear in each coordinate, so away from the integer grid (its
kinks) the central difference is exact up to rounding.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from csist_jax.models.derefnet import DeformConv3, bilinear_sample, deform_conv3

# one compilation per signature instead of one per operation: keeps the file fast on a small CPU
_bilinear, _deform = jax.jit(bilinear_sample), jax.jit(deform_conv3)


def _bilinear_reference(image, y, x, clamp=False):
    """``image`` ``[h, w, c]`` read at ``(y, x)`` as mmcv's ``bilinear_interpolate`` does; with
    ``clamp=True`` the deliberately wrong variant that moves the point onto the map's border first."""
    h, w, c = image.shape
    if clamp:
        y, x = min(max(y, 0.0), h - 1.0), min(max(x, 0.0), w - 1.0)
    if y <= -1 or y >= h or x <= -1 or x >= w:
        return np.zeros(c)
    y0, x0 = math.floor(y), math.floor(x)
    total = np.zeros(c)
    for row, wy in ((y0, 1.0 - (y - y0)), (y0 + 1, y - y0)):
        for col, wx in ((x0, 1.0 - (x - x0)), (x0 + 1, x - x0)):
            if 0 <= row < h and 0 <= col < w:
                total += wy * wx * np.asarray(image[row, col], np.float64)
    return total


def _deform_conv_reference(x, offsets, kernel, clamp=False, swap=False):
    """Loop reference of :func:`deform_conv3`: ``x`` ``[n, h, w, c]``, ``offsets`` ``[n, h, w, 18]``,
    ``kernel`` ``[3, 3, c, o]``. ``swap=True`` reads the offset pairs as ``(dx, dy)`` (a wrong layout)."""
    x, offsets, kernel = (np.asarray(a, np.float64) for a in (x, offsets, kernel))
    n, h, w, _ = x.shape
    out = np.zeros((n, h, w, kernel.shape[-1]))
    for s in range(n):
        for i in range(h):
            for j in range(w):
                for a in range(3):
                    for b in range(3):
                        k = 3 * a + b
                        dy, dx = offsets[s, i, j, 2 * k], offsets[s, i, j, 2 * k + 1]
                        if swap:
                            dy, dx = dx, dy
                        value = _bilinear_reference(x[s], i + a - 1 + dy, j + b - 1 + dx, clamp)
                        out[s, i, j] += value @ kernel[a, b]
    return out


def _fractional(rng, shape, reach):
    """Offsets in ``[-reach, reach]`` whose fractional parts lie in ``[0.1, 0.9]``: every sampling point
    stays at least 0.1 px from the integer grid, where bilinear sampling has its kinks."""
    return rng.integers(-reach, reach, shape) + rng.uniform(0.1, 0.9, shape)


def _case(seed, shape=(2, 5, 6, 3), out_channels=2, reach=1, integer=False):
    rng = np.random.default_rng(seed)
    n, h, w, c = shape
    x = rng.normal(size=shape)
    kernel = rng.normal(size=(3, 3, c, out_channels))
    if integer:
        offsets = rng.integers(-reach, reach + 1, (n, h, w, 18)).astype(np.float64)
    else:
        offsets = rng.uniform(-reach, reach, (n, h, w, 18))
    return x, offsets, kernel


def _outside_fraction(offsets):
    """Share of the sampling points a full pixel or more outside the map (they read zero)."""
    n, h, w, _ = offsets.shape
    rows = np.arange(h)[:, None, None] + np.repeat(np.arange(-1, 2), 3) + offsets[..., 0::2]
    cols = np.arange(w)[None, :, None] + np.tile(np.arange(-1, 2), 3) + offsets[..., 1::2]
    outside = (rows <= -1) | (rows >= h) | (cols <= -1) | (cols >= w)
    return float(np.mean(outside))


def test_bilinear_sample_matches_the_reference_inside_on_and_beyond_the_border():
    rng = np.random.default_rng(0)
    image = rng.normal(size=(5, 6, 3))
    # random points reaching two pixels beyond every edge, and the special ones: integers, the
    # half-pixel border band and exactly one pixel outside (where the sampled value reaches zero)
    py = np.concatenate([rng.uniform(-2.5, 6.5, 60), [0, 4, -0.5, 4.5, -1, 5, -1.0000001, 2, 3.25, -3]])
    px = np.concatenate([rng.uniform(-2.5, 7.5, 60), [0, 5, 2.0, -0.5, 3, 5.5, 0, 6, -0.75, 8]])
    expected = np.array([_bilinear_reference(image, y, x) for y, x in zip(py, px)])
    assert np.sum(np.all(expected == 0, axis=1)) >= 10  # the case covers points that read zero
    with jax.enable_x64(True):
        ours = np.asarray(_bilinear(jnp.asarray(image), jnp.asarray(py), jnp.asarray(px)))
    assert ours.dtype == np.float64 and ours.shape == (70, 3)
    np.testing.assert_allclose(ours, expected, rtol=0, atol=1e-12)
    ours32 = _bilinear(jnp.asarray(image, jnp.float32), jnp.asarray(py, jnp.float32), px.astype(np.float32))
    np.testing.assert_allclose(ours32, expected, rtol=0, atol=2e-5)
    # any shape of points: [*S, c]
    grid = _bilinear(
        jnp.asarray(image, jnp.float32), jnp.asarray(py[:60].reshape(6, 10)), px[:60].reshape(6, 10)
    )
    np.testing.assert_allclose(grid, expected[:60].reshape(6, 10, 3), rtol=0, atol=2e-5)


CASES = {
    "fractional within a pixel": dict(seed=1, reach=1),
    "up to 4 px on a 5x5 map": dict(seed=2, shape=(2, 5, 5, 2), reach=4),
    "up to 4 px, more channels": dict(seed=3, shape=(1, 5, 6, 3), out_channels=3, reach=4),
    "integer shifts": dict(seed=4, reach=2, integer=True),
}


@pytest.mark.parametrize("name", list(CASES))
def test_deform_conv3_matches_the_loop_reference(name):
    x, offsets, kernel = _case(**CASES[name])
    expected = _deform_conv_reference(x, offsets, kernel)
    with jax.enable_x64(True):
        ours = np.asarray(_deform(jnp.asarray(x), jnp.asarray(offsets), jnp.asarray(kernel)))
    assert ours.dtype == np.float64
    np.testing.assert_allclose(ours, expected, rtol=0, atol=1e-12 * np.max(np.abs(expected)))
    x32, o32, k32 = (a.astype(np.float32) for a in (x, offsets, kernel))
    ours32 = _deform(jnp.asarray(x32), jnp.asarray(o32), jnp.asarray(k32))
    assert ours32.dtype == jnp.float32
    expected32 = _deform_conv_reference(x32, o32, k32)
    np.testing.assert_allclose(ours32, expected32, rtol=0, atol=1e-5 * np.max(np.abs(expected32)))


def test_the_reference_comparison_sees_the_border_and_the_offset_layout():
    """The comparison above could fail: on the beyond-the-map case, clamping to the border instead of
    reading zero, or reading the offset pairs as (dx, dy), gives clearly different outputs."""
    x, offsets, kernel = _case(**CASES["up to 4 px on a 5x5 map"])
    assert _outside_fraction(offsets) > 0.2  # many taps really read beyond the map
    with jax.enable_x64(True):
        ours = np.asarray(_deform(jnp.asarray(x), jnp.asarray(offsets), jnp.asarray(kernel)))
    scale = np.max(np.abs(ours))
    for wrong in (dict(clamp=True), dict(swap=True)):
        gap = np.max(np.abs(_deform_conv_reference(x, offsets, kernel, **wrong) - ours))
        assert gap > 0.1 * scale, (wrong, gap, scale)
    # inside the map (small offsets, interior pixels) clamping changes nothing: the gap above is the border
    x, offsets, kernel = _case(seed=5, shape=(1, 6, 6, 2), reach=1)
    offsets *= 0.4  # interior pixels 2..3 then sample rows and columns 0.6..4.4 only
    clamped = _deform_conv_reference(x, offsets, kernel, clamp=True)
    with jax.enable_x64(True):
        ours = np.asarray(_deform(jnp.asarray(x), jnp.asarray(offsets), jnp.asarray(kernel)))
    np.testing.assert_allclose(ours[:, 2:-2, 2:-2], clamped[:, 2:-2, 2:-2], rtol=0, atol=1e-12)


def _assert_gradient_matches_differences(fn, tree, seed, per_leaf=6, step=1e-6, rtol=1e-6):
    """``jax.grad`` of the scalar ``fn(tree)`` (float64) against central differences at random
    coordinates of every leaf: ``per_leaf`` the gradient reaches and up to two it does not (where the
    differences must vanish too)."""
    flat, unravel = ravel_pytree(tree)
    assert flat.dtype == jnp.float64
    value = jax.jit(lambda v: fn(unravel(v)))
    grad = np.asarray(jax.jit(jax.grad(lambda v: fn(unravel(v))))(flat))
    rng = np.random.default_rng(seed)
    coords, start = [], 0
    for leaf in jax.tree_util.tree_leaves(tree):
        span = np.arange(start, start + np.size(leaf))
        start += np.size(leaf)
        reached, unreached = span[grad[span] != 0], span[grad[span] == 0]
        assert reached.size, "the gradient reaches no coordinate of a leaf"
        coords += list(rng.choice(reached, min(per_leaf, reached.size), replace=False))
        coords += list(rng.choice(unreached, min(2, unreached.size), replace=False))
    flat = np.asarray(flat)
    differences = []
    for i in coords:
        plus, minus = flat.copy(), flat.copy()
        plus[i] += step
        minus[i] -= step
        differences.append((float(value(plus)) - float(value(minus))) / (2 * step))
    scale = np.max(np.abs(grad))
    np.testing.assert_allclose(differences, grad[coords], rtol=rtol, atol=rtol * 1e-3 * scale)


@pytest.mark.parametrize("argument", ["x", "offsets", "kernel"])
def test_deform_conv3_gradient_matches_central_differences(argument):
    rng = np.random.default_rng(6)
    x = rng.normal(size=(2, 5, 5, 3))
    kernel = rng.normal(size=(3, 3, 3, 2))
    offsets = _fractional(rng, (2, 5, 5, 18), reach=4)  # reaching beyond the map, away from the kinks
    weights = rng.normal(size=(2, 5, 5, 2))  # a random linear functional of the output
    assert _outside_fraction(offsets) > 0.2
    with jax.enable_x64(True):
        args = {"x": jnp.asarray(x), "offsets": jnp.asarray(offsets), "kernel": jnp.asarray(kernel)}

        def functional(value):
            return jnp.sum(deform_conv3(**{**args, argument: value}) * weights)

        _assert_gradient_matches_differences(functional, args[argument], seed=7)


def test_deform_conv3_module_gradients_match_central_differences():
    """One :class:`DeformConv3` call, offsets from a guide through its offset conv (moved off its zero
    initialisation): the gradient with respect to every parameter, and to the input when the input is
    its own guide (as the second alignment conv)."""
    rng = np.random.default_rng(13)  # a draw whose sampling points all keep off the integer grid
    module = DeformConv3(features=2)
    with jax.enable_x64(True):
        x = jnp.asarray(rng.normal(size=(2, 5, 6, 3)))
        guide = jnp.asarray(rng.normal(size=(2, 5, 6, 3)))  # as many channels as x: x guides itself below
        params = module.init(jax.random.PRNGKey(0), x, guide)["params"]
        assert set(params) == {"offset", "kernel"} and set(params["offset"]) == {"kernel", "bias"}
        params = {
            "offset": {
                "kernel": jnp.asarray(rng.normal(scale=0.3, size=params["offset"]["kernel"].shape)),
                "bias": jnp.asarray(rng.normal(size=params["offset"]["bias"].shape)),
            },
            "kernel": params["kernel"],
        }
        assert params["kernel"].dtype == jnp.float64
        weights = jnp.asarray(rng.normal(size=(2, 5, 6, 2)))
        for guide_of in (lambda x: guide, lambda x: x):
            _, state = module.apply(
                {"params": params}, x, guide_of(x), capture_intermediates=True, mutable=["intermediates"]
            )
            offsets = np.asarray(state["intermediates"]["offset"]["__call__"][0])
            assert np.max(np.abs(offsets)) > 1.5  # offsets of more than a pixel
            # off the integer grid (the kinks) by far more than a difference step moves them (~1e-6 |guide|)
            distance = np.abs(offsets - np.round(offsets))
            assert np.min(distance) > 1e-4, np.min(distance)

        def of_params(p):
            return jnp.sum(module.apply({"params": p}, x, guide) * weights)

        def of_input(v):
            return jnp.sum(module.apply({"params": params}, v, v) * weights)

        _assert_gradient_matches_differences(of_params, params, seed=9)
        _assert_gradient_matches_differences(of_input, x, seed=10)
