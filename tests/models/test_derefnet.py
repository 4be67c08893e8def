"""DeRefNet: deformable convolution, true-index time encoding, window independence, gradients."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from csist_jax.models.derefnet import DeRefNet, deform_conv3
from csist_jax.train.losses import derefnet_loss
from tests import helpers


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
    """A one-stage DeRefNet of 8 channels, three 3-frame windows and their centre indices; ``apply`` is
    its compiled ``apply`` (one compile per batch size, shared by the tests)."""
    net = DeRefNet(c=1, stages=1, channels=8, residual_blocks=1)
    windows = jax.random.uniform(jax.random.PRNGKey(2), (3, 3, 11, 11)) * 255.0
    index = jnp.array([2, 9, 17])
    variables = helpers.init(net, windows, index, seed=3)
    return net, variables, windows, index


@pytest.fixture(scope="module")
def apply(small):
    return jax.jit(small[0].apply, static_argnames="return_aux")


def test_window_output_does_not_depend_on_its_batch(small, apply):
    net, variables, windows, index = small
    whole = apply(variables, windows, index)
    for k in range(3):
        alone = apply(variables, windows[k : k + 1], index[k : k + 1])
        np.testing.assert_allclose(alone[0], whole[k], rtol=1e-5, atol=1e-4)


def test_time_encoding_uses_the_true_frame_index(small, apply):
    net, variables, windows, index = small
    # make the time encoding matter: a non-trivial linear map
    params = jax.tree_util.tree_map(lambda a: a, variables["params"])
    params["time_encoding"]["kernel"] = jax.random.normal(
        jax.random.PRNGKey(4), params["time_encoding"]["kernel"].shape
    )
    v = {**variables, "params": params}
    a = apply(v, windows[:1], jnp.array([2]))
    b = apply(v, windows[:1], jnp.array([12]))
    assert float(jnp.max(jnp.abs(a - b))) > 1e-3
    # the same window and index give the same output wherever it sits in the batch
    swapped = apply(v, windows[::-1], index[::-1])
    np.testing.assert_allclose(swapped[::-1], apply(v, windows, index), rtol=1e-5, atol=1e-4)


def test_gradients_reach_every_parameter_including_the_offsets(small, apply):
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
        out, aux = apply({**variables, "params": params}, windows, index, return_aux=True)
        return derefnet_loss(out, aux, label)[0]

    grads = jax.jit(jax.grad(loss))(params)
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


def _toolkit_loss_numpy(final, labels, x, aligned, sym, window):
    """The toolkit's loss for one trajectory batch, written as its loops (``DeRefNet_det.py``): ``final``
    ``[n_windows, P]``, ``labels`` ``[n_frames, P]``, ``x`` ``[n_frames, P]`` (the unfolded maps before the
    time encoding), ``aligned`` ``[n_windows, T - 1, P]``, ``sym`` ``[stages, n_frames, P]``."""
    half = window // 2
    constraint = sum(np.mean(s**2) for s in sym)
    align = sum(np.sum(np.abs(aligned[i] - x[i + half][None])) for i in range(len(final)))
    regression = sum(np.mean((final[i] - labels[i + half]) ** 2) for i in range(len(final)))
    return 0.1 * constraint + regression + 0.1 * align


def _hand_case(window=3, n_frames=6, pixels=(2, 2), stages=2, seed=0):
    """One whole trajectory cut into its windows, with random maps: the toolkit's inputs and ours."""
    rng = np.random.default_rng(seed)
    n_windows, half = n_frames - window + 1, window // 2
    final = rng.normal(size=(n_windows, *pixels))
    labels = rng.normal(size=(n_frames, *pixels))
    x = rng.normal(size=(n_frames, *pixels))
    aligned = rng.normal(size=(n_windows, window - 1, *pixels))
    sym = rng.normal(size=(stages, n_frames, *pixels, 1))
    frames = np.arange(half, n_frames - half)[:, None] + np.arange(-half, half + 1)  # [n_windows, T]
    aux = {
        "sym": [jnp.asarray(s[frames].reshape(n_windows * window, *pixels, 1)) for s in sym],
        "aligned": jnp.asarray(aligned),
        "centre": jnp.asarray(x[frames[:, half]]),
        "frame": jnp.asarray(frames),
    }
    flat = (final.reshape(n_windows, -1), labels.reshape(n_frames, -1), x.reshape(n_frames, -1))
    toolkit = _toolkit_loss_numpy(
        *flat, aligned.reshape(n_windows, window - 1, -1), sym.reshape(stages, n_frames, -1), window
    )
    return jnp.asarray(final), aux, jnp.asarray(labels[frames[:, half]]), toolkit, n_windows


def test_toolkit_objective_is_the_toolkits_loss_over_its_windows():
    final, aux, label, toolkit, n_windows = _hand_case()
    loss, parts = derefnet_loss(final, aux, label, n_frames=6)
    # one toolkit batch (a whole trajectory's windows): the toolkit's value divided by the window count
    np.testing.assert_allclose(float(loss) * n_windows, toolkit, rtol=1e-6)
    # any order and any split of the windows trains the same objective (a mean of per-window terms)
    halves = [
        derefnet_loss(*_select(final, aux, label, k), n_frames=6)[0] for k in (slice(0, 2), slice(2, 4))
    ]
    np.testing.assert_allclose(float(loss), float(np.mean(halves)), rtol=1e-6)


