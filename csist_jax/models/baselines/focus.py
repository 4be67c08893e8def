"""FOCUS, the one-stage unmixing network of Zhai, Wang, Liu, Chen, Wang, Guo, Cheng and Dai, "Beyond
Unfolding: 60x Faster One-Stage Unmixing for Closely-Spaced Infrared Small Targets" (arXiv preprint, same
group as DISTA-Net and SeqCSIST), as the GrokCSO toolkit trains it (``configs/c_3/FOCUS.py``: the class
defaults, ``FOCUS_bb(upscale_factor=3)``).

Two isomorphic source-generation units (ISGU). An ISGU with ratio ``r`` on one channel: 5x5 conv 1 -> 64,
ReLU, 3x3 conv 64 -> 32, ReLU, then two 3x3 heads 32 -> ``r^2``, an intensity head and a mask head, each
pixel-shuffled by ``r``; its output is ``intensity * sigmoid(mask)`` (a sparse map gated by a per-cell
probability). The first ISGU (``r = c``) maps the 11 x 11 frame to the coarse HR map; a single-slope PReLU
follows; the second ISGU (``r = 1``, on the HR grid) predicts a residual added to the activated coarse map:

    coarse = ISGU_c(z),    a = PReLU(coarse),    x = a + ISGU_1(a).

Input: the raw 0..255 frame (the toolkit feeds the 8-bit image unnormalised; in training it adds Gaussian
noise of a standard deviation drawn from U(0.001, 0.05) on that scale, which we leave to the data
pipeline). The sub-pixel head is one pixel shuffle by ``c`` (as the toolkit's ``nn.PixelShuffle(c)``),
valid for every ``c``: nothing to generalise.

Parameters at c = 3: 46,037 (ISGU_3 25,330; ISGU_1 20,706; PReLU 1), exactly the toolkit's
``sum(p.numel() for p in FOCUS_bb(3).parameters())`` (no frozen tensors, no normalisation layers). Neither
published table prints a parameter count for FOCUS; its paper gives 122,522 FPS on a GPU and 1.63G FLOPs
per batch of 64, which is our convolution count: 121 x 25,216 + 1,089 x 20,608 = 25.5M MACs per image,
x 64 = 1.63G.

``forward`` returns the HR map and, in ``aux``, one dict per ISGU with its ``"intensity"`` and ``"mask"``
(the sigmoid probabilities) HR maps and its output (``"coarse"`` before the PReLU, ``"residual"``), and
in the first dict the input's energy ``"lr_energy"`` ``[n]`` (the sum of the frame's pixels): what
:func:`focus_loss` (the toolkit's objective) reads. None of these keys is ``"sym"``, so the project's
standard single-frame loss trains FOCUS on the regression term alone.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax.numpy as jnp
from jaxtyping import Array, Float

from csist_jax.models.baselines import blocks
from csist_jax.models.layers import SuperResolutionNetwork

#: weights of the toolkit's energy and sparsity terms (``FOCUS_det.py``); the regression term has weight 1
ENERGY_WEIGHT = 0.1
SPARSITY_WEIGHT = 0.01


class ISGU(nn.Module):
    """One isomorphic source-generation unit: features, intensity and mask heads, pixel shuffle by
    ``ratio``, ``intensity * sigmoid(mask)``. Returns ``(out, intensity, mask)`` as one-channel NHWC maps."""

    ratio: int
    features1: int = 64
    features2: int = 32
    kernel1: int = 5

    @nn.compact
    def __call__(self, x):
        r2 = self.ratio * self.ratio
        h = nn.relu(blocks.conv(self.features1, 1, self.kernel1, name="conv1")(x))
        h = nn.relu(blocks.conv(self.features2, self.features1, 3, name="conv2")(h))
        intensity = blocks.pixel_shuffle(blocks.conv(r2, self.features2, 3, name="intensity")(h), self.ratio)
        mask = nn.sigmoid(
            blocks.pixel_shuffle(blocks.conv(r2, self.features2, 3, name="mask")(h), self.ratio)
        )
        return intensity * mask, intensity, mask


class FOCUS(SuperResolutionNetwork):
    """``features1``, ``features2``: the widths of each ISGU's two feature convolutions (published 64 and
    32); ``kernel1``: the first convolution's kernel size (published 5)."""

    features1: int = 64
    features2: int = 32
    kernel1: int = 5

    LOSS_OPTIONS = ()  # its published loss has no config weights

    @staticmethod
    def objective(out, aux, labels):
        """The toolkit's loss (:func:`focus_loss`), this network's training loss (its ``objective``)."""
        return focus_loss(out, aux, labels)

    def forward(self, z):
        widths = dict(features1=self.features1, features2=self.features2, kernel1=self.kernel1)
        coarse, intensity1, mask1 = ISGU(self.c, **widths, name="stage1")(z[..., None])
        act = blocks.PReLU(name="prelu")(coarse)
        residual, intensity2, mask2 = ISGU(1, **widths, name="stage2")(act)
        x = act + residual
        aux = [
            {
                "intensity": blocks.to_map(intensity1),
                "mask": blocks.to_map(mask1),
                "coarse": blocks.to_map(coarse),
                "lr_energy": jnp.sum(z, axis=(1, 2)),
            },
            {
                "intensity": blocks.to_map(intensity2),
                "mask": blocks.to_map(mask2),
                "residual": blocks.to_map(residual),
            },
        ]
        return blocks.to_map(x), aux


