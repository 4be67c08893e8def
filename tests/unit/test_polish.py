"""``refine.polish``: one short fit from a detector's points, kept where it explains the image."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from csist_jax import physics, refine
from csist_jax.refine import polish


def _scene():
    truth = np.array(
        [
            [[5.10, 5.25, 230.0], [5.70, 4.90, 240.0], [0, 0, 0]],
            [[3.40, 6.20, 225.0], [0, 0, 0], [0, 0, 0]],
        ],
        np.float32,
    )
    images = jnp.stack([jnp.round(jnp.minimum(physics.render(jnp.asarray(t)), 255.0)) for t in truth])
    return truth, images


def _found(truth, count, shift=0.08):
    points = np.zeros((len(truth), 4, 3), np.float32)
    brightness = np.zeros((len(truth), 4), np.float32)
    for i, k in enumerate(count):
        points[i, :k, :2] = truth[i, :k, :2] + shift
        points[i, :k, 2] = 0.5
        brightness[i, :k] = 235.0
    probability = (points[..., 2] > 0) * 0.9
    return {
        "points": points,
        "count": np.asarray(count),
        "brightness": brightness,
        "probability": probability,
    }


def test_polish_moves_close_starts_onto_the_truth_and_keeps_the_count():
    truth, images = _scene()
    out = polish(images, _found(truth, [2, 1]))
    assert np.all(np.asarray(out["accepted"]))
    np.testing.assert_array_equal(np.asarray(out["count"]), [2, 1])
    points = np.asarray(out["points"])
    np.testing.assert_allclose(points[0, :2, :2], truth[0, :2, :2], atol=0.02)
    np.testing.assert_allclose(points[1, :1, :2], truth[1, :1, :2], atol=0.02)
    assert np.all(points[0, 2:] == 0) and np.all(points[1, 1:] == 0)
    # scores: the fit's position score times the detector's probability (0.9), in (0, 0.9]
    assert np.all((points[0, :2, 2] > 0.5) & (points[0, :2, 2] <= 0.9))


def test_a_wrong_count_is_rejected_and_kept_or_refitted_with_the_full_search():
    truth, images = _scene()
    found = _found(truth, [1, 1])  # image 0 misses its second target
    out = polish(images, found)
    np.testing.assert_array_equal(np.asarray(out["accepted"]), [False, True])
    np.testing.assert_array_equal(np.asarray(out["points"])[0], found["points"][0])
    refit = polish(images, found, fallback=True)
    full = refine.fit_sources(np.asarray(images)[:1])
    np.testing.assert_array_equal(np.asarray(refit["count"]), [int(full["count"][0]), 1])
    np.testing.assert_allclose(np.asarray(refit["points"])[0, :5], np.asarray(full["points"])[0], atol=1e-6)
    np.testing.assert_allclose(np.asarray(refit["points"])[1, :4], np.asarray(out["points"])[1], atol=0)
    assert refit["points"].shape == (2, 5, 3)  # the wider of the detector's 4 slots and the fit's 5


def test_polish_names_bad_arguments():
    truth, images = _scene()
    found = _found(truth, [2, 1])
    with pytest.raises(ValueError, match="missing"):
        polish(images, {"points": found["points"]})
    with pytest.raises(ValueError, match=r"found\['points'\]"):
        polish(images[:1], found)
    with pytest.raises(ValueError, match="max_cost"):
        polish(images, found, max_cost=0.0)
