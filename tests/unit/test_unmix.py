"""``csist_jax.unmix`` / ``unmix_windows``: the user's one call, on 8-bit and float frames, any batch
size (0 and 1 included), the noise estimated or given, and clear errors for wrong input."""

from __future__ import annotations

import numpy as np
import pytest

import csist_jax
from csist_jax import metrics
from csist_jax.data import csist100k, seqcsist


@pytest.fixture(scope="module")
def noisy():
    return csist100k.generate(seed=4, n=16, noise_std=2.0)


def test_unmix_gives_the_same_points_from_uint8_and_float_frames(noisy):
    images = noisy["image"]
    assert images.dtype == np.uint8
    points, count, details = csist_jax.unmix(images, return_details=True)
    again, count_f = csist_jax.unmix(images.astype(np.float32))
    np.testing.assert_array_equal(count, count_f)
    np.testing.assert_allclose(points, again, atol=1e-6)
    assert points.shape == (16, 8, 3) and count.shape == (16,) and count.dtype == np.int32
    assert abs(details["noise_std"] / 2.0 - 1) < 0.15 and details["method"] == "learned"
    # rows beyond the count are zero; the found points score like any detector's
    for i in range(16):
        assert np.all(points[i, count[i] :] == 0)
    assert metrics.cso_map_from_points(points, count, noisy["targets"], noisy["count"])["mAP"] > 0.2


def test_unmix_on_batches_of_one_and_zero(noisy):
    one, count = csist_jax.unmix(noisy["image"][:1], noise_std=2.0)
    batch, counts = csist_jax.unmix(noisy["image"], noise_std=2.0)
    assert one.shape == (1, 8, 3) and count.shape == (1,)
    np.testing.assert_allclose(one[0], batch[0], atol=1e-4)
    empty, none = csist_jax.unmix(np.zeros((0, 11, 11), np.uint8))
    assert empty.shape[0] == 0 and empty.shape[2] == 3 and none.shape == (0,)


def test_unmix_polishes_noise_free_frames():
    data = csist100k.generate(seed=5, n=8)
    points, count, details = csist_jax.unmix(data["image"], return_details=True)
    assert details["noise_std"] == 0.0 and details["method"] == "polish"
    assert points.shape[0] == 8 and np.mean(count == data["count"]) >= 0.5


@pytest.mark.parametrize(
    "bad, match",
    [
        (np.zeros((4, 12, 12)), r"images must have shape \[n, 11, 11\]"),
        (np.zeros((11, 11)), r"images must have shape"),
        (np.full((2, 11, 11), 300.0), "0..255"),
        (np.full((2, 11, 11), np.nan), "images"),
    ],
)
def test_unmix_rejects_wrong_input_with_a_clear_error(bad, match):
    with pytest.raises(ValueError, match=match):
        csist_jax.unmix(bad)


def test_unmix_rejects_bad_options():
    frames = np.zeros((1, 11, 11), np.uint8)
    with pytest.raises(ValueError, match="noise_std"):
        csist_jax.unmix(frames, noise_std=-1.0)
    with pytest.raises(ValueError, match="method"):
        csist_jax.unmix(frames, method="best")
    with pytest.raises(ValueError, match="sigma"):
        csist_jax.unmix(frames, method="learned", sigma=0.7)


def test_unmix_windows_reads_the_centre_frames():
    data = seqcsist.windows(seqcsist.generate(2, 1, noise_std=2.0))
    points, count, details = csist_jax.unmix_windows(data["image"], return_details=True)
    assert points.shape == (16, 8, 3) and count.shape == (16,) and details["method"] == "learned"
    assert metrics.cso_map_from_points(points, count, data["targets"], data["count"])["mAP"] > 0.2
    again, _ = csist_jax.unmix_windows(data["image"].astype(np.float32), noise_std=details["noise_std"])
    np.testing.assert_allclose(points, again, atol=1e-6)
    empty, none = csist_jax.unmix_windows(np.zeros((0, 5, 11, 11), np.uint8))
    assert empty.shape[0] == 0 and none.shape == (0,)
    with pytest.raises(ValueError, match="windows"):
        csist_jax.unmix_windows(data["image"][:, :4])


def test_unmix_removes_a_background_offset_estimated_from_the_frames():
    import jax

    from csist_jax import physics

    data = csist100k.generate(seed=4, n=16)  # the scenes of the `noisy` fixture, rendered again
    clean = physics.render(data["targets"])
    keys = jax.random.split(jax.random.PRNGKey(1), 16)
    offset = np.asarray(
        jax.vmap(lambda k, f: physics.sensor.observe(k, f, noise_std=2.0, background=20.0))(keys, clean)
    )
    points, count, details = csist_jax.unmix(offset, return_details=True)
    assert details["background"] == 20.0 and abs(details["noise_std"] / 2.0 - 1) < 0.15
    assert metrics.cso_map_from_points(points, count, data["targets"], data["count"])["mAP"] > 0.2
    given, _ = csist_jax.unmix(offset, noise_std=details["noise_std"], background=20.0)
    np.testing.assert_allclose(points, given, atol=1e-6)
