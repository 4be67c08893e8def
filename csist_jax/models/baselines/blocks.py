"""Building blocks shared by the comparison baselines (NHWC feature maps, ``[n, h, w, channels]``).

The super-resolution baselines of the published tables take the 11 x 11 frame (raw 0..255) as a
one-channel image and return the ``11c x 11c`` HR map; these are the pieces most of them share:
convolutions with PyTorch's default initialisation, sub-pixel (pixel-shuffle) up-sampling in PyTorch's
channel order, the EDSR-style up-sampler for any ratio, bicubic interpolation and channel attention.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from csist_jax.models.layers import torch_default_bias, torch_default_kernel


def conv(
    features: int,
    in_features: int,
    size: int = 3,
    *,
    use_bias: bool = True,
    stride: int = 1,
    padding="SAME",
    groups: int = 1,
    dilation: int = 1,
    name: str | None = None,
) -> nn.Conv:
    """A convolution initialised as PyTorch's ``nn.Conv2d`` (``in_features`` sets the fan-in)."""
    fan_in = in_features // groups * size * size
    return nn.Conv(
        features,
        (size, size),
        strides=(stride, stride),
        padding=padding,
        feature_group_count=groups,
        kernel_dilation=(dilation, dilation),
        use_bias=use_bias,
        kernel_init=torch_default_kernel,
        bias_init=torch_default_bias(fan_in),
        name=name,
    )


def pixel_shuffle(x: Float[Array, "n h w cr2"], r: int) -> Float[Array, "n hr wr c"]:
    """Sub-pixel rearrangement in PyTorch's ``nn.PixelShuffle`` order: input channel ``k r^2 + i r + j``
    becomes output channel ``k`` at row offset ``i`` and column offset ``j``."""
    n, h, w, channels = x.shape
    if channels % (r * r):
        raise ValueError(f"pixel_shuffle: {channels} channels are not a multiple of r^2 = {r * r}")
    out = channels // (r * r)
    x = x.reshape(n, h, w, out, r, r)
    x = x.transpose(0, 1, 4, 2, 5, 3)  # n, h, i, w, j, k
    return x.reshape(n, h * r, w * r, out)


