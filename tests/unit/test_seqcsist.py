"""SeqCSIST generator: the protocol of SPEC sec. 5, determinism, windows and bad input."""

import numpy as np
import pytest

from csist_jax.data import seqcsist
from csist_jax.physics import quantize, render

N = 256  # trajectories: enough for the frequency checks, one compiled shape for the module


@pytest.fixture(scope="module")
def data():
    return seqcsist.generate(seed=0, n_trajectories=N)


def _valid(data):
    return np.arange(seqcsist.MAX_TARGETS)[None, :] < data["count"][:, None]  # [n, K]


def test_shapes_and_dtypes_follow_the_contract(data):
    assert data["image"].shape == (N, 20, 11, 11) and data["image"].dtype == np.uint8
    assert data["targets"].shape == (N, 20, 4, 3) and data["targets"].dtype == np.float32
    assert data["count"].shape == (N,) and data["count"].dtype == np.int32
    assert data["reference"].shape == (N, 20, 2)
    assert data["direction"].shape == (N, 4) and data["distance"].shape == (N, 20, 4)
    np.testing.assert_array_equal(data["trajectory"], np.arange(N))


def test_count_is_uniform_over_two_to_four_and_padding_is_zero(data):
    freq = np.bincount(data["count"], minlength=5) / N
    assert freq[0] == freq[1] == 0
    # each of 2, 3, 4 has probability 1/3; 5 binomial standard deviations at N = 256 is 0.15
    np.testing.assert_allclose(freq[2:], 1 / 3, atol=0.15)
    pad = ~_valid(data)
    assert np.all(data["targets"][:, :, :][np.broadcast_to(pad[:, None], (N, 20, 4))] == 0)
    assert np.all(data["direction"][pad] == -1)


def test_reference_steps_004_px_along_x_towards_the_centre(data):
    x = data["reference"][..., 0]
    x0 = x[:, 0]
    assert np.all(x0 == np.round(x0)) and x0.min() >= 1 and x0.max() <= 9  # an integer off the border
    sign = np.where(x0 < 5, 1.0, -1.0)
    np.testing.assert_allclose(np.diff(x, axis=1), 0.04 * sign[:, None] * np.ones((1, 19)), atol=2e-6)
    y0 = data["reference"][:, 0, 1]
    assert y0.min() >= 2 and y0.max() <= 8


def test_reference_follows_its_curve_kind(data):
    y = data["reference"][..., 1].astype(np.float64)
    kind = data["curve"]
    assert set(np.unique(kind)) == {0, 1, 2}
    # equal x steps: a line has zero second differences, a quadratic zero third differences
    np.testing.assert_allclose(np.diff(y[kind == 0], n=2, axis=1), 0, atol=3e-6)
    np.testing.assert_allclose(np.diff(y[kind == 1], n=3, axis=1), 0, atol=3e-6)
    # a circle arc: second differences of one sign (no inflection) and not all zero
    d2 = np.diff(y[kind == 2], n=2, axis=1)
    assert np.all(np.all(d2 >= -3e-6, axis=1) | np.all(d2 <= 3e-6, axis=1))


def test_targets_start_03_px_from_the_reference_in_distinct_directions(data):
    valid = _valid(data)
    offset = data["targets"][:, 0, :, :2] - data["reference"][:, 0, None, :]
    np.testing.assert_allclose(np.linalg.norm(offset, axis=-1)[valid], 0.3, atol=2e-6)
    unit = seqcsist.DIRECTIONS[np.maximum(data["direction"], 0)]
    np.testing.assert_allclose((offset / 0.3)[valid], unit[valid], atol=1e-5)
    for i in range(N):
        codes = data["direction"][i, : data["count"][i]]
        assert len(set(codes.tolist())) == len(codes), f"trajectory {i} repeats a direction"


def test_targets_drift_outwards_within_bounds(data):
    valid = _valid(data)
    distance = data["distance"]
    step = np.diff(distance, axis=1)  # [n, 19, K]
    v = np.broadcast_to(valid[:, None], step.shape)
    assert step[v].min() >= -1e-6 and step[v].max() <= 0.0014 + 1e-6
    # the default drift is a constant rate per target
    np.testing.assert_allclose(step[v], np.broadcast_to(step[:, :1], step.shape)[v], atol=1e-6)
    # geometry agrees with the recorded distance in every frame
    rel = data["targets"][..., :2] - data["reference"][:, :, None, :]
    vv = np.broadcast_to(valid[:, None], distance.shape)
    np.testing.assert_allclose(np.linalg.norm(rel, axis=-1)[vv], distance[vv], atol=1e-5)
    assert distance[vv].max() <= 0.3 + 19 * 0.0014 + 1e-6


def test_brightness_and_count_are_fixed_along_the_trajectory(data):
    b = data["targets"][..., 2]
    valid = np.broadcast_to(_valid(data)[:, None], b.shape)
    assert b[valid].min() >= 220 and b[valid].max() <= 250
    np.testing.assert_array_equal(b, np.broadcast_to(b[:, :1], b.shape))


