"""The generators of the three GAN baselines of the SeqCSIST table (SRGAN, ESRGAN, BSRGAN), as the
GrokCSO / SeqCSIST toolkit's configs build them (``configs/c_3/SRGAN.py``, ``ESRGAN.py``, ``BSRGAN.py``;
the detectors ``grokcso/models/detectors/SRGAN_det.py``, ``ESRGAN_det.py``, ``BSRGAN_det.py``; the
generators are MMagic's ``MSRResNet`` and ``RRDBNet``, which the configs name; the SeqCSIST environment
pins MMagic 1.2.0):

- SRGAN (Ledig et al., "Photo-Realistic Single Image Super-Resolution Using a Generative Adversarial
  Network", CVPR 2017): MMagic's modified SRResNet (``MSRResNet``: residual blocks without BatchNorm),
  1 -> 1 channels, 64 channels, 16 blocks, x3.
- ESRGAN (Wang et al., "ESRGAN: Enhanced Super-Resolution Generative Adversarial Networks", ECCV
  workshops 2018): ``RRDBNet`` with 64 channels, 23 residual-in-residual dense blocks, growth 32.
- BSRGAN (Zhang, Liang, Van Gool and Timofte, "Designing a Practical Degradation Model for Deep Blind
  Image Super-Resolution", ICCV 2021): the same ``RRDBNet`` with 16 blocks (growth 32).

How the toolkit trains them (SRGAN_gai and its ESRGAN / BSRGAN subclasses): the generator's loss is a
pixel L1 loss (weight 0.01), a perceptual loss (L1 between the conv5_4 features, layer '34', of an
ImageNet-pretrained, frozen torchvision VGG19 of output and label; the one-channel maps are broadcast to
three channels by VGG's ImageNet mean / std normalisation; weight 1.0, no style loss) and an adversarial
loss (binary cross-entropy on logits, weight 5e-3): the standard GAN loss for SRGAN, the relativistic
average one (each prediction against the mean of the other kind, in the generator's and the
discriminator's steps) for ESRGAN and BSRGAN. The discriminator is the toolkit's ``ModifiedVGG`` (ten
convolutions, all but the first followed by BatchNorm, LeakyReLU(0.2), five of them strided so that
33 x 33 becomes 1 x 1, then linear layers 512 -> 100 -> 1) for SRGAN and ESRGAN, and a U-Net
discriminator with spectral normalisation for BSRGAN.
Both networks: Adam, lr 1e-4, betas (0.9, 0.999), one discriminator step per generator step, 1,000
epochs (SRGAN, ESRGAN) or 10,000 (BSRGAN) on SeqCSIST. The ESRGAN config also initialises its generator
from MMagic's x4 RGB PSNR-oriented DIV2K checkpoint (a download; its first and last convolutions cannot
fit a one-channel model).

What this library does: these modules are the generators only, and they train like every other
baseline, on the pixel (MSE) training loss of :mod:`csist_jax.train.losses`. The adversarial and
perceptual terms are not reproduced: they need a discriminator and ImageNet-pretrained VGG19 weights,
which cannot be downloaded here; so these are the toolkit's generator architectures trained
PSNR-oriented, not GANs, and their numbers are not the published GAN rows. Initialisation is MMagic's
(Kaiming-normal scaled by 0.1, zero biases; scale 1 for the sub-pixel convolution), not the ESRGAN
checkpoint.

Parameters (c = 3, generators only): SRGAN 1,552,193, ESRGAN 16,695,681, BSRGAN 11,659,713. The
published SeqCSIST counts, 35.31M, 50.45M and 36.06M, are PyTorch's ``sum(p.numel() for p in
model.parameters())`` over the whole training model: generator + discriminator + the frozen VGG19 of the
perceptual loss (its 16 convolutions, 20,024,384 parameters, ``requires_grad=False``). With the toolkit's
``ModifiedVGG`` (13,730,249 parameters, BatchNorm affine included, running statistics being buffers):
1,552,193 + 13,730,249 + 20,024,384 = 35,306,826 (SRGAN) and 16,695,681 + 13,730,249 + 20,024,384 =
50,450,314 (ESRGAN); with the U-Net discriminator (4,375,745 parameters; the spectral-norm vectors are
buffers): 11,659,713 + 4,375,745 + 20,024,384 = 36,059,842 (BSRGAN). All three match the table.

Up-sampling for any ``c``: ``MSRResNet`` up-samples by one sub-pixel convolution (conv 64 -> 64 c^2,
pixel shuffle) for c = 2 or 3 and two x2 ones for c = 4; here one per prime factor of ``c`` (the same at
2, 3 and 4), followed, as MMagic's, by no activation, then conv, LeakyReLU(0.1), conv, plus the input
up-sampled bilinearly by ``c``. ``RRDBNet`` up-samples with two nearest-neighbour x2 steps, each followed
by a 3x3 conv and LeakyReLU(0.2) (x4 in all), and MMagic's accepts only factors 1, 2 and 4; the toolkit's
configs ask for 3 and the published counts include both up-sampling convolutions, so the toolkit ran a
locally changed ``RRDBNet`` that neither repository contains. Here the two up-sampling steps keep their
convolutions and split the factor: nearest x ``p`` before the first (``p`` the smallest prime factor of
``c``) and x ``c / p`` before the second (x3 then x1 at c = 3; x2 then x2 at c = 4, MMagic's own).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from csist_jax.models.baselines import blocks
from csist_jax.models.layers import SuperResolutionNetwork


def _kaiming(scale: float):
    """MMagic's ``default_init_weights(m, scale)`` kernel: Kaiming-normal (fan-in, gain sqrt 2) times
    ``scale``."""
    return nn.initializers.variance_scaling(2.0 * scale * scale, "fan_in", "normal")


def conv(features: int, scale: float = 0.1, name: str | None = None) -> nn.Conv:
    """A 3x3 'same' convolution with MMagic's initialisation (scaled Kaiming-normal, zero bias)."""
    return nn.Conv(features, (3, 3), padding="SAME", kernel_init=_kaiming(scale), name=name)


