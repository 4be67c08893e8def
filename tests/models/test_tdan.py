"""TDAN (csist_jax.models.baselines.tdan): grouped deformable conv, output shapes, one training step,
window independence, the published parameter count and the toolkit's loss on a hand-computed case."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from csist_jax import models, physics
from csist_jax.models.baselines import tdan
from csist_jax.models.baselines.tdan import TDAN, grouped_deform_conv3, tdan_loss
from csist_jax.models.derefnet import deform_conv3
from csist_jax.physics import psf
from tests import helpers
from tests.helpers import assert_adam_step_lowers, assert_batch_independent


def _small(c=3):
    return TDAN(c=c, **tdan.SMALL["tdan"])


@pytest.fixture(scope="module")
def data():
    """Three 5-frame windows of two targets drifting apart along a row (0.04 px per frame), centre
    frames 2, 7 and 13 of one trajectory."""
    frame = np.array([2, 7, 13], np.int32)
    t = frame[:, None] + np.arange(-2, 3)  # [3, 5] frame indices
    x = np.stack([4.8 - 0.04 * t, 5.3 + 0.04 * t], axis=-1)  # [3, 5, 2] rows
    y = np.broadcast_to(np.array([5.1, 5.6]), x.shape)
    targets = np.stack([x, y, np.broadcast_to(np.array([230.0, 240.0]), x.shape)], axis=-1)
    return {
        "image": jnp.round(psf.render(jnp.asarray(targets, jnp.float32))),
        "frame": jnp.asarray(frame),
        "label": jnp.asarray(physics.hr_label(targets[:, 2], 3)),
    }


def test_grouped_deform_conv_matches_the_single_group_sum():
    grouped = jax.jit(grouped_deform_conv3, static_argnums=3)
    single = jax.jit(deform_conv3)
    kx, ko, kk = jax.random.split(jax.random.PRNGKey(0), 3)
    x = jax.random.normal(kx, (2, 7, 7, 4))
    offsets = 0.7 * jax.random.normal(ko, (2, 7, 7, 36))
    kernel = jax.random.normal(kk, (3, 3, 4, 3))
    # two groups: channels 0-1 with offsets 0-17, channels 2-3 with offsets 18-35, outputs added
    expected = single(x[..., :2], offsets[..., :18], kernel[:, :, :2]) + single(
        x[..., 2:], offsets[..., 18:], kernel[:, :, 2:]
    )
    np.testing.assert_allclose(grouped(x, offsets, kernel, 2), expected, rtol=1e-5, atol=1e-5)
    one = grouped(x, offsets[..., :18], kernel, 1)
    np.testing.assert_allclose(one, single(x, offsets[..., :18], kernel), rtol=1e-6, atol=1e-6)
    # zero offsets: a plain 3x3 conv with zero padding
    plain = jax.lax.conv_general_dilated(
        x, kernel, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
    )
    zero = grouped(x, jnp.zeros((2, 7, 7, 36)), kernel, 2)
    np.testing.assert_allclose(zero, plain, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("c", [3, 5])
def test_hr_map_of_the_centre_frame_at_c3_and_c5(c):
    module = _small(c)
    windows = jax.ShapeDtypeStruct((2, 5, 11, 11), jnp.float32)
    index = jax.ShapeDtypeStruct((2,), jnp.int32)
    variables = jax.eval_shape(module.init, jax.random.PRNGKey(0), windows, index)
    out, aux = jax.eval_shape(
        lambda v, w, i: module.apply(v, w, i, return_aux=True), variables, windows, index
    )
    assert out.shape == (2, 11 * c, 11 * c) and out.dtype == jnp.float32
    assert aux["aligned"].shape == (2, 4, 11, 11) and aux["centre"].shape == (2, 11, 11)
    assert aux["frame"].shape == (2, 5) and aux["sym"] == []
    assert "constants" not in variables  # TDAN uses neither Q nor the operator: it holds no Q


def test_parameter_count_at_published_size():
    module = TDAN(c=3)
    windows = jax.ShapeDtypeStruct((1, 5, 11, 11), jnp.float32)
    index = jax.ShapeDtypeStruct((1,), jnp.int32)
    variables = jax.eval_shape(module.init, jax.random.PRNGKey(0), windows, index)
    assert models.param_count(variables) == tdan.PARAMS_C3["tdan"] == 584_833


def test_one_adam_step_lowers_the_mse_and_windows_are_independent(data):
    module = _small()
    x, frame, labels = data["image"], data["frame"], data["label"]
    variables = helpers.init(module, x[:1], frame[:1], seed=1)
    constants = variables.get("constants", {})

    def loss(params):
        out = module.apply({"params": params, "constants": constants}, x, frame)
        return jnp.mean((out - labels) ** 2)

    assert_adam_step_lowers(loss, variables["params"])
    # window independence: each window alone, and the batch reversed, match the full batch
    apply = jax.jit(module.apply)
    assert_batch_independent(lambda *a: apply(variables, *a), (x, frame))


def test_tdan_loss_by_hand():
    """One window of T = 3 frames of 1x1 'images', HR map 2x2: squared errors 1, 0, 4, 1 -> regression
    1.5; aligned neighbours 2 and 5 against the centre 3 -> (1 + 4) / (3 frames x 1 pixel) = 5/3;
    loss = 1.5 + 0.01 * 5/3."""
    out = jnp.array([[[1.0, 0.0], [2.0, 1.0]]])
    label = jnp.array([[[0.0, 0.0], [0.0, 0.0]]])
    aux = {"aligned": jnp.array([[[[2.0]], [[5.0]]]]), "centre": jnp.array([[[3.0]]])}
    loss, parts = tdan_loss(out, aux, label)
    np.testing.assert_allclose(float(parts["regression"]), 1.5, rtol=1e-7)
    np.testing.assert_allclose(float(parts["alignment"]), 5.0 / 3.0, rtol=1e-6)
    np.testing.assert_allclose(float(loss), 1.5 + 0.01 * 5.0 / 3.0, rtol=1e-6)
    # two windows (the second predicts a zero map exactly, same alignment): batch means
    two = {k: jnp.concatenate([v, v]) for k, v in aux.items()}
    _, parts2 = tdan_loss(jnp.concatenate([out, out * 0]), two, jnp.concatenate([label, label]))
    np.testing.assert_allclose(float(parts2["regression"]), 0.75, rtol=1e-7)
    np.testing.assert_allclose(float(parts2["alignment"]), 5.0 / 3.0, rtol=1e-6)
