"""Durable runs and checked arguments (issue 23): a workdir belongs to one run (its lock), results are never
silently started over, a resume continues the same experiment, and every config field is checked."""

from __future__ import annotations

import datetime
import importlib.util
import json
import os
import re
import shutil
import socket
import subprocess
import sys

import pytest

from csist_jax import train
from csist_jax.train import config as config_lib
from csist_jax.train import workdir as workdir_lib
from tests import helpers
from tests.helpers import tiny_config


def _files(directory) -> dict:
    """``{relative path: bytes}`` of every file under ``directory``."""
    out = {}
    for root, _, names in os.walk(directory):
        for name in names:
            path = os.path.join(root, name)
            with open(path, "rb") as f:
                out[os.path.relpath(path, directory)] = f.read()
    return out


def _rows(workdir) -> list[dict]:
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f if line.strip()]


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """One finished tiny run (2 epochs of 4 steps): its workdir."""
    workdir = tmp_path_factory.mktemp("finished")
    result = train.train_and_evaluate(tiny_config(), str(workdir))
    assert result["step"] == 8
    assert not os.path.exists(workdir / ".lock"), "the lock is released when the run ends"
    return workdir


@pytest.fixture
def copy(finished, tmp_path):
    """A copy of the finished run's workdir to rerun in."""
    workdir = tmp_path / "run"
    shutil.copytree(finished, workdir)
    return workdir


def _write_lock(workdir, **holder) -> None:
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, ".lock"), "w") as f:
        json.dump(holder, f)


def _now() -> str:
    return datetime.datetime.now().astimezone().isoformat(timespec="seconds")


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


# 1. a workdir belongs to one run ----------------------------------------------------------------------


def test_a_second_run_on_a_live_workdir_refuses_naming_the_holder(tmp_path):
    start = _now()
    _write_lock(tmp_path, host=socket.gethostname(), pid=os.getpid(), start=start)
    expected = f"in use by another run (host {socket.gethostname()}, pid {os.getpid()}, started {start})"
    with pytest.raises(workdir_lib.WorkdirBusy, match=re.escape(f"{tmp_path} is in use")) as caught:
        train.train_and_evaluate(tiny_config(), str(tmp_path))
    assert expected in str(caught.value)
    assert os.listdir(tmp_path) == [".lock"], "refused before writing anything"
    with open(tmp_path / ".lock") as f:
        assert json.load(f)["start"] == start, "the holder's lock is left alone"


def test_a_lock_left_by_a_killed_run_is_reported_and_taken_over(copy):
    pid = _dead_pid()
    _write_lock(copy, host=socket.gethostname(), pid=pid, start="2024-01-01T00:00:00+00:00")
    with pytest.warns(RuntimeWarning, match=rf"taking over the lock of a run that was killed .*pid {pid}"):
        result = train.train_and_evaluate(tiny_config(), str(copy))
    assert result["step"] == 8  # the finished run, resumed: no steps left
    assert not os.path.exists(copy / ".lock")


def test_a_lock_whose_pid_was_reused_or_on_another_host(tmp_path):
    """The pid alive but started after the lock was written (a reboot reused it): taken over. Another
    host's lock cannot be checked from here: refused, naming it and the file to delete."""
    if os.path.exists("/proc/self/stat"):  # process start times are read from Linux's /proc
        _write_lock(tmp_path, host=socket.gethostname(), pid=os.getpid(), start="2000-01-01T00:00:00+00:00")
        with pytest.warns(RuntimeWarning, match="started after the lock was written"):
            lock = workdir_lib.Lock(str(tmp_path)).acquire()
        with open(tmp_path / ".lock") as f:
            assert json.load(f)["start"] != "2000-01-01T00:00:00+00:00"
        lock.release()
        assert not os.path.exists(tmp_path / ".lock")
    _write_lock(tmp_path, host="elsewhere", pid=_dead_pid(), start="2000-01-01T00:00:00+00:00")
    with pytest.raises(workdir_lib.WorkdirBusy, match=r"host elsewhere.*delete .*\.lock"):
        workdir_lib.Lock(str(tmp_path)).acquire()


# 2. results are never silently started over -----------------------------------------------------------