def _select(final, aux, label, k):
    n, window = aux["frame"].shape
    sym = [s.reshape(n, window, *s.shape[1:])[k].reshape(-1, *s.shape[1:]) for s in aux["sym"]]
    return final[k], {**{key: v[k] for key, v in aux.items() if key != "sym"}, "sym": sym}, label[k]


def test_loss_terms_on_a_hand_computable_case():
    # a 5-frame trajectory of 1x1 maps, windows of 3 (centres 1, 2, 3), one stage
    frames = np.array([[0, 1, 2], [1, 2, 3], [2, 3, 4]])
    sym_per_frame = np.array([1.0, 2.0, 3.0, 4.0, 5.0])  # residual of frame f; squared: 1, 4, 9, 16, 25
    aux = {
        "sym": [jnp.asarray(sym_per_frame[frames].reshape(9, 1, 1, 1))],
        "aligned": jnp.array([[[[1.0]], [[3.0]]], [[[0.0]], [[0.0]]], [[[2.0]], [[2.0]]]]),  # [3, 2, 1, 1]
        "centre": jnp.array([[[2.0]], [[1.0]], [[2.0]]]),  # before the time encoding
        "encoded_centre": jnp.full((3, 1, 1), 100.0),  # never the target
        "frame": jnp.asarray(frames),
    }
    out, label = jnp.array([[[1.0]], [[2.0]], [[3.0]]]), jnp.array([[[0.0]], [[0.0]], [[1.0]]])
    loss, parts = derefnet_loss(out, aux, label, n_frames=5)
    # regression: (1 + 4 + 4) / 3; symmetry: the mean over the 5 DISTINCT frames, (1+4+9+16+25)/5 = 11;
    # alignment, summed per window: |1-2| + |3-2| = 2, 1 + 1 = 2, 0 + 0 = 0 -> mean 4/3
    np.testing.assert_allclose(float(parts["regression"]), 3.0, rtol=1e-6)
    np.testing.assert_allclose(float(parts["symmetry"]), 11.0, rtol=1e-6)
    np.testing.assert_allclose(float(parts["alignment"]), 4.0 / 3.0, rtol=1e-6)
    # toolkit: 0.1 * 11 + (sum of the 3 MSEs = 9) + 0.1 * (sum of the errors = 4), per window / 3
    np.testing.assert_allclose(float(loss), (0.1 * 11.0 + 9.0 + 0.1 * 4.0) / 3.0, rtol=1e-6)
    # the paper's weights (1, 0.01, 0.01), alignment a mean over the 2 neighbour maps of 1 pixel
    paper, paper_parts = derefnet_loss(out, aux, label, n_frames=5, objective="paper")
    np.testing.assert_allclose(float(paper_parts["alignment"]), 2.0 / 3.0, rtol=1e-6)
    np.testing.assert_allclose(float(paper), 3.0 + 0.01 * 11.0 + 0.01 * 2.0 / 3.0, rtol=1e-6)


def test_frame_multiplicity_counts_each_frame_once_per_trajectory():
    from csist_jax.train.losses import frame_multiplicity

    counts = np.asarray(frame_multiplicity(jnp.arange(20), 5, 20))
    np.testing.assert_array_equal(counts, [1, 2, 3, 4] + [5] * 12 + [4, 3, 2, 1])
    assert counts.sum() == 16 * 5


def test_alignment_target_is_the_centre_before_the_time_encoding(small, apply):
    net, variables, windows, index = small
    _, aux = apply(variables, windows, index, return_aux=True)
    params = dict(variables["params"])
    params["time_encoding"] = {
        **params["time_encoding"],
        "bias": params["time_encoding"]["bias"] + 1.0,
    }
    _, moved = apply({**variables, "params": params}, windows, index, return_aux=True)
    assert float(jnp.max(jnp.abs(moved["aligned"] - aux["aligned"]))) > 1e-4
    assert float(jnp.max(jnp.abs(moved["encoded_centre"] - aux["encoded_centre"]))) > 1e-4
    np.testing.assert_array_equal(moved["centre"], aux["centre"])
    np.testing.assert_array_equal(aux["frame"], np.asarray(index)[:, None] + np.arange(-1, 2))


def test_deformable_kernels_start_as_mmcv_and_offsets_at_zero():
    net = DeRefNet(c=1, stages=1, channels=32, residual_blocks=1)
    windows = jnp.zeros((1, 3, 11, 11))
    params = helpers.init(net, windows, jnp.array([5]), seed=7)["params"]  # the initialisers' draws
    bound = np.sqrt(6.0 / (9 * 32))  # kaiming_uniform_(nonlinearity="relu"), fan_in = 9 x 32
    for name in ("align1", "align2"):
        kernel = np.asarray(params[name]["kernel"])
        assert kernel.shape == (3, 3, 32, 32)
        assert np.max(np.abs(kernel)) <= bound and np.max(np.abs(kernel)) > 0.95 * bound
        np.testing.assert_allclose(np.std(kernel), bound / np.sqrt(3.0), rtol=0.05)
        assert not np.any(params[name]["offset"]["kernel"]) and not np.any(params[name]["offset"]["bias"])


def test_bad_objective_names_the_argument():
    final, aux, label, _, _ = _hand_case()
    with pytest.raises(ValueError, match="objective"):
        derefnet_loss(final, aux, label, n_frames=6, objective="mean")
    with pytest.raises(ValueError, match="frame"):
        derefnet_loss(final, {**aux, "frame": aux["frame"][:, :2]}, label, n_frames=6)
