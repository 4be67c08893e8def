"""experiments.published_recipe: a tiny end-to-end run writes the table; bad arguments fail by name."""

from __future__ import annotations

import json
import math

import pytest

from experiments import published_recipe as recipe

# one size for every split: the generator compiles once per frame count, the slowest part of a tiny run
TINY = [
    "--models=ista_net",
    "--epochs=1",
    "--train-size=32",
    "--val-size=32",
    "--test-size=32",
    "--batch-size=16",
    "--model-config=stages=1,channels=4",
    "--quiet",
]


def test_published_constants_are_the_spec_rows():
    assert recipe.PUBLISHED["ista_net"]["mAP"] == 45.16
    assert recipe.PUBLISHED["ista_net_plus"]["mAP"] == 46.06
    assert recipe.PUBLISHED["dista_net"] == {
        "mAP": 46.74,
        "AP05": 0.38,
        "AP10": 7.54,
        "AP15": 42.44,
        "AP20": 86.18,
        "AP25": 97.14,
    }


def test_defaults_are_the_published_recipe():
    args = recipe.parse_args([])
    assert args.models == ["ista_net", "ista_net_plus", "dista_net"] and args.epochs == 250
    cfg = recipe.make_config("dista_net", args)
    assert (cfg.data.train_size, cfg.data.val_size, cfg.optim.batch_size) == (80_000, 10_000, 64)
    assert cfg.optim.learning_rate == 1e-4 and cfg.optim.num_epochs == 250
    assert recipe.changes_from_published(args) == []


@pytest.mark.slow
def test_tiny_run_writes_table_and_resumes(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # the default --runs and --out are relative to the working directory
    assert recipe.main(TINY) == 0
    out = tmp_path / "outputs" / "published"
    table = (out / "table.md").read_text()
    data = json.loads((out / "table.json").read_text())
    (row,) = data["rows"]
    assert row["model"] == "ista_net" and row["steps"] == 2 and row["epochs"] == 1
    assert row["steps_this_run"] == 2 and row["start_step"] == 0
    assert row["steps_per_s"] > 0 and row["loop_steps_per_s"] > 0
    assert math.isfinite(row["mAP"]) and 0.0 <= row["mAP"] <= 100.0
    assert all(0.0 <= row[k] <= 100.0 for k in ("AP05", "AP10", "AP15", "AP20", "AP25"))
    assert data["published"]["ista_net"]["mAP"] == 45.16
    assert data["meta"]["test_frames"] == 32 and data["meta"]["jax"]
    assert (tmp_path / "runs" / "published" / "ista_net" / "best" / "model.json").is_file()
    lines = table.splitlines()
    ours = next(line for line in lines if line.startswith("| ISTA-Net (this run) |"))
    assert float(ours.split("|")[2]) == pytest.approx(row["mAP"], abs=0.006)
    assert any(line.startswith("| ISTA-Net (published) | 45.16 | 0.41 | 7.71 |") for line in lines)
    assert "CHANGED recipe" in table and "ISTA-Net (this run)" in capsys.readouterr().out

    # a rerun resumes the finished run: no new steps, the same best network and test scores
    assert recipe.main(TINY) == 0
    again = json.loads((out / "table.json").read_text())["rows"][0]
    assert again["steps"] == 2 and again["steps_this_run"] == 0 and again["steps_per_s"] is None
    assert again["mAP"] == row["mAP"]

    # the same workdir with another recipe is refused rather than resumed
    with pytest.raises(ValueError, match="another recipe.*batch_size"):
        recipe.main([a if a != "--batch-size=16" else "--batch-size=8" for a in TINY])


@pytest.mark.parametrize(
    "argv, name",
    [
        (["--epochs=0"], "--epochs"),
        (["--epochs=two"], "--epochs"),
        (["--models=ista_net,lista"], "--models"),
        (["--models=,"], "--models"),
        (["--train-size=80001"], "--train-size"),
        (["--test-size=-5"], "--test-size"),
        (["--train-size=32", "--batch-size=64"], "--batch-size"),
        (["--model-config=layers=3"], "--model-config"),
        (["--model-config=stages=one"], "--model-config"),
        (["--model-config=stages"], "--model-config"),
        (["--compute-dtype=float16"], "--compute-dtype"),
    ],
)
def test_bad_arguments_name_the_argument(argv, name, capsys):
    with pytest.raises(SystemExit) as err:
        recipe.parse_args(argv)
    assert err.value.code == 2
    assert f"argument {name}" in capsys.readouterr().err


def test_compute_dtype_without_the_config_field_is_refused(monkeypatch, capsys):
    real = recipe.train_lib.default_config

    def without_field():
        cfg = real()
        if "compute_dtype" in cfg:
            del cfg["compute_dtype"]
        return cfg

    monkeypatch.setattr(recipe.train_lib, "default_config", without_field)
    with pytest.raises(SystemExit):
        recipe.parse_args(["--compute-dtype=bfloat16"])
    assert (
        "argument --compute-dtype: this csist_jax.train has no config.compute_dtype"
        in capsys.readouterr().err
    )


def test_compute_dtype_reaches_the_config():
    if "compute_dtype" not in recipe.train_lib.default_config():
        pytest.skip("csist_jax.train.default_config() has no compute_dtype field yet")
    args = recipe.parse_args(["--compute-dtype=bfloat16"])
    assert recipe.make_config("ista_net", args).compute_dtype == "bfloat16"
