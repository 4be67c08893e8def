"""DeRefNet and the per-frame networks on SeqCSIST through the one training route
(``csist_jax.train.train_and_evaluate``): windows cut on the device by the dataset's windowing rule,
exact resume, the configs, and clear errors."""

from __future__ import annotations

import glob
import importlib
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from csist_jax import models, train
from csist_jax.data import seqcsist
from csist_jax.train import config as config_lib
from csist_jax.train import device_data
from tests import helpers

ROOT = helpers.ROOT


def tiny_derefnet(**overrides):
    """2 training trajectories cut into windows of 3 (36 windows), batch 12: 3 steps per epoch (the
    suite's tiny run, ``helpers.tiny_config``, as a 1-stage, 4-channel DeRefNet on SeqCSIST)."""
    cfg = helpers.tiny_config(
        model={"name": "derefnet", "residual_blocks": 1},
        data={"dataset": "seqcsist", "window": 3, "train_size": 2, "val_size": 1},
        optim={"batch_size": 12, "weight_decay": 1e-5},
        eval={"brightness_threshold": 70.0, "batch_size": 18},
        log_every_steps=1,
        checkpoint_every_steps=2,
    )
    cfg.update(overrides)
    return cfg


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("derefnet")
    return workdir, train.train_and_evaluate(tiny_derefnet(), str(workdir))


def test_derefnet_trains_through_train_and_evaluate(reference):
    workdir, result = reference
    assert result["step"] == 6
    rows = [json.loads(line) for line in open(workdir / "metrics.jsonl")]
    train_rows = [r for r in rows if r["split"] == "train"]
    assert {"loss", "regression", "symmetry", "alignment", "grad_norm"} <= set(train_rows[0])
    losses = [r["loss"] for r in train_rows]
    assert np.all(np.isfinite(losses)) and losses[-1] < losses[0], losses
    val = [r for r in rows if r["split"] == "val"]
    assert [r["step"] for r in val] == [3, 6] and all(0.0 <= r["mAP"] <= 1.0 for r in val)
    assert (workdir / "curves.png").is_file()
    # the best network reloads with its window length and trajectory length
    module, variables = models.load_checkpoint(workdir / "best")
    assert models.is_sequence_model(module) and module.n_frames == seqcsist.N_FRAMES
    assert models.read_meta(workdir / "best")["window"] == 3
    cut = seqcsist.windows(seqcsist.generate(0, 1, start=seqcsist.SPLIT_START["val"]), length=3)
    maps = module.apply(variables, jnp.asarray(cut["image"][:4], jnp.float32), cut["frame"][:4])
    assert maps.shape == (4, 33, 33) and np.all(np.isfinite(np.asarray(maps)))


def test_killed_and_resumed_derefnet_run_ends_with_the_same_parameters(reference, tmp_path, monkeypatch):
    helpers.train_killed_at(5, tiny_derefnet(), tmp_path, monkeypatch)
    saved = sorted(int(d) for d in os.listdir(tmp_path / "checkpoints") if d.isdigit())
    assert saved and max(saved) < 6, saved
    resumed = train.train_and_evaluate(tiny_derefnet(), str(tmp_path))
    assert resumed["step"] == 6
    jax.tree.map(np.testing.assert_array_equal, resumed["params"], reference[1]["params"])


def test_device_windows_are_the_host_windows():
    """The training step's windows (cut on the device) equal ``seqcsist.windows`` sample for sample."""
    data = seqcsist.generate(3, 3)
    for length in (3, 5, 7):
        host = seqcsist.windows(data, length=length)
        dataset = device_data.DeviceDataset(data, batch_size=8, seed=0, mesh=train.make_mesh(), window=length)
        assert dataset.num_frames == len(host["frame"]) == 3 * (20 - length + 1)
        order = jnp.asarray(np.random.default_rng(length).permutation(dataset.num_frames), jnp.int32)
        for step in range(dataset.steps_per_epoch):
            batch = jax.jit(dataset.batch)(dataset.arrays, order, jnp.int32(step))
            idx = np.asarray(order[step * 8 : (step + 1) * 8])
            np.testing.assert_array_equal(np.asarray(batch["image"]), host["image"][idx].astype(np.float32))
            np.testing.assert_array_equal(np.asarray(batch["targets"]), host["targets"][idx])
            np.testing.assert_array_equal(np.asarray(batch["frame"]), host["frame"][idx])


def test_window_frames_is_the_published_windowing():
    trajectory, frames = seqcsist.window_frames(np.arange(32), 20, 5)
    assert trajectory.tolist() == [0] * 16 + [1] * 16
    assert frames[0].tolist() == [0, 1, 2, 3, 4] and frames[15].tolist() == [15, 16, 17, 18, 19]
    assert frames[16].tolist() == [0, 1, 2, 3, 4]


def _experiment_configs():
    """Every ``file:variant`` of ``experiments/configs`` (the zoo's: tests/unit/test_config_groups.py)."""
    from experiments.configs import cpu, published, seqcsist

    names = [f"cpu:{v}" for v in cpu.VARIANTS] + [f"seqcsist:{v}" for v in seqcsist.VARIANTS]
    names += [f"published:{n}" for n in published.NETWORKS] + [f"published:dista_net,{c}" for c in (5, 7)]
    paths = glob.glob(os.path.join(ROOT, "experiments", "configs", "*.py"))
    files = {os.path.basename(p)[:-3] for p in paths}
    assert files == {"__init__", "common", "cpu", "published", "seqcsist", "zoo"}, "a config file untested"
    return names


@pytest.mark.parametrize("name", _experiment_configs())
def test_every_experiment_config_passes_the_checks(name):
    file, arg = name.split(":")
    module = importlib.import_module(f"experiments.configs.{file}")
    resolved = config_lib.resolve(module.get_config(arg))
    assert resolved.model.name in models.MODEL_NAMES + models.SEQUENCE_MODEL_NAMES + models.LOCALIZER_NAMES
    assert f"experiments/configs/{file}.py" in module.__doc__, "the docstring gives the command"
    assert f"``{arg}``" in module.__doc__, "the docstring names the variant"


def test_seqcsist_cpu_budget_is_equal_across_networks():
    from experiments.configs import common

    budgets = [common.seqcsist_cpu(m) for m in ("derefnet", "ista_net", "ista_net_plus", "dista_net")]
    for cfg in budgets[1:]:
        assert cfg.optim.to_dict() == budgets[0].optim.to_dict()
        assert cfg.eval.brightness_threshold == budgets[0].eval.brightness_threshold
        assert {**cfg.data.to_dict(), "window": 5} == budgets[0].data.to_dict()
    assert budgets[0].data.window == 5 and all(cfg.data.window == 0 for cfg in budgets[1:])


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"data": {"dataset": "csist100k"}}, "config.data.dataset"),
        ({"data": {"window": 4}}, "config.data.window"),
        ({"loss": {"derefnet": {"objective": "mine"}}}, "config.loss.derefnet.objective"),
        ({"optim": {"weight_decay": -1.0}}, "config.optim.weight_decay"),
        ({"data": {"dataset": "seqcsist100"}}, "config.data.dataset"),
    ],
)
def test_bad_sequence_config_names_the_field(overrides, field):
    cfg = tiny_derefnet()
    cfg.update(overrides)
    with pytest.raises(ValueError, match=field):
        config_lib.resolve(cfg)


def test_single_frame_network_with_a_window_names_the_field():
    cfg = tiny_derefnet(model={"name": "ista_net"})
    with pytest.raises(ValueError, match="config.data.window"):
        config_lib.resolve(cfg)
