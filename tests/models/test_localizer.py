"""The learned localisers: the loss against a hand computation, gradients into every head, batch
independence, the point format CSO-mAP reads; the window localiser's kind, one step and batch
independence (a tiny run through ``train_and_evaluate``: e2e/test_train.py)."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from csist_jax import metrics, models, physics, train
from csist_jax.data import csist100k, seqcsist
from csist_jax.models import kinds, localizer
from csist_jax.train import losses
from tests import helpers

#: frames per generated set (the generator shape of the localiser run in e2e/test_train.py too)
N = 32


@pytest.fixture(scope="module")
def frames():
    data = csist100k.generate(seed=3, n=N)
    return {k: v[:8] for k, v in data.items()}


@pytest.fixture(scope="module")
def small(frames):
    net = models.create("localizer", c=3, stages=1, channels=8)
    variables = helpers.init(net, jnp.asarray(frames["image"], jnp.float32), seed=1)
    return net, variables


@pytest.fixture(scope="module")
def apply(small):
    """The small localiser's compiled ``apply`` (one compile per batch size, shared by the tests)."""
    return jax.jit(small[0].apply)


def test_localizer_is_registered_apart_from_the_map_networks(small):
    net, variables = small
    assert "localizer" in models.LOCALIZER_NAMES and "localizer" not in models.MODEL_NAMES
    assert models.is_localizer(net) and not models.is_localizer(models.create("ista_net", stages=1))
    assert set(variables) == {"params", "constants"}
    assert variables["constants"]["q_init"].shape == (33 * 33, 121)
    train.config.check(train.config.resolve({"model": {"name": "localizer"}}))


def test_outputs_have_the_documented_shapes_and_ranges(small, apply, frames):
    net, variables = small
    out = apply(variables, jnp.asarray(frames["image"], jnp.float32))
    assert out["logit"].shape == (8, 33, 33)
    assert out["position"].shape == (8, 33, 33, 2)
    assert out["brightness"].shape == (8, 33, 33)
    assert out["log_std"].shape == (8, 33, 33, 3)
    # a position stays within `reach` cells of its cell centre (SPEC sec. 2 grid)
    centres = np.asarray(physics.hr_cell_centres(3))
    dx = np.asarray(out["position"][..., 0]) - centres[None, :, None]
    dy = np.asarray(out["position"][..., 1]) - centres[None, None, :]
    assert np.abs(dx).max() <= net.reach / 3 + 1e-6 and np.abs(dy).max() <= net.reach / 3 + 1e-6
    log_std = np.asarray(out["log_std"])
    assert log_std[..., :2].min() >= localizer.POSITION_LOG_STD[0] - 1e-6
    assert log_std[..., 2].max() <= localizer.BRIGHTNESS_LOG_STD[1] + 1e-6
    assert np.all(np.asarray(out["brightness"]) > 0)


def test_fold_and_unfold_follow_the_grid_convention():
    hr = np.arange(2 * 6 * 6, dtype=np.float32).reshape(2, 6, 6)
    folded = np.asarray(localizer.fold(jnp.asarray(hr), 3))
    # LR pixel (1, 0) holds HR rows 3..5, columns 0..2, row-major
    np.testing.assert_array_equal(folded[1, 1, 0], hr[1, 3:6, 0:3].reshape(-1))
    back = np.asarray(localizer.unfold(jnp.asarray(folded), 3))[..., 0]
    np.testing.assert_array_equal(back, hr)


def _log_normal(t, mean, log_s):
    return sum(
        -0.5 * ((t[d] - mean[d]) / math.exp(log_s[d])) ** 2 - log_s[d] - 0.5 * math.log(2 * math.pi)
        for d in range(3)
    )