def focus_loss(
    maps: Float[Array, "n hr hr"],
    aux: Sequence[dict],
    labels: Float[Array, "n hr hr"],
    *,
    energy_weight=ENERGY_WEIGHT,
    sparsity_weight=SPARSITY_WEIGHT,
) -> tuple[Float[Array, ""], dict]:
    """The toolkit's FOCUS objective (GrokCSO ``FOCUS_det.py``, mode ``"loss"``), on the raw 0..255 scale:

        L = mean((x - s)^2) + 0.1 * mean_i |sum(x_i) - sum(z_i)| + 0.01 * mean(|x|)

    ``x`` the HR maps ``maps`` ``[n, hr, hr]``, ``s`` the HR ``labels``, ``z_i`` the input frame of sample
    ``i``: both means of squares and of absolute values run over every element of the batch; the energy
    term is the mean over samples of the absolute difference between the HR map's total and the frame's
    total (flux conservation; the toolkit takes the frame before its training noise). ``aux`` is
    ``FOCUS.apply(..., return_aux=True)[1]``: the frame totals are read from the ``"lr_energy"`` entry
    (``[n]``) of its dicts (``KeyError`` if none has one).

    Returns ``(loss, parts)`` with ``parts`` the unweighted terms ``{"mse", "energy", "sparsity"}``
    (``loss = mse + energy_weight * energy + sparsity_weight * sparsity``). Computed in at least float32.
    """
    lr_energy = next((a["lr_energy"] for a in aux if "lr_energy" in a), None)
    if lr_energy is None:
        raise KeyError("focus_loss: no aux dict holds 'lr_energy' (the input frames' totals)")
    dtype = jnp.promote_types(jnp.result_type(maps), jnp.float32)
    x = jnp.asarray(maps).astype(dtype)
    mse = jnp.mean((x - labels) ** 2)
    energy = jnp.mean(jnp.abs(jnp.sum(x.reshape(x.shape[0], -1), axis=-1) - jnp.asarray(lr_energy, dtype)))
    sparsity = jnp.mean(jnp.abs(x))
    parts = {"mse": mse, "energy": energy, "sparsity": sparsity}
    return mse + energy_weight * energy + sparsity_weight * sparsity, parts


SMALL = {"focus": {"features1": 16, "features2": 8}}
PARAMS_C3 = {"focus": 46_037}
