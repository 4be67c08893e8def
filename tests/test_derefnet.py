"""DeRefNet: deformable convolution, true-index time encoding, window independence, gradients."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from csist_jax.models.derefnet import DeRefNet, deform_conv3
from csist_jax.train.losses import derefnet_loss


def _plain_conv3(x, kernel):
    return jax.lax.conv_general_dilated(x, kernel, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))


def test_deform_conv_with_zero_offsets_is_a_plain_conv():
    kx, kk = jax.random.split(jax.random.PRNGKey(0))
    x = jax.random.normal(kx, (2, 9, 9, 4))
    kernel = jax.random.normal(kk, (3, 3, 4, 5))
    out = deform_conv3(x, jnp.zeros((2, 9, 9, 18)), kernel)
    np.testing.assert_allclose(out, _plain_conv3(x, kernel), rtol=1e-5, atol=1e-5)


def test_deform_conv_integer_offset_shifts_the_input():
    kx, kk = jax.random.split(jax.random.PRNGKey(1))
    x = jax.random.normal(kx, (1, 9, 9, 3))
    kernel = jax.random.normal(kk, (3, 3, 3, 2))
    offsets = jnp.zeros((1, 9, 9, 18)).at[..., 0::2].set(1.0)  # every tap reads one row further down
    shifted = jnp.pad(x[:, 1:], ((0, 0), (0, 1), (0, 0), (0, 0)))
    # row 0 differs by construction: its top tap reads x[0] through the offset, padding in the shifted copy
    np.testing.assert_allclose(
        deform_conv3(x, offsets, kernel)[:, 1:], _plain_conv3(shifted, kernel)[:, 1:], rtol=1e-5, atol=1e-5
    )
    # half a pixel: the mean of the two neighbouring integer shifts (bilinear)
    half = deform_conv3(x, offsets * 0.5, kernel)
    expected = 0.5 * (_plain_conv3(x, kernel) + _plain_conv3(shifted, kernel))
    np.testing.assert_allclose(half[:, 1:-1, 1:-1], expected[:, 1:-1, 1:-1], rtol=1e-5, atol=1e-5)


@pytest.fixture(scope="module")
def small():
    net = DeRefNet(c=1, stages=1, channels=8, residual_blocks=1)
    windows = jax.random.uniform(jax.random.PRNGKey(2), (3, 3, 11, 11)) * 255.0
    index = jnp.array([2, 9, 17])
    variables = net.init(jax.random.PRNGKey(3), windows, index)
    return net, variables, windows, index


def test_window_output_does_not_depend_on_its_batch(small):
    net, variables, windows, index = small
    whole = net.apply(variables, windows, index)
    for k in range(3):
        alone = net.apply(variables, windows[k : k + 1], index[k : k + 1])
        np.testing.assert_allclose(alone[0], whole[k], rtol=1e-5, atol=1e-4)


def test_time_encoding_uses_the_true_frame_index(small):
    net, variables, windows, index = small
    # make the time encoding matter: a non-trivial linear map
    params = jax.tree_util.tree_map(lambda a: a, variables["params"])
    params["time_encoding"]["kernel"] = jax.random.normal(
        jax.random.PRNGKey(4), params["time_encoding"]["kernel"].shape
    )
    v = {**variables, "params": params}
    a = net.apply(v, windows[:1], jnp.array([2]))
    b = net.apply(v, windows[:1], jnp.array([12]))
    assert float(jnp.max(jnp.abs(a - b))) > 1e-3
    # the same window and index give the same output wherever it sits in the batch
    swapped = net.apply(v, windows[::-1], index[::-1])
    np.testing.assert_allclose(swapped[::-1], net.apply(v, windows, index), rtol=1e-5, atol=1e-4)


def test_gradients_reach_every_parameter_including_the_offsets(small):
    net, variables, windows, index = small
    label = jnp.zeros((3, 11, 11)).at[:, 5, 5].set(230.0)
    # the offset convs start at zero (alignment starts as a plain conv), which blocks the gradient to the
    # attention that drives them; move them off zero to see every path
    params = dict(variables["params"])
    for name in ("align1", "align2"):
        offset = dict(params[name]["offset"])
        offset["kernel"] = 1e-2 * jax.random.normal(jax.random.PRNGKey(5), offset["kernel"].shape)
        params[name] = {**params[name], "offset": offset}

    def loss(params):
        out, aux = net.apply({**variables, "params": params}, windows, index, return_aux=True)
        return derefnet_loss(out, aux, label)[0]

    grads = jax.grad(loss)(params)
    flat = jax.tree_util.tree_flatten_with_path(grads)[0]
    for path, g in flat:
        assert np.all(np.isfinite(g)), path
        assert float(jnp.max(jnp.abs(g))) > 0.0, f"no gradient reaches {jax.tree_util.keystr(path)}"


@pytest.mark.parametrize(
    "windows,index,match",
    [
        (jnp.zeros((2, 4, 11, 11)), jnp.zeros(2), "windows"),
        (jnp.zeros((2, 5, 10, 11)), jnp.zeros(2), "windows"),
        (jnp.zeros((2, 5, 11, 11)), jnp.zeros(3), "centre_index"),
    ],
)
def test_bad_input_names_the_argument(windows, index, match):
    with pytest.raises(ValueError, match=match):
        DeRefNet(c=1, stages=1, channels=4, residual_blocks=1).init(jax.random.PRNGKey(0), windows, index)


def test_create_builds_derefnet_with_the_published_stage_count():
    from csist_jax import models

    net = models.create("derefnet", c=3)
    assert isinstance(net, DeRefNet) and net.stages == 9
    assert "derefnet" in models.SEQUENCE_MODEL_NAMES and "derefnet" not in models.MODEL_NAMES


def test_training_steps_reduce_the_loss(small):
    import optax

    from experiments.train_derefnet import make_train_step

    net, variables, windows, index = small
    label = jnp.zeros((3, 11, 11)).at[:, 5, 5].set(230.0)
    params = variables["params"]
    constants = {k: v for k, v in variables.items() if k != "params"}
    tx = optax.adam(1e-3)
    opt_state = tx.init(params)
    step = make_train_step(net, tx)
    losses = []
    for _ in range(6):
        params, opt_state, loss, _ = step(params, opt_state, constants, windows, index, label)
        losses.append(float(loss))
    assert all(np.isfinite(losses)) and losses[-1] < losses[0]