def test_loss_matches_a_hand_computed_case():
    # a 2 x 2 frame at c = 1: four cells centred on (0,0), (0,1), (1,0), (1,1)
    logit = np.array([[[2.0, -1.0], [0.5, -3.0]]], np.float32)
    position = np.array([[[[0.1, -0.1], [0.0, 1.2]], [[0.9, 0.2], [1.0, 1.0]]]], np.float32)
    brightness = np.array([[[230.0, 200.0], [240.0, 100.0]]], np.float32)
    log_std = np.array(
        [[[[-2.0, -1.5, 2.0], [0.0, 0.0, 3.0]], [[-1.0, -2.5, 1.0], [-0.5, -0.5, 2.5]]]], np.float32
    )
    # two real targets in cells (0, 0) and (1, 0), one padding row
    targets = np.array([[[0.2, 0.1, 235.0], [0.8, -0.1, 225.0], [0.0, 0.0, 0.0]]], np.float32)
    outputs = {
        k: jnp.asarray(v)
        for k, v in dict(logit=logit, position=position, brightness=brightness, log_std=log_std).items()
    }

    p = 1 / (1 + np.exp(-logit[0].astype(np.float64)))
    y = np.array([[1.0, 0.0], [1.0, 0.0]])
    bernoulli = -np.sum(y * np.log(p) + (1 - y) * np.log(1 - p))
    w = p / p.sum()
    mixture = 0.0
    for t in targets[0, :2].astype(np.float64):
        total = 0.0
        for i in range(2):
            for j in range(2):
                mean = (*position[0, i, j], brightness[0, i, j])
                total += w[i, j] * math.exp(_log_normal(t, mean, log_std[0, i, j]))
        mixture -= math.log(total)
    expected, variance = p.sum(), (p * (1 - p)).sum()
    count_nll = 0.5 * (2 - expected) ** 2 / variance + 0.5 * math.log(2 * math.pi * variance)

    loss, parts = losses.localizer_loss(outputs, targets, c=1, count_weight=0.5)
    np.testing.assert_allclose(float(parts["bernoulli"]), bernoulli, rtol=1e-5)
    np.testing.assert_allclose(float(parts["mixture"]), mixture, rtol=1e-5)
    np.testing.assert_allclose(float(parts["count"]), count_nll, rtol=1e-4)
    np.testing.assert_allclose(float(loss), bernoulli + mixture + 0.5 * count_nll, rtol=1e-5)
    # the count is read from the padding (brightness 0) unless given
    loss_given, _ = losses.localizer_loss(outputs, targets, jnp.array([2]), c=1, count_weight=0.5)
    assert float(loss_given) == float(loss)
    with pytest.raises(ValueError, match="targets"):
        losses.localizer_loss(outputs, targets[0], c=1)


def test_gradients_are_finite_and_reach_every_head(small, frames):
    net, variables = small
    images = jnp.asarray(frames["image"], jnp.float32)
    targets = jnp.asarray(frames["targets"])

    def objective(params):
        out = net.apply({"params": params, "constants": variables["constants"]}, images)
        return losses.localizer_loss(out, targets, images=images, count_weight=1.0, physics_weight=1e-3)[0]

    grads = jax.jit(jax.grad(objective))(variables["params"])
    for path, g in jax.tree_util.tree_leaves_with_path(grads):
        g = np.asarray(g)
        assert np.all(np.isfinite(g)), path
        assert np.any(g != 0), path
    # the head's kernel: every one of the seven per-cell values receives a gradient
    head = np.abs(np.asarray(grads["head"]["kernel"])).reshape(-1, 9, len(localizer.HEADS))
    assert np.all(head.sum(axis=(0, 1)) > 0), head.sum(axis=(0, 1))


def test_a_sample_does_not_depend_on_its_batch(small, apply, frames):
    net, variables = small
    images = jnp.asarray(frames["image"], jnp.float32)
    whole = apply(variables, images)
    alone = apply(variables, images[2:3])
    reordered = apply(variables, images[::-1])
    for key in whole:
        scale = float(jnp.max(jnp.abs(whole[key]))) + 1e-6
        np.testing.assert_allclose(alone[key][0], whole[key][2], atol=1e-5 * scale, err_msg=key)
        np.testing.assert_allclose(reordered[key][5], whole[key][2], atol=1e-5 * scale, err_msg=key)


def _perfect_outputs(targets, count, c=3, size=11):
    """Outputs that put each real target in its cell with a confident, small position error."""
    hr = size * c
    n = targets.shape[0]
    logit = np.full((n, hr, hr), -20.0, np.float32)
    centres = np.asarray(physics.hr_cell_centres(c, size))
    position = (
        np.stack(np.meshgrid(centres, centres, indexing="ij"), -1)[None].repeat(n, 0).astype(np.float32)
    )
    brightness = np.full((n, hr, hr), 235.0, np.float32)
    log_std = np.full((n, hr, hr, 3), -3.0, np.float32)
    for i in range(n):
        for k in range(count[i]):
            x, y, b = targets[i, k]
            I, J = round(c * x + 1), round(c * y + 1)
            logit[i, I, J] = 10.0 - k  # distinct probabilities: a known order
            position[i, I, J] = (x, y)
            brightness[i, I, J] = b
            log_std[i, I, J, :2] = -5.0 + 0.1 * k
    return {
        k: jnp.asarray(v)
        for k, v in dict(logit=logit, position=position, brightness=brightness, log_std=log_std).items()
    }


def test_points_of_a_perfect_output_are_the_targets_and_score_full_map(frames):
    targets, count = frames["targets"], frames["count"]
    found = jax.jit(localizer.points, static_argnames="max_points")(_perfect_outputs(targets, count))
    np.testing.assert_array_equal(np.asarray(found["count"]), count)
    points = np.asarray(found["points"])
    assert points.shape == (8, localizer.MAX_POINTS, 3)
    for i in range(8):
        k = count[i]
        np.testing.assert_allclose(points[i, :k, :2], targets[i, :k, :2], atol=1e-6)
        np.testing.assert_allclose(np.asarray(found["brightness"])[i, :k], targets[i, :k, 2], rtol=1e-6)
        assert np.all(points[i, k:] == 0)
        assert np.all(np.diff(points[i, :k, 2]) < 0)  # most probable and most precise first
    scored = metrics.cso_map_from_points(points, np.asarray(found["count"]), targets, count)
    assert scored["mAP"] > 0.999, scored


