"""Noisy sensors: the training noise against the sensor model, the noise estimator, the count term and the
window search from every frame (a noise-trained run's exact resume: e2e/test_train.py; the window
localiser: models/test_localizer.py)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from csist_jax import physics, train
from csist_jax.data import csist100k, seqcsist
from csist_jax.models import objectives
from csist_jax.refine import estimate_noise, localize_window
from csist_jax.train import noise as noise_lib


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