def nearest_upsample(x, r: int):
    """Nearest-neighbour up-sampling by the integer ``r`` (``F.interpolate(mode="nearest")``)."""
    if r == 1:
        return x
    return jnp.repeat(jnp.repeat(x, r, axis=1), r, axis=2)


def bilinear_upsample(x, c: int):
    """Bilinear up-sampling by ``c`` with half-pixel centres, as ``nn.Upsample(mode="bilinear",
    align_corners=False)`` (at the borders both reduce to the edge pixel)."""
    n, h, w, ch = x.shape
    return jax.image.resize(x, (n, h * c, w * c, ch), method="linear")


class ResidualBlockNoBN(nn.Module):
    """``x + conv(relu(conv(x)))`` (MSRResNet's block: no BatchNorm, residual scale 1)."""

    features: int

    @nn.compact
    def __call__(self, x):
        y = nn.relu(conv(self.features, name="conv1")(x))
        return x + conv(self.features, name="conv2")(y)


class SRGANGenerator(SuperResolutionNetwork):
    """MMagic's ``MSRResNet`` (the SRGAN generator of the toolkit). ``mid_channels``: channels (64);
    ``num_blocks``: residual blocks (16)."""

    mid_channels: int = 64
    num_blocks: int = 16

    def forward(self, z):
        f = self.mid_channels
        x = z[..., None]
        y = nn.leaky_relu(conv(f, name="conv_first")(x), 0.1)
        for k in range(self.num_blocks):
            y = ResidualBlockNoBN(f, name=f"trunk_{k}")(y)
        for k, p in enumerate(blocks.prime_factors(self.c)):
            y = blocks.pixel_shuffle(conv(p * p * f, 1.0, name=f"upsample_{k}")(y), p)
        y = nn.leaky_relu(conv(f, name="conv_hr")(y), 0.1)
        y = conv(1, name="conv_last")(y)
        return blocks.to_map(y + bilinear_upsample(x, self.c)), []


class ResidualDenseBlock(nn.Module):
    """Five 3x3 convs, each (but the last) seeing the concatenation of the input and all earlier outputs
    (``growth`` channels each, LeakyReLU(0.2)); ``x + 0.2 * conv5(...)``."""

    features: int
    growth: int

    @nn.compact
    def __call__(self, x):
        feats = [x]
        for k in range(4):
            y = conv(self.growth, name=f"conv{k + 1}")(jnp.concatenate(feats, -1))
            feats.append(nn.leaky_relu(y, 0.2))
        return x + 0.2 * conv(self.features, name="conv5")(jnp.concatenate(feats, -1))


class RRDB(nn.Module):
    """Residual in residual dense block: three dense blocks, ``x + 0.2 * rdb3(rdb2(rdb1(x)))``."""

    features: int
    growth: int

    @nn.compact
    def __call__(self, x):
        y = x
        for k in range(3):
            y = ResidualDenseBlock(self.features, self.growth, name=f"rdb{k + 1}")(y)
        return x + 0.2 * y


class _RRDBNet(SuperResolutionNetwork):
    """MMagic's ``RRDBNet`` (see the module docstring for the up-sampling at c = 3)."""

    mid_channels: int = 64
    num_blocks: int = 23
    growth_channels: int = 32

    def forward(self, z):
        f = self.mid_channels
        feat = conv(f, name="conv_first")(z[..., None])
        y = feat
        for k in range(self.num_blocks):
            y = RRDB(f, self.growth_channels, name=f"body_{k}")(y)
        y = feat + conv(f, name="conv_body")(y)
        first = (blocks.prime_factors(self.c) or [1])[0]
        for k, r in enumerate((first, self.c // first)):
            y = nn.leaky_relu(conv(f, name=f"conv_up{k + 1}")(nearest_upsample(y, r)), 0.2)
        y = nn.leaky_relu(conv(f, name="conv_hr")(y), 0.2)
        return blocks.to_map(conv(1, name="conv_last")(y)), []


class ESRGANGenerator(_RRDBNet):
    """``RRDBNet`` as the ESRGAN config builds it: ``mid_channels`` 64, ``num_blocks`` 23,
    ``growth_channels`` 32."""

    num_blocks: int = 23


class BSRGANGenerator(_RRDBNet):
    """``RRDBNet`` as the BSRGAN config builds it: ``mid_channels`` 64, ``num_blocks`` 16,
    ``growth_channels`` 32."""

    num_blocks: int = 16


SMALL = {
    "srgan": {"mid_channels": 8, "num_blocks": 1},
    "esrgan": {"mid_channels": 8, "num_blocks": 1, "growth_channels": 4},
    "bsrgan": {"mid_channels": 8, "num_blocks": 1, "growth_channels": 4},
}
PARAMS_C3 = {"srgan": 1_552_193, "esrgan": 16_695_681, "bsrgan": 11_659_713}