def pixel_unshuffle(x: Float[Array, "n hr wr c"], r: int) -> Float[Array, "n h w cr2"]:
    """The inverse of :func:`pixel_shuffle` (PyTorch's ``nn.PixelUnshuffle``)."""
    n, hr, wr, channels = x.shape
    x = x.reshape(n, hr // r, r, wr // r, r, channels).transpose(0, 1, 3, 5, 2, 4)
    return x.reshape(n, hr // r, wr // r, channels * r * r)


def prime_factors(c: int) -> list[int]:
    """``c`` as a list of prime factors, smallest first (the up-sampler's sub-pixel steps)."""
    out, p = [], 2
    while c > 1:
        while c % p == 0:
            out.append(p)
            c //= p
        p += 1
    return out


class Upsampler(nn.Module):
    """EDSR's up-sampler: per prime factor ``p`` of ``c``, a 3x3 conv to ``p^2`` times the channels and a
    pixel shuffle (the toolkit's version handles 2^k and 3; a prime factorisation covers every ``c``)."""

    c: int
    features: int
    act: str | None = None  # None, "relu" or "prelu"

    @nn.compact
    def __call__(self, x):
        for k, p in enumerate(prime_factors(self.c)):
            x = conv(p * p * self.features, self.features, 3, name=f"conv_{k}")(x)
            x = pixel_shuffle(x, p)
            if self.act == "relu":
                x = nn.relu(x)
            elif self.act == "prelu":
                x = PReLU(name=f"prelu_{k}")(x)
        return x


class PReLU(nn.Module):
    """PyTorch's ``nn.PReLU()``: one learned slope (init 0.25) shared by all channels."""

    init: float = 0.25

    @nn.compact
    def __call__(self, x):
        a = self.param("alpha", nn.initializers.constant(self.init), ())
        return jnp.where(x >= 0, x, a.astype(x.dtype) * x)


class ChannelAttention(nn.Module):
    """RCAN's channel attention: global average pool, 1x1 conv down by ``reduction``, ReLU, 1x1 conv up,
    sigmoid, rescale the channels."""

    features: int
    reduction: int = 16

    @nn.compact
    def __call__(self, x):
        y = jnp.mean(x, axis=(1, 2), keepdims=True)
        hidden = max(self.features // self.reduction, 1)
        y = nn.relu(conv(hidden, self.features, 1, name="down")(y))
        y = nn.sigmoid(conv(self.features, hidden, 1, name="up")(y))
        return x * y


_CUBIC_A = -0.75  # PyTorch's bicubic coefficient (``F.interpolate``, ``nn.Upsample``)


def _cubic_weights(t: np.ndarray) -> np.ndarray:
    """The four taps' weights of Keys' cubic convolution kernel with ``a = -0.75`` (PyTorch's
    ``upsample_bicubic2d``) at fractional offset ``t``, for the taps ``i0 - 1 .. i0 + 2``."""
    a = _CUBIC_A

    def near(d):  # |d| <= 1
        return ((a + 2) * d - (a + 3)) * d * d + 1

    def far(d):  # 1 < |d| < 2
        return ((a * d - 5 * a) * d + 8 * a) * d - 4 * a

    return np.stack([far(t + 1), near(t), near(1 - t), far(2 - t)], axis=-1)


def bicubic_matrix(in_size: int, c: int) -> np.ndarray:
    """The ``[in_size c, in_size]`` matrix of PyTorch's bicubic interpolation by an integer factor ``c``
    along one axis (``align_corners=False``): output ``i`` samples the source at ``(i + 0.5) / c - 0.5``,
    taps ``floor(src) - 1 .. floor(src) + 2`` weighted by the ``a = -0.75`` cubic kernel, each tap's
    index clamped to ``[0, in_size - 1]`` (border taps add onto the edge pixel; nothing renormalised)."""
    out = np.arange(in_size * c)
    src = (out + 0.5) / c - 0.5
    i0 = np.floor(src)
    weights = _cubic_weights(src - i0)
    idx = np.clip(i0[:, None].astype(np.int64) + np.arange(-1, 3), 0, in_size - 1)
    matrix = np.zeros((in_size * c, in_size))
    np.add.at(matrix, (np.repeat(out, 4), idx.ravel()), weights.ravel())
    return matrix


def bicubic_upsample(x: Float[Array, "n h w ch"], c: int) -> Float[Array, "n hc wc ch"]:
    """Bicubic interpolation by the integer factor ``c`` in PyTorch's convention, as the toolkit's
    ``F.interpolate(x, scale_factor=c, mode="bicubic", align_corners=False)``: half-pixel centres, the
    ``a = -0.75`` cubic kernel and source indices clamped at the border (:func:`bicubic_matrix`; JAX's
    ``jax.image.resize`` uses ``a = -0.5`` and renormalises the weights at the border instead). Separable:
    one small dense matrix per axis, built at trace time and applied as a matmul in full float32 precision;
    no parameters."""
    n, h, w, ch = x.shape
    rows = jnp.asarray(bicubic_matrix(h, c), x.dtype)
    cols = jnp.asarray(bicubic_matrix(w, c), x.dtype)
    hp = jax.lax.Precision.HIGHEST
    x = jnp.einsum("oh,nhwc->nowc", rows, x, precision=hp)
    return jnp.einsum("pw,nowc->nopc", cols, x, precision=hp)


def to_map(x: Float[Array, "n hr hr 1"]) -> Float[Array, "n hr hr"]:
    """Drop the single output channel."""
    return x[..., 0]


__all__ = [
    "ChannelAttention",
    "PReLU",
    "Upsampler",
    "bicubic_matrix",
    "bicubic_upsample",
    "conv",
    "pixel_shuffle",
    "pixel_unshuffle",
    "prime_factors",
    "to_map",
]
