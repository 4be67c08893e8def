"""Input pipeline: epochs visit every sample once, seeded order, resumption, explicit remainders,
device-count checks, HR labels on the fly and SeqCSIST windows across trajectories."""

import jax
import numpy as np
import pytest

from csist_jax.data import pipeline, seqcsist
from csist_jax.physics import hr_label


@pytest.fixture(scope="module")
def frames(csist100k_64):
    return pipeline.ArraySource(csist100k_64)


@pytest.fixture(scope="module")
def trajectories(seqcsist_4):
    return seqcsist_4


def _indices(pipe):
    return [np.asarray(b["index"])[np.asarray(b["mask"])] for b in pipe]


def test_each_epoch_visits_every_sample_once_in_a_seeded_order(frames):
    pipe = pipeline.Pipeline(frames, batch_size=16, seed=5, num_epochs=3)
    assert len(pipe) == 12 and pipe.steps_per_epoch == 4
    seen = np.concatenate(_indices(pipe)).reshape(3, 64)
    for epoch in seen:
        np.testing.assert_array_equal(np.sort(epoch), np.arange(64))
    assert not np.array_equal(seen[0], seen[1])  # reshuffled every epoch
    again = np.concatenate(_indices(pipeline.Pipeline(frames, batch_size=16, seed=5, num_epochs=3)))
    np.testing.assert_array_equal(again, seen.reshape(-1))
    other = np.concatenate(_indices(pipeline.Pipeline(frames, batch_size=16, seed=6, num_epochs=1)))
    assert not np.array_equal(other, seen[0])
    ordered = np.concatenate(_indices(pipeline.Pipeline(frames, batch_size=16, shuffle=False)))
    np.testing.assert_array_equal(ordered, np.arange(64))


def test_resuming_at_a_step_continues_the_same_stream(frames):
    full = _indices(pipeline.Pipeline(frames, batch_size=16, seed=1, num_epochs=2))
    resumed = _indices(pipeline.Pipeline(frames, batch_size=16, seed=1, num_epochs=2, start_step=5))
    assert len(resumed) == 3
    for a, b in zip(full[5:], resumed, strict=True):
        np.testing.assert_array_equal(a, b)


def test_batches_carry_the_samples_and_their_hr_labels(frames):
    batch = next(iter(pipeline.Pipeline(frames, batch_size=16, seed=2, c=3)))
    idx = np.asarray(batch["index"])
    ref = frames.read(idx)
    assert batch["image"].dtype == np.float32 and batch["image"].shape == (16, 11, 11)
    np.testing.assert_array_equal(np.asarray(batch["image"]), ref["image"].astype(np.float32))
    np.testing.assert_array_equal(np.asarray(batch["targets"]), ref["targets"])
    np.testing.assert_array_equal(np.asarray(batch["count"]), ref["count"])
    np.testing.assert_array_equal(np.asarray(batch["label"]), np.asarray(hr_label(ref["targets"], 3)))
    # a label holds each target's brightness once
    np.testing.assert_allclose(
        np.asarray(batch["label"]).sum((1, 2)), ref["targets"][..., 2].sum(1), rtol=1e-6
    )


def test_remainder_must_be_chosen_and_is_never_silent(frames):
    with pytest.raises(ValueError, match="remainder='drop' or remainder='pad'"):
        pipeline.Pipeline(frames, batch_size=24)
    drop = pipeline.Pipeline(frames, batch_size=24, remainder="drop", seed=0)
    assert drop.steps_per_epoch == 2 and sum(len(i) for i in _indices(drop)) == 48
    pad = pipeline.Pipeline(frames, batch_size=24, remainder="pad", seed=0)
    batches = list(pad)
    assert pad.steps_per_epoch == 3 and all(b["image"].shape[0] == 24 for b in batches)
    mask = np.asarray(batches[-1]["mask"])
    assert mask.sum() == 64 - 48 and not mask[16:].any()
    np.testing.assert_array_equal(np.sort(np.concatenate(_indices(pad))), np.arange(64))


