"""experiments.seqcsist_table: a tiny run writes well-formed rows beside the published ones; a missing
checkpoint is an error naming it; bad arguments fail by name."""

from __future__ import annotations

import json
import math

import jax
import jax.numpy as jnp
import pytest

from csist_jax import models
from experiments import seqcsist_table as table

TINY = ["--trajectories=2", "--val-trajectories=2", "--iterations=5", "--lams=10,30", "--batch=64"]
AP_KEYS = ("mAP", "AP05", "AP10", "AP15", "AP20", "AP25")


def _save(runs, model: str, config: dict, *inputs, info=None) -> None:
    net = models.create(model, c=3, **config)
    variables = net.init(jax.random.PRNGKey(0), *inputs)
    models.save_model(runs / f"seq_cpu_{model}" / "best", model, 3, config, variables, info)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A runs directory holding only a freshly initialised one-stage ISTA-Net+."""
    runs = tmp_path_factory.mktemp("runs")
    _save(runs, "ista_net_plus", {"stages": 1, "channels": 4}, jnp.zeros((1, 11, 11)))
    return runs


def _read(out):
    rows = [json.loads(line) for line in open(out.with_suffix(".json"))]
    return rows, out.read_text()


def _well_formed(row: dict) -> None:
    for key in AP_KEYS:
        assert math.isfinite(row[key]) and 0.0 <= row[key] <= 100.0, (row["method"], key, row[key])


def test_tiny_run_scores_every_row_beside_the_published_ones(runs, tmp_path):
    out = tmp_path / "table.md"
    args = [f"--runs={runs}", "--rows=label,analytic,networks,derefnet", "--noise=0,2", f"--out={out}"]
    assert table.main(TINY + args + ["--models=ista_net_plus"]) == 0
    rows, text = _read(out)
    measured = {r["method"]: r for r in rows if r["table"] == "comparison" and r["source"] == "measured"}
    assert list(measured) == ["exact HR label", "ISTA", "FISTA", "ISTA-Net+"]
    for row in measured.values():
        _well_formed(row)
        assert row["noise"] == 0.0
    for name in ("ISTA", "FISTA", "ISTA-Net+"):
        assert measured[name]["fps"] > 0
    assert measured["ISTA"]["published_mAP"] == 10.72 and measured["ISTA-Net+"]["published_mAP"] == 51.02
    assert measured["exact HR label"]["mAP"] > 30  # the grid ceiling: far above an untrained network
    published = {r["method"]: r for r in rows if r["source"] == "published"}
    assert (
        published["DeRefNet (published)"]["mAP"] == 51.55 and published["ISTA (published)"]["AP25"] == 24.53
    )
    for value in ("10.72", "48.95", "51.02", "51.55", "49.09 (2)", "47.23 (5)"):
        assert value in text
    noise = [r for r in rows if r["table"] == "noise"]
    assert [(r["method"], r["noise"]) for r in noise] == [("ISTA-Net+", 0.0), ("ISTA-Net+", 2.0)]
    for row in noise:
        _well_formed(row)
    assert "| ISTA-Net+, centre frame |" in text and "mAP, sigma 2" in text
    assert "| DeRefNet (published) | 51.55 | 49.09 |" in text  # beside ours at each sigma


def test_a_missing_checkpoint_is_an_error_naming_it(runs, tmp_path):
    # the default --models (the seq_cpu_* networks): only ista_net_plus is saved
    with pytest.raises(FileNotFoundError, match=f"{runs}/seq_cpu_ista_net/best.*seq_cpu_derefnet/best"):
        table.main(TINY + [f"--runs={runs}", f"--out={tmp_path / 'table.md'}"])
    assert not (tmp_path / "table.md").exists()


@pytest.mark.slow
def test_derefnet_and_localize_rows_and_the_noise_table(tmp_path):
    runs = tmp_path / "runs"
    config = {"stages": 1, "channels": 4, "residual_blocks": 1}
    _save(runs, "derefnet", config, jnp.zeros((1, 5, 11, 11)), jnp.array([2]), info={"config": {"window": 5}})
    out = tmp_path / "table.md"
    args = [f"--runs={runs}", "--trajectories=1", "--rows=derefnet,localize", "--noise=0,5", f"--out={out}"]
    assert table.main(args) == 0
    rows, text = _read(out)
    comparison = [r["method"] for r in rows if r["table"] == "comparison" and r["source"] == "measured"]
    assert comparison == ["DeRefNet", "localize", "localize_windows"]
    noise = {(r["method"], r["noise"]): r for r in rows if r["table"] == "noise"}
    assert set(noise) == {(m, s) for m in ("DeRefNet", "localize_windows") for s in (0.0, 5.0)}
    for row in noise.values():
        _well_formed(row)
    assert noise[("DeRefNet", 5.0)]["published_mAP"] == 47.23
    # noise-free frames of a slowly moving group: the window fit finds most targets
    assert noise[("localize_windows", 0.0)]["mAP"] > 20
    assert "5-frame windows" in text


def test_window_comes_from_the_derefnet_checkpoint_and_must_agree(tmp_path):
    assert table.checkpoint_window({"info": {"config": {"window": 7}}}) == 7
    assert table.checkpoint_window({"window": 3, "info": {}}) == 3
    assert table.checkpoint_window({"info": {}}) == 5
    runs = tmp_path / "runs"
    config = {"stages": 1, "channels": 4, "residual_blocks": 1}
    _save(runs, "derefnet", config, jnp.zeros((1, 5, 11, 11)), jnp.array([2]), info={"config": {"window": 5}})
    with pytest.raises(SystemExit):
        table._parse_args([f"--runs={runs}", "--window=7"])
    assert table._parse_args([f"--runs={runs}"]).window == 5
    assert table._parse_args([f"--runs={tmp_path}/none"]).window == 5


@pytest.mark.parametrize(
    "arg, flag",
    [
        ("--trajectories=0", "--trajectories"),
        ("--val-trajectories=751", "--val-trajectories"),
        ("--window=4", "--window"),
        ("--noise=0,-1", "--noise"),
        ("--noise=a", "--noise"),
        ("--lams=0", "--lams"),
        ("--rows=ista", "--rows"),
        ("--iterations=0", "--iterations"),
    ],
)
def test_bad_arguments_fail_naming_the_flag(arg, flag, tmp_path, capsys):
    with pytest.raises(SystemExit):
        table._parse_args([f"--runs={tmp_path}", arg])
    assert flag in capsys.readouterr().err