def test_targets_stay_inside_the_frame_and_apart(data):
    valid = np.broadcast_to(_valid(data)[:, None], data["targets"].shape[:3])
    xy = data["targets"][..., :2][valid]
    assert xy.min() > 0 and xy.max() < 10
    p = data["targets"][..., :2]
    d = np.linalg.norm(p[:, :, :, None] - p[:, :, None, :], axis=-1)
    pair = valid[..., :, None] & valid[..., None, :] & ~np.eye(4, dtype=bool)
    assert d[pair].min() >= 0.3 * np.sqrt(2) - 1e-5  # two perpendicular directions at 0.3 px


def test_frames_are_the_quantised_rendering_of_the_targets(data):
    expected = np.asarray(quantize(render(data["targets"][:8], size=11, sigma=0.5)))
    np.testing.assert_array_equal(data["image"][:8], expected)
    assert data["image"].max() <= 255


def test_same_seed_same_data_across_runs_chunks_and_starts(data, monkeypatch):
    again = seqcsist.generate(seed=0, n_trajectories=N)
    for key in data:
        np.testing.assert_array_equal(again[key], data[key], err_msg=key)
    monkeypatch.setattr(seqcsist, "_CHUNK", 64)  # the same trajectories computed in four batches
    chunked = seqcsist.generate(seed=0, n_trajectories=N)
    for key in data:
        np.testing.assert_array_equal(chunked[key], data[key], err_msg=key)
    tail = seqcsist.generate(seed=0, n_trajectories=64, start=N - 64)
    for key in ("image", "targets", "count", "reference"):
        np.testing.assert_array_equal(tail[key], data[key][N - 64 :], err_msg=key)
    other = seqcsist.generate(seed=1, n_trajectories=64)
    assert not np.array_equal(other["targets"], data["targets"][:64])


def test_read_noise_keeps_the_trajectories_and_does_not_depend_on_the_batching(data, monkeypatch):
    """``noise_std > 0`` adds read noise to the same trajectories (the frames stored by
    ``physics.observe`` with each trajectory's key), whatever the chunk boundaries."""
    noisy = seqcsist.generate(seed=0, n_trajectories=64, start=32, noise_std=2.0, return_clean=True)
    np.testing.assert_array_equal(noisy["targets"], data["targets"][32:96])
    monkeypatch.setattr(seqcsist, "_CHUNK", 64)  # trajectories 32..95 now straddle two chunks
    whole = seqcsist.generate(seed=0, n_trajectories=N, noise_std=2.0)
    np.testing.assert_array_equal(whole["image"][32:96], noisy["image"])
    residual = noisy["image"] - noisy["clean"].astype(np.float64)
    residual = residual[(noisy["clean"] > 10) & (noisy["clean"] < 245)]  # clear of the clipping
    assert residual.size > 1000 and abs(residual.mean()) < 0.2
    np.testing.assert_allclose(residual.std(), np.sqrt(4 + 1 / 12), rtol=0.1)  # read noise + rounding


def test_steps_drift_mode_draws_a_fresh_step_every_frame():
    data = seqcsist.generate(seed=0, n_trajectories=64, drift_mode="steps")
    valid = _valid(data)
    step = np.diff(data["distance"], axis=1)
    v = np.broadcast_to(valid[:, None], step.shape)
    assert step[v].min() >= -1e-6 and step[v].max() <= 0.0014 + 1e-6
    assert np.std(step[:, :, 0], axis=1).min() > 1e-5  # steps vary along a trajectory


def test_windows_are_sixteen_per_trajectory_centred_on_the_true_frame(data):
    sub = {k: v[:3] for k, v in data.items()}
    win = seqcsist.windows(sub)
    assert win["image"].shape == (48, 5, 11, 11)
    np.testing.assert_array_equal(win["frame"], np.tile(np.arange(2, 18), 3))
    np.testing.assert_array_equal(win["trajectory"], np.repeat([0, 1, 2], 16))
    for w in (0, 17, 47):
        j, s = divmod(w, 16)
        np.testing.assert_array_equal(win["image"][w], sub["image"][j, s : s + 5])
        np.testing.assert_array_equal(win["targets"][w], sub["targets"][j, s + 2])
        assert win["count"][w] == sub["count"][j]
    np.testing.assert_array_equal(seqcsist.window_starts(20, 5), np.arange(16))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(n_trajectories=-1), "n_trajectories"),
        (dict(n_trajectories=2.5), "n_trajectories"),
        (dict(n_trajectories=4, count_range=(1, 5)), "count_range"),
        (dict(n_trajectories=4, curve_probs=(0.5, 0.5, 0.5)), "curve_probs"),
        (dict(n_trajectories=4, radius_range=(0.5, 1.0)), "radius_range"),
        (dict(n_trajectories=4, drift_mode="walk"), "drift_mode"),
        (dict(n_trajectories=4, drift_range=(0.001, 0.0)), "drift_range"),
        (dict(n_trajectories=4, x0_range=(0, 11)), "x0_range"),
        (dict(n_trajectories=4, sigma=0.0), "sigma"),
        (dict(n_trajectories=4, noise_std=-1.0), "noise_std"),
    ],
)
def test_bad_protocol_raises_naming_the_argument(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        seqcsist.generate(seed=0, **kwargs)


def test_windows_reject_even_length_and_single_frames(data):
    with pytest.raises(ValueError, match="odd"):
        seqcsist.windows(data, length=4)
    with pytest.raises(ValueError, match="trajectories"):
        seqcsist.windows(
            {"image": data["image"][:, 0], "targets": data["targets"][:, 0], "count": data["count"]}
        )
