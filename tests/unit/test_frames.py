"""Whole sensor frames: the scene generator, ``unmix_frames`` (borders, close groups, empty frames, sizes)
and the frame-level metric."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import csist_jax
from csist_jax import frames as frames_lib
from csist_jax import metrics
from csist_jax.data import scenes
from csist_jax.physics import psf, sensor

STD = 2.0
BACKGROUND = 20.0


def _frame(targets, height, width, seed=0, std=STD, background=BACKGROUND):
    """One stored frame of hand-placed targets ``[K, 3]``."""
    clean = scenes.render(np.asarray(targets, np.float32), height, width)
    return np.asarray(sensor.observe(jax.random.PRNGKey(seed), clean + background, noise_std=std))


def _pairs(centres):
    """Two targets 0.8 px apart (a closely-spaced pair) at each centre pixel."""
    rows = []
    for r, q in centres:
        rows += [[r - 0.2, q - 0.3, 235.0], [r + 0.3, q + 0.35, 228.0]]
    return np.asarray(rows, np.float32)


def _assert_each_target_found_once(points, count, targets, tol=0.35):
    found = points[:count, :2]
    assert count == len(targets), (count, len(targets))
    d = np.linalg.norm(found[:, None, :] - targets[None, :, :2], axis=-1)
    assert np.all(d.min(axis=0) <= tol), d.min(axis=0)  # every target has a detection close by
    assert len(set(np.argmin(d, axis=1))) == len(targets)  # and no target has two


def test_scenes_are_seeded_chunk_invariant_and_follow_the_protocol():
    a = scenes.generate(3, 3, height=40, width=56, density=4.0, isolated_density=2.0, noise_std=1.0)
    b = scenes.generate(3, 2, height=40, width=56, density=4.0, isolated_density=2.0, noise_std=1.0, start=1)
    for key in a:
        np.testing.assert_array_equal(a[key][1:], b[key])
    groups, isolated = scenes.slots(40, 56, 4.0, 2.0)
    assert a["centres"].shape == (3, groups + isolated, 2)
    np.testing.assert_array_equal(a["count"], a["group_size"].sum(axis=1))
    for i in range(3):
        live = a["group_size"][i] > 0
        assert np.all(a["group_size"][i][groups:][live[groups:]] == 1)  # the isolated targets
        c = a["centres"][i][live].astype(float)
        d = np.linalg.norm(c[:, None] - c[None], axis=-1) + np.eye(len(c)) * 99
        assert d.min() >= 5.0  # min_group_distance
        t = a["targets"][i, : a["count"][i]]
        assert np.all((t[:, :2] > 1.5) & (t[:, :2] < np.array([40, 56]) - 1.5))
        np.testing.assert_array_equal(np.bincount(a["group"][i, : a["count"][i]]), a["group_size"][i][live])
        assert np.all(a["group"][i, a["count"][i] :] == -1)


def test_render_on_a_square_is_the_physics_render():
    t = jnp.array([[3.2, 7.1, 230.0], [5.0, 5.4, 240.0], [0.0, 0.0, 0.0]])
    np.testing.assert_allclose(scenes.render(t, 11, 11), psf.render(t), rtol=1e-6, atol=1e-4)


def test_background_plane_and_noise_are_recovered():
    t = _pairs([(20, 20), (40, 70)])
    clean = scenes.render(t, 64, 96)
    r = np.arange(64)[:, None] - 31.5
    q = np.arange(96)[None, :] - 47.5
    level = 30.0 + 0.04 * r - 0.03 * q
    stack = np.stack(
        [np.asarray(sensor.observe(jax.random.PRNGKey(i), clean + level, noise_std=STD)) for i in range(4)]
    )
    est = frames_lib.sensor_background(stack)
    assert abs(est["noise_std"] - STD) < 0.1 * STD
    np.testing.assert_allclose(est["plane"][:, 0], 30.0, atol=0.3)
    np.testing.assert_allclose(est["plane"][:, 1:], np.tile([0.04, -0.03], (4, 1)), atol=0.01)


def test_groups_at_the_edges_and_corners_are_each_found_once():
    h, w = 40, 52
    centres = [(2, 2), (2, w - 3), (h - 3, 2), (h - 3, w - 3), (2, 26), (20, w - 3)]
    targets = _pairs(centres)
    frame = _frame(targets, h, w)
    points, count = csist_jax.unmix_frames(frame[None], noise_std=STD)
    _assert_each_target_found_once(points[0], int(count[0]), targets)


def test_two_groups_closer_than_a_window_are_each_unmixed_once():
    targets = _pairs([(16, 14), (16, 19), (21, 16)])  # 5 px apart: each window holds its neighbours
    frame = _frame(targets, 36, 36, seed=1)
    points, count, details = csist_jax.unmix_frames(frame[None], noise_std=STD, return_details=True)
    assert details["candidates"][0] == 3
    _assert_each_target_found_once(points[0], int(count[0]), targets)


def test_an_empty_frame_gives_no_detection():
    noisy = _frame(np.zeros((1, 3), np.float32), 48, 48)
    black = np.zeros((48, 48), np.uint8)
    points, count = csist_jax.unmix_frames(np.stack([noisy, black]))
    assert points.shape == (2, 1, 3) and np.all(count == 0) and np.all(points == 0)


def test_frames_of_different_sizes_in_one_call_are_refused_with_the_rule():
    with pytest.raises(ValueError, match="one size per call"):
        csist_jax.unmix_frames([np.zeros((32, 32)), np.zeros((48, 48))])
    with pytest.raises(ValueError, match="H, W >= 11"):
        csist_jax.unmix_frames(np.zeros((1, 8, 40)))


def test_too_many_candidates_warn_naming_the_frame():
    frame = _frame(_pairs([(10, 10), (10, 30), (30, 10), (30, 30)]), 40, 40)
    with pytest.warns(UserWarning, match=r"frames\[0\].*max_candidates=2"):
        csist_jax.unmix_frames(frame[None], noise_std=STD, max_candidates=2)


def test_detect_groups_is_jittable_and_quiet_on_pure_noise():
    noise = np.stack([_frame(np.zeros((1, 3)), 64, 64, seed=s, background=0.0) for s in range(3)])
    detect = jax.jit(jax.vmap(lambda z: frames_lib.detect_groups(z, STD, max_candidates=8)))
    centres, valid, found = detect(jnp.asarray(noise, jnp.float32))
    assert centres.shape == (3, 8, 2) and not np.asarray(valid).any() and not np.asarray(found).any()
    one = _frame(_pairs([(30, 40)]), 64, 64, background=0.0)
    centres, valid, _ = frames_lib.detect_groups(jnp.asarray(one, jnp.float32), STD, max_candidates=8)
    assert int(valid.sum()) == 1 and np.abs(np.asarray(centres[0]) - [30, 40]).max() <= 1


def test_a_window_shows_its_own_group_alone():
    frame = jnp.arange(30 * 30, dtype=jnp.float32).reshape(30, 30)
    centres = jnp.array([[10, 10], [10, 15], [28, 28]])
    valid = jnp.array([True, True, False])
    windows = frames_lib.crop_windows(frame, centres, valid, jnp.array([-1.0, -2.0, -3.0]))
    # window 0 spans rows 5..15, columns 5..15: columns 13..15 are nearer to the candidate at column 15
    np.testing.assert_array_equal(windows[0][:, 8:], -1.0)
    np.testing.assert_array_equal(windows[0][:, :8], frame[5:16, 5:13])
    np.testing.assert_array_equal(windows[2][4:, 4:], frame[23:30, 23:30])  # its own pixels stay
    np.testing.assert_array_equal(windows[1][:, 3:], frame[5:16, 13:21])  # candidate 2 (invalid) masks none
    assert float(windows[1][5, 0]) == -2.0  # column 10 of window 1 is candidate 0's


def test_merge_keeps_each_detection_in_the_window_of_its_nearest_candidate():
    centres = jnp.array([[10, 10], [10, 16]])
    # both windows report both targets (at 10.2, 10.1 and 10.1, 15.8) and window 1 a spurious third
    points = jnp.array(
        [
            [[10.2, 10.1, 0.9], [10.1, 15.8, 0.5], [0.0, 0.0, 0.0]],
            [[10.2, 10.1, 0.4], [10.1, 15.8, 0.8], [30.0, 30.0, 0.1]],
        ]
    )
    merged, total, _ = frames_lib.merge_windows(points, jnp.array([2, 2]), centres, jnp.array([True, True]))
    assert int(total) == 2
    np.testing.assert_allclose(merged[:2], [[10.2, 10.1, 0.9], [10.1, 15.8, 0.8]])
    assert float(jnp.abs(merged[2:]).sum()) == 0.0


def test_group_recall_and_frame_scores():
    targets = np.array([[[5.0, 5.0, 230.0], [5.4, 5.5, 230.0], [20.0, 20.0, 230.0], [0, 0, 0]]], np.float32)
    group = np.array([[0, 0, 1, -1]])
    group_size = np.array([[2, 1, 0]])
    points = np.array([[[5.45, 5.5, 0.9], [25.0, 25.0, 0.8]]], np.float32)
    assert metrics.group_recall(points, [2], targets, group, group_size) == 0.5
    assert metrics.group_recall(points, [2], targets, group, group_size, radius=8.0) == 1.0
    scores = metrics.frame_scores(points, [2], targets, [3], group, group_size)
    assert scores["group_recall"] == 0.5
    plain = metrics.cso_map_from_points(points, [2], targets, [3])
    assert {k: scores[k] for k in plain} == plain


def test_generated_frames_are_unmixed_as_well_as_perfect_windows():
    data = scenes.generate(0, 2, height=64, width=64, density=6.0, isolated_density=3.0, noise_std=STD)
    points, count, details = csist_jax.unmix_frames(data["image"], return_details=True)
    assert abs(details["noise_std"] - STD) < 0.3
    live = data["group_size"] > 0
    recall = metrics.group_recall(points, count, data["targets"], data["group"], data["group_size"])
    assert recall == 1.0
    p2, c2, _ = frames_lib.unmix_at(
        data["image"], data["centres"], live, noise_std=details["noise_std"], plane=details["background"]
    )
    ours = metrics.frame_scores(points, count, data["targets"], data["count"])["mAP"]
    perfect = metrics.frame_scores(p2, c2, data["targets"], data["count"])["mAP"]
    assert ours >= perfect - 0.05, (ours, perfect)
