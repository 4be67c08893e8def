"""Noisy sensors: the training noise against the sensor model, the noise estimator, the count term, the
window search from every frame, exact resume of a noise-trained run, and the window localiser."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from csist_jax import models, physics, train
from csist_jax.data import csist100k, seqcsist
from csist_jax.models import kinds, objectives
from csist_jax.refine import estimate_noise, localize_window
from csist_jax.train import noise as noise_lib
from tests import helpers


def test_training_noise_has_the_statistics_of_sensor_observe():
    clean = jnp.asarray(csist100k.generate(seed=1, n=64)["image"], jnp.float32)  # noise-free stored frames
    key = jax.random.PRNGKey(7)
    for std, background in ((2.0, 0.0), (5.0, 10.0)):
        drawn = np.asarray(noise_lib.Noise((std, std), (background, background)).draw(key, clean))
        keys = jax.random.split(jax.random.PRNGKey(8), len(clean))
        observed = np.asarray(
            jax.vmap(
                lambda k, f, s=std, b=background: physics.sensor.observe(k, f, noise_std=s, background=b)
            )(keys, clean)
        ).astype(np.float32)
        assert np.all(drawn == np.round(drawn)) and drawn.min() >= 0 and drawn.max() <= 255
        diff_d, diff_o = drawn - np.asarray(clean), observed - np.asarray(clean)
        n = diff_d.size  # two independent samples of n pixels: 4 standard errors of each difference
        assert abs(diff_d.mean() - diff_o.mean()) < 4 * std * np.sqrt(2 / n)
        assert abs(diff_d.std() / diff_o.std() - 1) < 4 * np.sqrt(1 / n)
        for level in (0, 255):  # the clipped fractions
            assert abs(np.mean(drawn == level) - np.mean(observed == level)) < 4 * np.sqrt(0.5 / n)
    # per-sample levels from the range: the frames' own spreads cover [lo, hi]
    flat = jnp.full(clean.shape, 50.0)  # far from both clipping levels
    ranged = np.asarray(noise_lib.Noise((0.0, 4.0)).draw(key, flat)) - 50.0
    spread = ranged.reshape(len(clean), -1).std(axis=1)
    assert spread.min() < 1.0 and spread.max() > 3.2 and spread.max() < 4.6


def test_noise_off_leaves_the_frames_and_bad_ranges_name_the_field():
    frames = jnp.arange(2 * 11 * 11, dtype=jnp.float32).reshape(2, 11, 11)
    assert noise_lib.Noise().at_step(0, 3, frames) is frames
    for bad in ((3.0, 1.0), (-1.0, 2.0), (0.0, float("nan"))):
        with pytest.raises(ValueError, match="config.data.noise_std"):
            train.config.resolve({"data": {"noise_std": bad}})


@pytest.mark.parametrize("std", [1.0, 2.0, 3.0, 5.0])
def test_noise_estimate_is_within_10_percent_of_the_true_std(std):
    frames = csist100k.generate(seed=2, n=96, noise_std=std)["image"]
    estimate = estimate_noise(frames)
    assert abs(estimate["noise_std"] / std - 1) < 0.10, estimate
    assert estimate["pixels"] >= 72 * len(frames)


def test_noise_estimate_of_noise_free_frames_is_zero_and_windows_are_read():
    assert estimate_noise(csist100k.generate(seed=2, n=16)["image"])["noise_std"] == 0.0
    windows = seqcsist.windows(seqcsist.generate(0, 1, noise_std=2.0))["image"]
    assert abs(estimate_noise(windows)["noise_std"] / 2.0 - 1) < 0.10
    with pytest.raises(ValueError, match="frames"):
        estimate_noise(np.zeros((0, 11, 11)))


def test_count_term_against_a_hand_computed_case():
    p = jnp.array([[0.5, 0.25, 0.0, 1.0]])
    # expected count 1.75, variance 0.25 + 0.1875 (+1e-6); true count 3
    v = 0.4375 + 1e-6
    want = 0.5 * (3 - 1.75) ** 2 / v + 0.5 * np.log(2 * np.pi * v)
    np.testing.assert_allclose(float(objectives.count_term(p, jnp.array([3]))[0]), want, rtol=1e-6)
    # the calibrated case: decided probabilities adding up to the count give the least value
    sure = objectives.count_term(jnp.array([[1e-3, 1 - 1e-3, 1 - 1e-3]]), jnp.array([2]))
    assert float(sure[0]) < float(objectives.count_term(p, jnp.array([2]))[0])


def test_window_search_from_every_frame_never_ends_worse_than_from_the_centre():
    windows = seqcsist.windows(seqcsist.generate(3, 1, noise_std=3.0))["image"][:6].astype(np.float32)
    one = lambda starts: jax.jit(jax.vmap(lambda w: localize_window(w, noise_std=3.0, starts=starts)))(
        windows
    )
    centre, every = one("centre"), one("all")
    # the centre frame's start is one of the starts, so the kept criterion can only be lower or equal
    assert np.all(np.asarray(every["criterion"]) <= np.asarray(centre["criterion"]) + 1e-3)
    with pytest.raises(ValueError, match="starts"):
        localize_window(windows[0], starts="middle")


def test_a_killed_noise_trained_run_resumes_bit_identically(tmp_path, monkeypatch):
    from csist_jax.train import loop

    def config():
        cfg = train.default_config()
        cfg.model.name = "ista_net"
        cfg.model.stages = 1
        cfg.model.channels = 4
        cfg.data.train_size = 64
        cfg.data.val_size = 64
        cfg.data.noise_std = (0.0, 5.0)
        cfg.data.background = (0.0, 2.0)
        cfg.optim.batch_size = 16
        cfg.optim.num_epochs = 2
        cfg.optim.learning_rate = 1e-3
        cfg.checkpoint_every_steps = 2
        cfg.eval.batch_size = 32
        cfg.progress = False
        return cfg

    reference = train.train_and_evaluate(config(), str(tmp_path / "whole"))
    clean = config()
    clean.data.noise_std = (0.0, 0.0)
    clean.data.background = (0.0, 0.0)
    noise_free = train.train_and_evaluate(clean, str(tmp_path / "clean"))
    assert not np.array_equal(
        np.asarray(jax.tree.leaves(reference["params"])[0]),
        np.asarray(jax.tree.leaves(noise_free["params"])[0]),
    ), "the noise must reach the updates"
    dispatch = loop.TrainLoop._dispatch

    def dies_at_step_5(self, first, count):
        if first == 5:
            raise KeyboardInterrupt
        return dispatch(self, first, count)

    with monkeypatch.context() as m:
        m.setattr(loop.TrainLoop, "_dispatch", dies_at_step_5)
        with pytest.raises(KeyboardInterrupt):
            train.train_and_evaluate(config(), str(tmp_path / "killed"))
    resumed = train.train_and_evaluate(config(), str(tmp_path / "killed"))
    assert resumed["step"] == reference["step"] == 8
    jax.tree.map(np.testing.assert_array_equal, resumed["params"], reference["params"])


@pytest.fixture(scope="module")
def window_localizer():
    net = models.create("window_localizer", **models.REGISTRY["window_localizer"].small)
    data = seqcsist.windows(seqcsist.generate(1, 1, noise_std=2.0))
    windows = jnp.asarray(data["image"][:4], jnp.float32)
    frame = jnp.asarray(data["frame"][:4], jnp.int32)
    variables = net.init(jax.random.PRNGKey(0), windows, frame)
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
    helpers.assert_batch_independent(lambda w, f: net.apply(variables, w, f)["logit"], (windows, frame))