def test_results_without_a_checkpoint_are_refused_then_moved_aside_by_restart(copy):
    shutil.rmtree(copy / "checkpoints")
    best = _files(copy / "best")
    old_rows = _rows(copy)
    with pytest.raises(workdir_lib.NotResumable) as caught:
        train.train_and_evaluate(tiny_config(), str(copy))
    message = str(caught.value)
    assert "holds the results of an earlier run (metrics.jsonl, best" in message
    assert "another --workdir" in message and "config.restart=True" in message
    assert _files(copy / "best") == best and _rows(copy) == old_rows
    assert not os.path.exists(copy / ".lock")

    with pytest.warns(UserWarning, match="config.restart: the earlier run in .* was moved to"):
        result = train.train_and_evaluate(tiny_config(restart=True), str(copy))
    assert result["step"] == 8
    (previous,) = [d for d in os.listdir(copy) if d.startswith("previous-")]
    assert _files(copy / previous / "best") == best and _rows(copy / previous) == old_rows
    # the new logs are one history: each step once, in order
    steps = [r["step"] for r in _rows(copy) if r["split"] == "train"]
    assert steps == [2, 4, 6, 8]
    assert sorted(int(s) for s in os.listdir(copy / "checkpoints")) == [4, 8]


def test_unreadable_checkpoints_spell_out_the_choices(copy):
    for root, _, names in os.walk(copy / "checkpoints"):
        for name in names:
            open(os.path.join(root, name), "w").close()  # every file of every checkpoint emptied
    directory = os.path.join(copy, "checkpoints")
    with (
        pytest.warns(RuntimeWarning),
        pytest.raises(RuntimeError, match=re.escape(f"no readable checkpoint in {directory}")) as caught,
    ):
        train.train_and_evaluate(tiny_config(), str(copy))
    assert "config.restart=True" in str(caught.value) and "another --workdir" in str(caught.value)


# 3. a resume continues the same experiment ------------------------------------------------------------


def test_a_resume_with_another_learning_rate_is_refused_naming_the_field(copy):
    saved = (copy / "config.json").read_text()
    with pytest.raises(
        workdir_lib.ConfigMismatch, match=r"config\.optim\.learning_rate: 0\.001 -> 0\.002"
    ) as caught:
        train.train_and_evaluate(tiny_config(optim={"learning_rate": 2e-3}, log_every_steps=4), str(copy))
    assert "config.log_every_steps" not in str(caught.value), "a cadence change is not a difference"
    assert (copy / "config.json").read_text() == saved
    assert not os.path.exists(copy / "config_history.jsonl") and not os.path.exists(copy / ".lock")


def test_a_resume_with_more_epochs_extends_the_run_and_is_recorded(copy):
    result = train.train_and_evaluate(tiny_config(optim={"num_epochs": 3}, log_every_steps=4), str(copy))
    assert result["step"] == 12
    (line,) = (copy / "config_history.jsonl").read_text().splitlines()
    entry = json.loads(line)
    assert entry["step"] == 8 and entry["time"]
    assert entry["changed"] == {"log_every_steps": [2, 4], "optim.num_epochs": [2, 3]}
    assert json.loads((copy / "config.json").read_text())["optim"]["num_epochs"] == 3
    val = [r["step"] for r in _rows(copy) if r["split"] == "val"]
    assert val == [4, 8, 12]
    # a shorter run than the saved one is refused (once the steps per epoch are known)
    with pytest.raises(
        workdir_lib.ConfigMismatch, match=r"config\.optim\.num_epochs: 3 -> 2 .*shortens the run"
    ):
        train.train_and_evaluate(tiny_config(), str(copy))