def test_points_threshold_and_arguments(frames):
    out = _perfect_outputs(frames["targets"], frames["count"])
    # probabilities sigmoid(10 - k): a threshold between the 2nd and 3rd keeps two per image at most
    found = localizer.points(out, threshold=float(jax.nn.sigmoid(8.5)), max_points=4)
    np.testing.assert_array_equal(np.asarray(found["count"]), np.minimum(frames["count"], 2))
    with pytest.raises(ValueError, match="max_points"):
        localizer.points(out, max_points=33 * 33 + 1)
    with pytest.raises(ValueError, match="missing"):
        localizer.points({"logit": out["logit"]})


def test_points_merge_a_target_split_between_cells_and_keep_close_targets_apart(frames):
    out = {k: np.array(v) for k, v in _perfect_outputs(frames["targets"], frames["count"]).items()}
    out["logit"][:] = -20.0
    # image 0: one target claimed by two neighbouring cells at p = 0.4 each, both pointing at it
    # image 1: two targets 0.5 px apart (above the merge radius), each at p = 0.9 in its own cell
    for i, cells in (
        (0, [((16, 16), (5.1, 5.2)), ((16, 17), (5.1, 5.2))]),
        (1, [((15, 15), (4.8, 5.0)), ((16, 16), (5.3, 5.0))]),
    ):
        for (I, J), xy in cells:
            out["logit"][i, I, J] = math.log(0.4 / 0.6) if i == 0 else math.log(0.9 / 0.1)
            out["position"][i, I, J] = xy
    out = {k: jnp.asarray(v) for k, v in out.items()}
    merged = localizer.points(out)
    np.testing.assert_array_equal(np.asarray(merged["count"])[:2], [1, 2])
    np.testing.assert_allclose(np.asarray(merged["probability"])[0, 0], 0.8, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(merged["points"])[0, 0, :2], [5.1, 5.2], atol=1e-5)
    np.testing.assert_allclose(np.sort(np.asarray(merged["points"])[1, :2, 0]), [4.8, 5.3], atol=1e-5)
    apart = localizer.points(out, merge_radius=0.0)  # unmerged, each half of the split target is below 0.5
    np.testing.assert_array_equal(np.asarray(apart["count"])[:2], [0, 2])


def test_batch_loss_passes_the_count_weight_through(small, frames):
    net, variables = small
    batch = {"image": jnp.asarray(frames["image"], jnp.float32), "targets": jnp.asarray(frames["targets"])}
    base, parts = losses.batch_loss(net, variables, batch)
    weighted, _ = losses.batch_loss(net, variables, batch, {"count_weight": 2.0})
    np.testing.assert_allclose(float(weighted), float(base) + 2.0 * float(parts["count"]), rtol=1e-5)


@pytest.fixture(scope="module")
def window_localizer():
    net = models.create("window_localizer", **models.REGISTRY["window_localizer"].small)
    data = seqcsist.windows(seqcsist.generate(1, 1, noise_std=2.0))
    windows = jnp.asarray(data["image"][:4], jnp.float32)
    frame = jnp.asarray(data["frame"][:4], jnp.int32)
    variables = helpers.init(net, windows, frame)
    return net, variables, windows, frame, jnp.asarray(data["targets"][:4])


def test_window_localizer_is_a_window_points_model_with_the_localiser_heads(window_localizer):
    net, variables, windows, frame, targets = window_localizer
    assert (
        kinds.of(net) == kinds.WINDOW_POINTS
        and models.REGISTRY["window_localizer"].kind == kinds.WINDOW_POINTS
    )
    out = net.apply(variables, windows, frame)
    assert out["logit"].shape == (4, 33, 33) and out["position"].shape == (4, 33, 33, 2)
    found = net.decode(out)
    assert found["points"].shape == (4, 8, 3) and found["count"].shape == (4,)
    with pytest.raises(ValueError, match="windows"):
        net.apply(variables, windows[:, 0], frame)


def test_window_localizer_trains_and_is_batch_independent(window_localizer):
    net, variables, windows, frame, targets = window_localizer
    batch = {"image": windows, "frame": frame, "targets": targets}

    def loss(params):
        return kinds.of(net).loss(net, {**variables, "params": params}, batch, {"count_weight": 1.0})[0]

    helpers.assert_adam_step_lowers(loss, variables["params"], learning_rate=1e-3)
    apply = jax.jit(net.apply)
    helpers.assert_batch_independent(lambda w, f: apply(variables, w, f)["logit"], (windows, frame))
