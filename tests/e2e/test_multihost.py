"""Multi-host data parallel training (issue 23, item 6): two ``jax.distributed`` processes on this machine's
CPU (one device each, collectives over Gloo) train the suite's tiny run (``tests.helpers.tiny_config``)
into one shared workdir and end where a single process does (within float32 rounding); the checkpoints
and logs are written once, and a second two-process launch on the workdir resumes and lengthens the run."""

from __future__ import annotations

import json
import os
import sys

import numpy as np
import pytest

from tests import helpers
from tests.e2e import multihost_worker

ROOT = helpers.ROOT
WORKER = os.path.join(ROOT, "tests", "e2e", "multihost_worker.py")
#: seconds one two-process launch may take (about 30 s on an idle 2-core machine)
LAUNCH_TIMEOUT_S = 420


def _launch(workdir, num_epochs: int, out_dir) -> list[dict]:
    """Both processes of one job; each one's ``OUT.npz`` contents."""
    port = helpers.free_port()
    outs = [os.path.join(out_dir, f"process{i}-{num_epochs}.npz") for i in range(2)]
    commands = [[sys.executable, WORKER, i, port, workdir, num_epochs, outs[i]] for i in range(2)]
    done = helpers.run_together(commands, env=helpers.subprocess_env(), timeout=LAUNCH_TIMEOUT_S)
    for i, (code, log) in enumerate(done):
        assert code == 0, f"process {i}:\n{log[-4000:]}"
    return [dict(np.load(out)) for out in outs]


def _params(result: dict) -> dict:
    return {k: v for k, v in result.items() if k.startswith("params/")}


def _assert_close(got: dict, want: dict) -> None:
    assert sorted(got) == sorted(want)
    for key in want:
        scale = float(np.max(np.abs(want[key])))
        np.testing.assert_allclose(got[key], want[key], rtol=1e-5, atol=1e-6 * scale, err_msg=key)


def _single(workdir, num_epochs: int, out_dir) -> dict:
    out = os.path.join(out_dir, f"single-{num_epochs}.npz")
    multihost_worker.run(str(workdir), num_epochs, out)
    return dict(np.load(out))


@pytest.mark.slow
def test_two_processes_train_like_one_write_once_and_resume(tmp_path):
    shared, single = tmp_path / "shared", tmp_path / "single"

    first = _launch(shared, 2, tmp_path)
    want = _single(single, 2, tmp_path)
    assert [int(r["processes"]) for r in first] == [2, 2] and int(first[0]["devices"]) == 2
    assert [int(r["step"]) for r in first] == [8, 8] == [int(want["step"])] * 2
    for result in first:  # both processes hold the single-process parameters
        _assert_close(_params(result), _params(want))
    # written once: each checkpoint step once (no process-1 copies or half-written directories), one
    # log row per step, one best network
    assert sorted(os.listdir(shared / "checkpoints")) == ["4", "8"]
    assert not (shared / "checkpoints.unreadable").exists()
    rows = [json.loads(line) for line in open(shared / "metrics.jsonl")]
    assert [(r["split"], r["step"]) for r in rows] == [
        (r["split"], r["step"]) for r in map(json.loads, open(single / "metrics.jsonl"))
    ]
    assert (shared / "best" / "model.json").is_file() and not (shared / ".lock").exists()

    # a second launch resumes from step 8 and lengthens the run (a constant schedule) to 3 epochs
    resumed = _launch(shared, 3, tmp_path)
    want = _single(single, 3, tmp_path)
    assert [int(r["step"]) for r in resumed] == [12, 12] and [int(r["trained"]) for r in resumed] == [4, 4]
    assert int(want["trained"]) == 4
    for result in resumed:
        _assert_close(_params(result), _params(want))
    assert sorted(os.listdir(shared / "checkpoints"), key=int) == ["8", "12"]
    history = [json.loads(line) for line in open(shared / "config_history.jsonl")]
    assert [(h["step"], h["changed"]) for h in history] == [(8, {"optim.num_epochs": [2, 3]})]
