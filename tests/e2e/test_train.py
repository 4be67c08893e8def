"""train_and_evaluate: logs and checkpoints, exact resume, unreadable checkpoints, NaN stop, the on-device
data and multi-step calls, bfloat16 compute, profiling, and multi-device updates."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from csist_jax import models, train
from csist_jax.data import csist100k
from csist_jax.train import device_data, loop
from tests import helpers
from tests.helpers import tiny_config

ROOT = helpers.ROOT


def _steps(workdir):
    return sorted(int(d) for d in os.listdir(os.path.join(workdir, "checkpoints")) if d.isdigit())


def _assert_same_params(a, b):
    jax.tree.map(np.testing.assert_array_equal, a, b)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """One uninterrupted tiny run (8 steps, checkpoints every 2): ``(workdir, result)``."""
    workdir = tmp_path_factory.mktemp("reference")
    return workdir, train.train_and_evaluate(tiny_config(checkpoint_every_steps=2), str(workdir))


def test_training_writes_logs_checkpoints_and_best_network(reference):
    workdir, result = reference
    assert result["step"] == 8
    for name in ("metrics.jsonl", "train.csv", "val.csv", "curves.png", "config.json"):
        assert (workdir / name).is_file(), name
    rows = [json.loads(line) for line in open(workdir / "metrics.jsonl")]
    val = [r for r in rows if r["split"] == "val"]
    assert [r["step"] for r in val] == [4, 8]
    assert all(0.0 <= r["mAP"] <= 1.0 for r in val)
    train_rows = [r for r in rows if r["split"] == "train"]
    assert [r["step"] for r in train_rows] == [2, 4, 6, 8]
    assert {"loss", "mse", "sym", "grad_norm", "step_0", "threshold_0", "images_per_s"} <= set(train_rows[0])
    assert _steps(workdir) == [6, 8]  # keep_checkpoints = 2
    module, variables = models.load_checkpoint(workdir / "best")
    assert module.stages == 1 and module.channels == 4
    meta = models.read_meta(workdir / "best")
    assert meta["info"]["step"] == result["best_step"]
    assert result["best_val_map"] == max(r["mAP"] for r in val)
    timing = result["timing"]
    assert timing["steps"] == 8 and timing["train_seconds"] > 0 and timing["compile_seconds"] > 0


def test_killed_and_resumed_run_ends_with_the_same_parameters(reference, tmp_path, monkeypatch):
    cfg = tiny_config(checkpoint_every_steps=2)
    helpers.train_killed_at(7, cfg, tmp_path, monkeypatch)
    # the checkpoint of step 6 was registered but not yet saved when the run died (see csist_jax.train.loop)
    assert _steps(tmp_path) == [2, 4]
    resumed = train.train_and_evaluate(cfg, str(tmp_path))
    assert resumed["step"] == reference[1]["step"] == 8
    _assert_same_params(resumed["params"], reference[1]["params"])
    steps = [json.loads(line)["step"] for line in open(tmp_path / "metrics.jsonl")]
    assert steps == sorted(steps), "logs of the killed run after its checkpoint must be dropped"


def _truncate_files(directory, keep_fraction: float) -> None:
    for root, _, files in os.walk(directory):
        for name in files:
            path = os.path.join(root, name)
            with open(path, "r+b") as f:
                f.truncate(int(os.path.getsize(path) * keep_fraction))


def test_an_unreadable_checkpoint_is_reported_and_the_one_before_it_used(reference, tmp_path):
    workdir = tmp_path / "run"
    shutil.copytree(reference[0], workdir)
    newest = os.path.join(workdir, "checkpoints", "8")
    _truncate_files(newest, 0.5)  # every file of the newest checkpoint chopped in half
    with pytest.warns(RuntimeWarning) as caught:
        resumed = train.train_and_evaluate(tiny_config(checkpoint_every_steps=2), str(workdir))
    messages = [str(w.message) for w in caught]
    assert any(m.startswith(f"checkpoint {newest} cannot be read") for m in messages), messages
    aside = os.path.join(str(workdir / "checkpoints") + ".unreadable", "8")
    assert f"unreadable checkpoint {newest} moved to {aside}" in messages
    # resumed from step 6, so steps 7 and 8 ran again and ended where the uninterrupted run did
    assert resumed["timing"]["steps"] == 2
    _assert_same_params(resumed["params"], reference[1]["params"])
    assert _steps(workdir) == [6, 8]
    assert os.path.isdir(aside)


def test_no_readable_checkpoint_stops_with_an_error_naming_the_directory(reference, tmp_path):
    workdir = tmp_path / "run"
    shutil.copytree(reference[0], workdir)
    _truncate_files(workdir / "checkpoints", 0.0)  # every file of every checkpoint emptied
    directory = os.path.join(workdir, "checkpoints")
    with (
        pytest.warns(RuntimeWarning),
        pytest.raises(RuntimeError, match=f"no readable checkpoint in {directory}"),
    ):
        train.train_and_evaluate(tiny_config(checkpoint_every_steps=2), str(workdir))


def test_nan_loss_stops_training_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    batch = device_data.DeviceDataset.batch

    def poisoned(self, arrays, order, step):
        out = batch(self, arrays, order, step)
        # from step 4 on (state step 3, counting from 0) the frames are corrupt
        return dict(out, image=jnp.where(step >= 3, jnp.nan, out["image"]))

    monkeypatch.setattr(device_data.DeviceDataset, "batch", poisoned)
    with pytest.raises(FloatingPointError, match=r"loss is nan at step 4.*last good checkpoint \(step 2\)"):
        train.train_and_evaluate(tiny_config(checkpoint_every_steps=2), str(tmp_path))
    assert _steps(tmp_path) == [2]


def test_several_steps_per_call_give_the_same_run(reference, tmp_path):
    """steps_per_call = 4: two calls of a lax.scan over 4 steps, the same batches as single steps; the
    second call is traced by the profiler (config.profile_steps)."""
    cfg = tiny_config(steps_per_call=4, log_every_steps=4, profile_steps="5,8")
    result = train.train_and_evaluate(cfg, str(tmp_path))
    traces = [f for _, _, files in os.walk(tmp_path / "profile") for f in files]
    assert any(f.endswith(".xplane.pb") for f in traces), traces
    assert result["step"] == 8
    for a, b in zip(jax.tree.leaves(result["params"]), jax.tree.leaves(reference[1]["params"])):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    rows = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")]
    assert [r["step"] for r in rows if r["split"] == "train"] == [4, 8]


def test_schedule_groups_steps_into_calls_between_flush_points():
    schedule = loop.Schedule(total_steps=20, steps_per_epoch=10, steps_per_call=4, log_every=5)
    # flush points every 5 steps end calls: 4 steps where none falls inside them, else one step up to it
    expected = [(1, 4), (5, 1), (6, 4), (10, 1), (11, 4), (15, 1), (16, 4), (20, 1)]
    assert list(schedule.calls(0)) == expected
    schedule = loop.Schedule(total_steps=24, steps_per_epoch=12, steps_per_call=4, log_every=4)
    assert list(schedule.calls(0)) == [(1, 4), (5, 4), (9, 4), (13, 4), (17, 4), (21, 4)]
    assert list(schedule.calls(8)) == [(9, 4), (13, 4), (17, 4), (21, 4)]
    assert [s for s in range(1, 25) if schedule.evaluates(s)] == [12, 24]
    assert [s for s in range(1, 25) if schedule.checkpoints(s)] == [12, 24]


def test_batch_order_is_a_device_permutation_fixed_by_seed_and_epoch():
    rng = np.random.default_rng(0)
    arrays = {
        "image": rng.integers(0, 255, (50, 11, 11), dtype=np.uint8),
        "targets": rng.uniform(0, 10, (50, 5, 3)).astype(np.float32),
    }
    mesh = train.make_mesh()
    data = device_data.DeviceDataset(arrays, batch_size=8, seed=3, mesh=mesh)
    assert data.steps_per_epoch == 6  # the last 2 frames of each epoch's order are left out
    order = np.asarray(data.epoch_order(1))
    assert sorted(order) == list(range(50))
    again = device_data.DeviceDataset(arrays, batch_size=8, seed=3, mesh=mesh)
    np.testing.assert_array_equal(np.asarray(again.epoch_order(1)), order)
    assert not np.array_equal(np.asarray(data.epoch_order(0)), order)
    other = device_data.DeviceDataset(arrays, batch_size=8, seed=4, mesh=mesh)
    assert not np.array_equal(np.asarray(other.epoch_order(1)), order)
    # global step 8 (0-based) is the third batch of epoch 1
    batch = jax.jit(data.batch)(data.arrays, data.epoch_order(1), jnp.int32(8))
    images, targets = batch["image"], batch["targets"]
    rows = order[16:24]
    np.testing.assert_array_equal(np.asarray(images), arrays["image"][rows].astype(np.float32))
    np.testing.assert_array_equal(np.asarray(targets), arrays["targets"][rows])
    np.testing.assert_array_equal(data.host_batch_indices(8), rows)


def test_bfloat16_compute_trains_float32_parameters_to_nearly_the_float32_step():
    module = models.create("ista_net", stages=1, channels=4)
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, (8, 11, 11)).astype(np.float32)
    targets = np.concatenate([rng.uniform(2, 8, (8, 5, 2)), rng.uniform(220, 250, (8, 5, 1))], -1)
    targets = targets.astype(np.float32)
    variables = helpers.init(module, images)
    optimizer = optax.sgd(1e-6)
    mesh = train.make_mesh()
    out = {}
    for dtype in ("float32", "bfloat16"):
        cfg = train.default_config()
        cfg.compute_dtype = dtype
        step = train.make_train_step(module, optimizer, cfg, mesh)
        state = jax.tree.map(jnp.copy, train.init_state(variables, optimizer))
        out[dtype] = step(state, images, targets)
    (_, m32), (s16, m16) = out["float32"], out["bfloat16"]
    assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(s16["params"]))
    assert m16["loss"].dtype == jnp.float32
    assert float(m16["loss"]) != float(m32["loss"])  # it did compute in bfloat16
    np.testing.assert_allclose(float(m16["loss"]), float(m32["loss"]), rtol=2e-2)
    np.testing.assert_allclose(float(m16["grad_norm"]), float(m32["grad_norm"]), rtol=5e-2)
    maps32 = train.make_apply(module, mesh, compute_dtype="float32")(variables, images)
    maps16 = train.make_apply(module, mesh, compute_dtype="bfloat16")(variables, images)
    assert maps16.dtype == jnp.float32
    scale = float(jnp.max(jnp.abs(maps32)))
    assert float(jnp.max(jnp.abs(maps16 - maps32))) < 0.05 * scale


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"model": {"name": "resnet"}}, "config.model.name"),
        ({"optim": {"learning_rate": -1.0}}, "config.optim.learning_rate"),
        ({"compute_dtype": "float16"}, "config.compute_dtype"),
        ({"steps_per_call": 0}, "config.steps_per_call"),
        ({"profile_steps": "5,2"}, "config.profile_steps"),
        ({"profile_steps": "all"}, "config.profile_steps"),
        ({"seed": -1}, "config.seed"),
        ({"optim": {"batch_size": 128}}, "config.optim.batch_size"),
        ({"data": {"source": "ftp"}}, "data.source"),
        ({"optim": {"schedule": "linear"}}, "config.optim.schedule"),
        ({"loss": {"localizer": {"count_weight": -1.0}}}, "config.loss.localizer.count_weight"),
        ({"eval": {"every_epochs": 0}}, "config.eval.every_epochs"),
        ({"model": {"c": 0}}, "config.model.c"),
    ],
)
def test_bad_config_raises_clear_errors(tmp_path, overrides, field):
    cfg = tiny_config()
    cfg.update(overrides)
    with pytest.raises(ValueError, match=field):
        train.train_and_evaluate(cfg, str(tmp_path))


def test_cosine_schedule_decays_the_rate_to_zero_over_the_run():
    cfg = tiny_config()
    cfg.optim.learning_rate, cfg.optim.schedule = 1e-2, "cosine"
    with pytest.raises(ValueError, match="total_steps"):
        train.config.optimizer(cfg)
    opt = train.config.optimizer(cfg, total_steps=10)
    params = {"w": jnp.ones(3)}
    state = opt.init(params)
    grads = {"w": jnp.ones(3)}
    moves = []
    for _ in range(10):
        updates, state = opt.update(grads, state, params)
        moves.append(float(jnp.abs(updates["w"][0])))
    # Adam's first step is the rate itself; the steps shrink on the cosine and the last is 0-ish
    np.testing.assert_allclose(moves[0], 1e-2, rtol=1e-3)
    assert all(a > b for a, b in zip(moves, moves[1:])) and moves[-1] < 1e-3


MULTI_DEVICE_SCRIPT = textwrap.dedent(
    """
    import tempfile
    import jax, numpy as np, optax
    from csist_jax import models, train
    from csist_jax.train import device_data, step as step_lib

    assert jax.device_count() == 4, jax.devices()
    cfg = train.default_config()
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, (8, 11, 11)).astype(np.float32)
    targets = np.concatenate([rng.uniform(2, 8, (8, 5, 2)), rng.uniform(220, 250, (8, 5, 1))], -1)
    targets = targets.astype(np.float32)
    data = {"image": images.astype(np.uint8), "targets": targets}
    # plain SGD: the update is the gradient to scale (Adam's first step is lr * sign(g), which turns the
    # float rounding of a near-zero gradient entry into a difference of 2 lr)
    optimizer = optax.sgd(1e-7)
    dista = models.create("dista_net", stages=1, channels=4, hidden=16)
    ista = models.create("ista_net", stages=1, channels=4)
    start = {m: jax.jit(m.init)(jax.random.PRNGKey(0), images) for m in (dista, ista)}

    def fresh(module):
        return jax.tree.map(np.array, train.init_state(start[module], optimizer))

    results = []
    for devices in (jax.devices()[:1], jax.devices()):
        mesh = train.make_mesh(devices)
        step = train.make_train_step(dista, optimizer, cfg, mesh)
        state, measured = step(fresh(dista), images, targets)
        # the loop's form: two steps in one call, batches gathered from the split on the device
        dataset = device_data.DeviceDataset(data, batch_size=4, seed=0, mesh=mesh)
        names = step_lib.measurement_names(ista, optimizer, cfg, fresh(ista), dataset)
        steps = step_lib.make_device_steps(ista, optimizer, cfg, mesh, dataset, 2, names)
        state2, rows = steps(fresh(ista), dataset.arrays, dataset.epoch_order(0))
        results.append((state["params"], float(measured["loss"]), state2["params"], np.asarray(rows)))
    (p1, l1, q1, r1), (p4, l4, q4, r4) = results
    assert abs(l1 - l4) <= 1e-5 * abs(l1), (l1, l4)
    np.testing.assert_allclose(r1, r4, rtol=1e-4)
    for module, one, four in ((dista, p1, p4), (ista, q1, q4)):
        for a0, a, b in zip(*(jax.tree.leaves(t) for t in (start[module]["params"], one, four))):
            a0 = np.asarray(a0)
            update = np.asarray(a) - a0
            # each updated parameter is rounded to float32: one spacing of the parameter on top
            bound = 1e-3 * np.max(np.abs(update)) + np.spacing(np.abs(a0))
            excess = np.abs(np.asarray(b) - a0 - update) / bound
            assert np.all(excess <= 1), excess.max()
    # a batch that does not split evenly over the devices is refused before any work
    bad = train.default_config()
    bad.optim.batch_size = 6
    try:
        train.train_and_evaluate(bad, tempfile.mkdtemp())
    except ValueError as err:
        assert "config.optim.batch_size (6) must be divisible by the 4 devices" in str(err), err
    else:
        raise AssertionError("batch_size 6 on 4 devices was accepted")
    print("OK", l1, l4)
    """
)


@pytest.mark.slow
def test_four_cpu_devices_give_the_same_update_as_one():
    """Updates on a 4-device mesh vs 1 device: DISTA-Net's host-batch step (loss within 1e-5 relative) and
    two steps of the loop's on-device-data call (ISTA-Net, measurements within 1e-4); every parameter
    update within 1e-3 of its largest entry (plus the float32 rounding of the updated parameter). A batch
    size not divisible by 4 is refused."""
    env = helpers.subprocess_env(XLA_FLAGS="--xla_force_host_platform_device_count=4")
    proc = subprocess.run(
        [sys.executable, "-c", MULTI_DEVICE_SCRIPT], env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "OK" in proc.stdout


def test_lista_whose_layers_share_an_initial_array_trains(tmp_path):
    cfg = tiny_config(model={"name": "lista"}, optim={"num_steps": 1})
    cfg.model.channels = None
    result = train.train_and_evaluate(cfg, str(tmp_path))
    assert result["step"] == 1
    assert all(np.all(np.isfinite(np.asarray(p))) for p in jax.tree.leaves(result["params"]))


def test_a_killed_noise_trained_run_resumes_bit_identically(tmp_path, monkeypatch):
    """Training noise (read noise 0-5, background 0-2 per sample) reaches the updates, and a run killed
    at step 5 resumes to the uninterrupted run's parameters, bit for bit."""

    def config(**data):
        noise = {"noise_std": (0.0, 5.0), "background": (0.0, 2.0), **data}
        return tiny_config(data=noise, checkpoint_every_steps=2)

    reference = train.train_and_evaluate(config(), str(tmp_path / "whole"))
    noise_free = train.train_and_evaluate(
        config(noise_std=(0.0, 0.0), background=(0.0, 0.0)), str(tmp_path / "clean")
    )
    assert not np.array_equal(
        np.asarray(jax.tree.leaves(reference["params"])[0]),
        np.asarray(jax.tree.leaves(noise_free["params"])[0]),
    ), "the noise must reach the updates"
    helpers.train_killed_at(5, config(), tmp_path / "killed", monkeypatch)
    resumed = train.train_and_evaluate(config(), str(tmp_path / "killed"))
    assert resumed["step"] == reference["step"] == 8
    jax.tree.map(np.testing.assert_array_equal, resumed["params"], reference["params"])


def test_a_tiny_localizer_run_writes_best_and_reloads(tmp_path):
    """The learned localiser through ``train_and_evaluate`` (32 frames, batch 16, one epoch): point
    metrics in the validation row, and the best network reloads to the trained outputs."""
    cfg = tiny_config(
        model={"name": "localizer", "channels": 8},
        data={"train_size": 32, "val_size": 32},
        optim={"num_epochs": 1},
        log_every_steps=1,
    )
    result = train.train_and_evaluate(cfg, str(tmp_path))
    assert result["step"] == 2
    assert {"mAP", "AP05", "count_accuracy", "rmse"} <= set(result["val"])
    assert os.path.isfile(tmp_path / "best" / "model.json")
    module, variables = models.load_checkpoint(tmp_path / "best")
    assert models.is_localizer(module) and module.channels == 8
    images = jnp.asarray(csist100k.generate(seed=0, n=32)["image"][:4], jnp.float32)
    trained = {"params": result["params"], "constants": result["constants"]}
    apply = jax.jit(module.apply)
    got, want = apply(variables, images), apply(trained, images)
    for key in want:
        np.testing.assert_allclose(got[key], want[key], rtol=1e-6, atol=1e-6, err_msg=key)
