"""experiments.localizer_table: a tiny run writes every table (gate sweep, 8-bit and float rows, the CRB
rows) with well-formed numbers; a checkpoint that is not a localiser fails by name."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import pytest

from csist_jax import models
from experiments import localizer_table as table


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("runs") / "localizer"
    config = {"stages": 1, "channels": 4}
    net = models.create("localizer", c=3, **config)
    variables = net.init(jax.random.PRNGKey(0), jnp.zeros((1, 11, 11)))
    models.save_model(path, "localizer", 3, config, variables)
    return path


def test_a_tiny_run_writes_every_table(checkpoint, tmp_path):
    out = tmp_path / "out"
    args = [f"--checkpoint={checkpoint}", "--test-size=16", "--val-size=16", "--repeats=1", f"--out={out}"]
    assert table.main(args + ["--batch=8", "--grid=experiments/checkpoints/ista_net_plus_c3_cpu"]) == 0
    dump = json.load(open(out / "localizer_table.json"))
    assert [r["max_cost"] for r in dump["gate"]] == [10.0, 15.0, 25.0, 40.0, 80.0]
    methods = [r["method"] for r in dump["image"]]
    assert methods[0] == "exact HR label, on its grid" and "**refine.localize**" in methods
    assert "**learned + polish**" in methods and methods[-1].startswith("oracle fit")
    assert len(dump["clean"]) == 6  # no grid rows on float frames
    for row in dump["image"] + dump["clean"]:
        assert 0.0 <= row["mAP"] <= 1.0
        if row["fps"] is not None:
            assert row["fps"] > 0
        if row["count_accuracy"] is not None and not row["method"].startswith("oracle"):
            assert "x localize" in row["note"]  # every point method beside localize's speed
    # the oracle (true start and count) is exact on unquantised frames
    assert dump["clean"][-1]["mAP"] > 0.99
    assert {r["count"] for r in dump["crb"]} <= {1, 2, 3, 4, 5} and all(r["crb"] > 0 for r in dump["crb"])
    assert "against the CRB" in (out / "localizer_table.md").read_text()


def test_a_map_network_checkpoint_is_refused(tmp_path, capsys):
    with pytest.raises(SystemExit):
        table.main(["--checkpoint=experiments/checkpoints/ista_net_plus_c3_cpu", "--test-size=4"])
    assert "not a learned localiser" in capsys.readouterr().err