def test_what_a_resume_may_change():
    saved = json.loads(tiny_config().to_json_best_effort())
    defaults = train.default_config()

    def compare(**overrides):
        return workdir_lib.compare("w", saved, tiny_config(**overrides), defaults)

    assert compare(eval={"batch_size": 64}, progress=True, restart=True) == {
        "eval.batch_size": (32, 64),
        "progress": (False, True),
    }
    with pytest.raises(
        workdir_lib.ConfigMismatch, match=r"config\.model\.stages: 1 -> 2.*config\.seed: 0 -> 1"
    ):
        cfg = tiny_config(seed=1)
        cfg.model.stages = 2
        workdir_lib.compare("w", saved, cfg, defaults)
    with pytest.raises(workdir_lib.ConfigMismatch, match=r"config\.data\.train_size: 64 -> 128"):
        compare(data={"train_size": 128})
    # the length: the same total in another form, or longer under a constant schedule
    assert workdir_lib.length_change("w", saved, tiny_config(optim={"num_steps": 8}), defaults, 4) == {
        "optim.num_steps": (0, 8)
    }
    assert workdir_lib.length_change("w", saved, tiny_config(optim={"num_steps": 9}), defaults, 4) == {
        "optim.num_steps": (0, 9)
    }
    with pytest.raises(workdir_lib.ConfigMismatch, match="shortens the run from 8 to 6 steps"):
        workdir_lib.length_change("w", saved, tiny_config(optim={"num_steps": 6}), defaults, 4)
    cosine = json.loads(tiny_config(optim={"schedule": "cosine"}).to_json_best_effort())
    longer = tiny_config(optim={"schedule": "cosine", "num_epochs": 3})
    with pytest.raises(workdir_lib.ConfigMismatch, match="schedule='cosine'"):
        workdir_lib.length_change("w", cosine, longer, defaults, 4)


def test_a_workdir_written_before_the_config_groups_resumes(copy):
    """A workdir whose config.json is of the flat layout of before the groups resumes (here: lengthened)
    as the same run; the history notes the layout and config.json is rewritten grouped."""
    (copy / "config.json").write_text(json.dumps(_flat_layout(tiny_config()), indent=1))
    result = train.train_and_evaluate(tiny_config(optim={"num_epochs": 3}), str(copy))
    assert result["step"] == 12
    (line,) = (copy / "config_history.jsonl").read_text().splitlines()
    entry = json.loads(line)
    assert entry["changed"] == {"optim.num_epochs": [2, 3]} and "flat layout" in entry["note"]
    saved = json.loads((copy / "config.json").read_text())
    assert not config_lib.is_flat(saved) and saved["optim"]["num_epochs"] == 3


def _flat_layout(cfg) -> dict:
    """``cfg`` as the flat ``config.json`` of before the config's groups (``config.FLAT_NAMES``)."""
    grouped = json.loads(cfg.to_json_best_effort())
    dotted = config_lib.flatten(grouped)
    flat = {k: v for k, v in grouped.items() if k not in config_lib.GROUPS}
    flat["data"] = {k: v for k, v in grouped["data"].items() if k != "window"}
    for old, new in config_lib.FLAT_NAMES.items():
        if new == "model":
            flat[old] = {k: v for k, v in grouped["model"].items() if k not in config_lib.MODEL_FIELDS}
        else:
            flat[old] = dotted[new]
    return flat


def test_a_workdir_of_the_flat_config_resumes_as_the_same_run():
    """A config.json written before the config's groups (flat) reads as the same run: no difference,
    its length and cadence changes named by their new dotted paths."""
    grouped = tiny_config()
    flat = _flat_layout(grouped)
    assert config_lib.is_flat(flat) and not config_lib.is_flat(grouped)
    assert config_lib.upgrade(flat) == json.loads(grouped.to_json_best_effort())
    defaults = train.default_config()
    assert workdir_lib.compare("w", flat, grouped, defaults) == {}
    assert workdir_lib.compare("w", flat, tiny_config(eval={"batch_size": 64}), defaults) == {
        "eval.batch_size": (32, 64)
    }
    assert workdir_lib.length_change("w", flat, tiny_config(optim={"num_epochs": 3}), defaults, 4) == {
        "optim.num_epochs": (2, 3)
    }
    with pytest.raises(
        workdir_lib.ConfigMismatch, match=r"config\.loss\.unfolding\.sym_weight: 0\.01 -> 0\.1"
    ):
        workdir_lib.compare("w", flat, tiny_config(loss={"unfolding": {"sym_weight": 0.1}}), defaults)