def test_batch_size_must_split_evenly_over_devices(frames):
    with pytest.raises(ValueError, match="divisible by the device count"):
        pipeline.Pipeline(frames, batch_size=15, num_devices=2, remainder="drop")
    pipe = pipeline.Pipeline(frames, batch_size=16, num_devices=2)
    assert next(iter(pipe))["image"].shape == (16, 11, 11)
    devices = np.array(jax.devices()[:1])
    sharding = jax.sharding.NamedSharding(
        jax.sharding.Mesh(devices, ("data",)), jax.sharding.PartitionSpec("data")
    )
    batch = next(iter(pipeline.Pipeline(frames, batch_size=16, sharding=sharding, c=3)))
    assert batch["image"].sharding.is_equivalent_to(sharding, 3)


def test_windows_are_drawn_across_trajectories_with_their_centre_frame(trajectories):
    source = pipeline.ArraySource(trajectories)
    assert len(source) == 80 and source.n_frames == 20
    pipe = pipeline.Pipeline(source, batch_size=16, window=5, seed=0, c=3)
    assert pipe.num_samples == 64
    ref = seqcsist.windows(trajectories)
    owners = set()
    for batch in pipe:
        idx = np.asarray(batch["index"])
        owners.update(np.asarray(batch["trajectory"]).tolist())
        assert batch["image"].shape == (16, 5, 11, 11)
        np.testing.assert_array_equal(np.asarray(batch["image"]), ref["image"][idx].astype(np.float32))
        np.testing.assert_array_equal(np.asarray(batch["targets"]), ref["targets"][idx])
        np.testing.assert_array_equal(np.asarray(batch["frame"]), ref["frame"][idx])
        np.testing.assert_array_equal(
            np.asarray(batch["label"]), np.asarray(hr_label(ref["targets"][idx], 3))
        )
    assert owners == {0, 1, 2, 3}
    first = next(iter(pipe))
    assert len(set(np.asarray(first["trajectory"]).tolist())) > 1  # a batch mixes trajectories


def test_windows_need_an_ordered_sequence_source(frames, trajectories):
    with pytest.raises(ValueError, match="sequence source"):
        pipeline.Pipeline(frames, batch_size=16, window=5)
    source = pipeline.ArraySource(trajectories)
    with pytest.raises(ValueError, match="odd"):
        pipeline.Pipeline(source, batch_size=16, window=4)

    class Shuffled:
        n_frames = 20

        def __len__(self):
            return 80

        def read(self, indices):
            return source.read((np.asarray(indices) * 7) % 80)

    with pytest.raises(ValueError, match="trajectory-major"):
        next(iter(pipeline.Pipeline(Shuffled(), batch_size=16, window=5)))


def test_tfds_source_pads_targets_and_rejects_too_many():
    records = [
        {"image": np.zeros((11, 11), np.uint8), "targets": np.ones((k, 3), np.float32), "count": k, "id": i}
        for i, k in enumerate([1, 3, 6])
    ]
    source = pipeline.TFDSSource(records)
    got = source.read(np.array([0, 1]))
    assert got["targets"].shape == (2, 5, 3) and got["count"].tolist() == [1, 3]
    with pytest.raises(ValueError, match="max_targets=5"):
        source.read(np.array([2]))
    assert pipeline.TFDSSource(records, max_targets=6).read(np.array([2]))["count"].tolist() == [6]
    with pytest.raises(ValueError, match="lack the field"):
        pipeline.TFDSSource([{"image": np.zeros((11, 11), np.uint8)}])


def test_bad_arguments_are_named(frames):
    with pytest.raises(TypeError, match="batch_size"):
        pipeline.Pipeline(frames, batch_size=0.5)
    with pytest.raises(ValueError, match="remainder"):
        pipeline.Pipeline(frames, batch_size=16, remainder="keep")
    with pytest.raises(TypeError, match="uint8"):
        pipeline.ArraySource(
            {"image": np.zeros((2, 11, 11)), "targets": np.zeros((2, 5, 3)), "count": np.zeros(2)}
        )
    with pytest.raises(TypeError, match="infinite"):
        len(pipeline.Pipeline(frames, batch_size=16, num_epochs=None))
