"""The baselines' bicubic up-sampling (``blocks.bicubic_upsample``, FENet's skip and SRCNN's input) is
PyTorch's ``F.interpolate(mode="bicubic", align_corners=False)``: checked against a plain per-pixel numpy
loop of that convention written here, and against PyTorch itself where it is installed."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from csist_jax.models.baselines import blocks


def _cubic(d: float, a: float = -0.75) -> float:
    """Keys' cubic convolution kernel at distance ``d``."""
    d = abs(d)
    if d <= 1:
        return (a + 2) * d**3 - (a + 3) * d**2 + 1
    if d < 2:
        return a * d**3 - 5 * a * d**2 + 8 * a * d - 4 * a
    return 0.0


def _reference(x: np.ndarray, c: int) -> np.ndarray:
    """PyTorch's bicubic up-sampling by ``c`` of ``x`` ``[n, h, w, ch]``, one output pixel at a time:
    source ``(dst + 0.5) / c - 0.5``, 4 x 4 taps around its floor, tap indices clamped to the image."""
    n, h, w, ch = x.shape
    out = np.zeros((n, h * c, w * c, ch))
    for oy in range(h * c):
        sy = (oy + 0.5) / c - 0.5
        y0 = math.floor(sy)
        for ox in range(w * c):
            sx = (ox + 0.5) / c - 0.5
            x0 = math.floor(sx)
            acc = np.zeros((n, ch))
            for dy in range(-1, 3):
                wy = _cubic(sy - (y0 + dy))
                iy = min(max(y0 + dy, 0), h - 1)
                for dx in range(-1, 3):
                    wx = _cubic(sx - (x0 + dx))
                    ix = min(max(x0 + dx, 0), w - 1)
                    acc += wy * wx * x[:, iy, ix, :]
            out[:, oy, ox, :] = acc
    return out


@pytest.mark.parametrize(("c", "shape"), [(3, (2, 11, 11, 1)), (5, (2, 11, 11, 1)), (3, (1, 5, 8, 2))])
def test_bicubic_upsample_is_pytorchs_convention(c, shape):
    x = np.random.default_rng(c).uniform(0, 255, shape).astype(np.float32)
    ours = np.asarray(jax.jit(blocks.bicubic_upsample, static_argnums=1)(jnp.asarray(x), c))
    reference = _reference(x.astype(np.float64), c)
    assert ours.shape == reference.shape
    assert ours.dtype == np.float32
    np.testing.assert_allclose(ours, reference, rtol=0, atol=1e-5 * np.abs(reference).max())


def test_bicubic_upsample_keeps_constants_and_has_gradients():
    """The rows of each interpolation matrix sum to one (a constant frame stays constant), and the
    up-sampling is differentiable (its gradient is the transposed matrices applied to the cotangent)."""
    x = jnp.full((1, 11, 11, 1), 7.0)
    np.testing.assert_allclose(blocks.bicubic_upsample(x, 5), 7.0, rtol=1e-6)
    g = jax.grad(lambda x: blocks.bicubic_upsample(x, 3).sum())(x)
    m = blocks.bicubic_matrix(11, 3)
    np.testing.assert_allclose(g[0, :, :, 0], np.outer(m.sum(0), m.sum(0)), rtol=1e-5)


@pytest.mark.parametrize(("c", "shape"), [(3, (2, 11, 11, 1)), (5, (1, 11, 11, 1)), (3, (1, 5, 8, 2))])
def test_bicubic_upsample_matches_torch(c, shape):
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(10 + c).uniform(0, 255, shape).astype(np.float32)
    ours = np.asarray(blocks.bicubic_upsample(jnp.asarray(x), c))
    t = torch.nn.functional.interpolate(
        torch.from_numpy(x.transpose(0, 3, 1, 2)), scale_factor=c, mode="bicubic", align_corners=False
    )
    theirs = t.numpy().transpose(0, 2, 3, 1)
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-5 * np.abs(theirs).max())