# 4. every config field checked ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            {"optim": {"learning_rat": 1e-3}},
            r"config\.optim\.learning_rat is not a field .*did you mean config\.optim\.learning_rate\?",
        ),
        (
            {"learning_rate": 1e-3},
            r"config\.learning_rate is not a field .*it is config\.optim\.learning_rate now",
        ),
        (
            {"loss": {"localizer": {"count_weigth": 1.0}}},
            r"config\.loss\.localizer\.count_weigth is not a field of config\.loss\.localizer "
            r"\(did you mean config\.loss\.localizer\.count_weight\?",
        ),
        (
            {"model": {"stage": 2}},
            r"config\.model\.stage is not a field of model 'ista_net' "
            r"\(did you mean config\.model\.stages\?",
        ),
        (
            {"data": {"trian_size": 64}},
            r"config\.data\.trian_size is not a field of config\.data "
            r"\(did you mean config\.data\.train_size\?",
        ),
        (
            {"model": {"name": "lista", "channels": 4}},
            r"config\.model\.channels is not a field of model 'lista'",
        ),
        (
            {"loss": {"unfolding": {"sym_weight": float("nan")}}},
            r"config\.loss\.unfolding\.sym_weight must be a finite number, got nan",
        ),
        (
            {"optim": {"weight_decay": float("inf")}},
            r"config\.optim\.weight_decay must be a finite number, got inf",
        ),
        (
            {"loss": {"localizer": {"count_weight": float("inf")}}},
            r"config\.loss\.localizer\.count_weight must be a finite number",
        ),
        (
            {"eval": {"brightness_threshold": float("nan")}},
            r"config\.eval\.brightness_threshold must be a finite number",
        ),
        ({"optim": {"learning_rate": float("nan")}}, r"config\.optim\.learning_rate must be a finite number"),
        ({"model": {"step_init": float("nan")}}, r"config\.model\.step_init must be a finite number"),
        ({"data": {"val_size": 0}}, r"config\.data\.val_size must be an integer >= 1, got 0"),
    ],
)
def test_every_field_is_checked(tmp_path, overrides, message):
    cfg = tiny_config()
    cfg.update(overrides)
    with pytest.raises(ValueError, match=message):
        train.train_and_evaluate(cfg, str(tmp_path))
    assert os.listdir(tmp_path) == [], "refused before the workdir is touched"


def test_model_fields_beyond_the_placeholders_are_accepted():
    cfg = tiny_config(model={"name": "dista_net"})
    cfg.model.hidden = 16
    assert config_lib.resolve(cfg).model.hidden == 16
    with pytest.raises(ValueError, match=r"config\.model\.hiden .*did you mean config\.model\.hidden\?"):
        config_lib.resolve({"model": {"name": "dista_net", "hiden": 16}})


def test_a_misspelt_field_in_a_config_file_is_named(tmp_path):
    path = tmp_path / "my_config.py"
    path.write_text(
        "from csist_jax import train\n\n\ndef get_config():\n"
        "    cfg = train.default_config()\n    cfg.num_epoch = 3\n    return cfg\n"
    )
    spec = importlib.util.spec_from_file_location("my_config", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    with pytest.raises(
        ValueError, match=r"config\.num_epoch is not a field .*did you mean config\.optim\.num_epochs\?"
    ):
        config_lib.resolve(module.get_config())


#: the killed process: the test's tiny run, 6 epochs, a checkpoint every 2 steps
_KILLED_WORKER = """
import sys
from tests.helpers import tiny_config
from csist_jax import train
train.train_and_evaluate(tiny_config(optim={"num_epochs": 6}, checkpoint_every_steps=2), sys.argv[1])
"""


@pytest.mark.slow
def test_sigkill_at_random_points_then_resume_gives_the_uninterrupted_run(tmp_path):
    """SIGKILL a training process at random moments (three times), resume after each, and end with the
    parameters of an uninterrupted run, bit for bit; the killed runs' locks are taken over.

    Each process lives about 10-20 s (start-up, compilation, 24 steps); the kills come 2-9 s after its
    start, in the start-up, the compilation or the steps. A process that ends first is not waited for."""
    import random
    import signal
    import warnings

    import jax
    import numpy as np

    reference = train.train_and_evaluate(
        tiny_config(optim={"num_epochs": 6}, checkpoint_every_steps=2), str(tmp_path / "whole")
    )
    workdir = tmp_path / "killed"
    rng = random.Random(0)
    for _ in range(3):
        proc = subprocess.Popen([sys.executable, "-c", _KILLED_WORKER, str(workdir)], cwd=helpers.ROOT)
        try:
            proc.wait(timeout=rng.uniform(2.0, 9.0))  # returns early if the run ends first
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=60)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a lock left by the killed process is reported and taken over
        resumed = train.train_and_evaluate(
            tiny_config(optim={"num_epochs": 6}, checkpoint_every_steps=2), str(workdir)
        )
    assert resumed["step"] == reference["step"] == 24
    jax.tree.map(np.testing.assert_array_equal, resumed["params"], reference["params"])
