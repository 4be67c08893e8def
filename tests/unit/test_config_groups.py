"""The grouped training config (issue 21): every experiment config of before the groups is reproduced
field for field by its ``file.py:variant`` now, a config stored flat (a workdir's ``config.json``, a saved
network's ``info``) reads as the same run, every documented ``--config`` path and override exists, and
every model's loss options live in ``config.loss``.

The expected values were recorded from the flat configs before the change (``OLD_DEFAULT`` and each
file's changes from it); they are compared through ``csist_jax.train.config.upgrade`` (``FLAT_NAMES``),
so the migration table is checked on every one of them.
"""

from __future__ import annotations

import ast
import copy
import glob
import importlib
import json
import os
import re

import pytest
from absl import flags
from ml_collections import config_flags

from csist_jax import models
from csist_jax.models import baselines
from csist_jax.train import config as config_lib
from csist_jax.train import workdir as workdir_lib
from tests import helpers

ROOT = helpers.ROOT

OLD_DEFAULT = {
    "batch_size": 64,
    "brightness_threshold": 50.0,
    "c": 3,
    "checkpoint_every_steps": 0,
    "compute_dtype": "float32",
    "count_weight": 0.0,
    "data": {
        "background": [0.0, 0.0],
        "dataset": "csist100k",
        "dir": "",
        "noise_std": [0.0, 0.0],
        "seed": 0,
        "source": "generate",
        "train_size": 80000,
        "val_size": 10000,
    },
    "eval_batch_size": 500,
    "eval_every_epochs": 1,
    "keep_checkpoints": 2,
    "learning_rate": 0.0001,
    "log_every_steps": 20,
    "model": "dista_net",
    "model_config": {"channels": None, "stages": None, "step_init": None},
    "num_epochs": 250,
    "num_steps": 0,
    "objective": "toolkit",
    "physics_weight": 0.0,
    "profile_steps": "",
    "progress": True,
    "q_init_size": 0,
    "restart": False,
    "schedule": "constant",
    "seed": 0,
    "steps_per_call": 1,
    "sym_weight": 0.01,
    "weight_decay": 0.0,
    "window": 0,
}

#: old file (experiments/configs/<name>.py) -> (its variant now, the fields it changed from OLD_DEFAULT)
OLD_CONFIGS = {
    "cpu_dista_net": (
        "cpu.py:dista_net",
        {
            "batch_size": 32,
            "checkpoint_every_steps": 32,
            "data.train_size": 2048,
            "data.val_size": 500,
            "eval_batch_size": 250,
            "learning_rate": 0.001,
            "log_every_steps": 16,
            "num_epochs": 2,
        },
    ),
    "cpu_dista_net_step01": (
        "cpu.py:dista_net_step01",
        {
            "batch_size": 32,
            "checkpoint_every_steps": 32,
            "data.train_size": 2048,
            "data.val_size": 500,
            "eval_batch_size": 250,
            "learning_rate": 0.001,
            "log_every_steps": 16,
            "model_config": {"step_init": 0.1},
            "num_epochs": 2,
        },
    ),
    "cpu_ista_net": (
        "cpu.py:ista_net",
        {
            "batch_size": 32,
            "checkpoint_every_steps": 32,
            "data.train_size": 2048,
            "data.val_size": 500,
            "eval_batch_size": 250,
            "learning_rate": 0.001,
            "log_every_steps": 16,
            "model": "ista_net",
            "num_epochs": 2,
        },
    ),
    "cpu_ista_net_plus": (
        "cpu.py:ista_net_plus",
        {
            "batch_size": 32,
            "checkpoint_every_steps": 32,
            "data.train_size": 2048,
            "data.val_size": 500,
            "eval_batch_size": 250,
            "learning_rate": 0.001,
            "log_every_steps": 16,
            "model": "ista_net_plus",
            "num_epochs": 2,
        },
    ),
    "cpu_ista_net_plus_noise": (
        "cpu.py:ista_net_plus_noise",
        {
            "batch_size": 32,
            "checkpoint_every_steps": 200,
            "data.noise_std": [0.0, 5.0],
            "data.val_size": 1000,
            "learning_rate": 0.001,
            "log_every_steps": 50,
            "model": "ista_net_plus",
            "model_config": {"step_init": 0.1},
            "num_epochs": 2,
            "num_steps": 600,
        },
    ),
    "cpu_ista_net_plus_step01": (
        "cpu.py:ista_net_plus_step01",
        {
            "batch_size": 32,
            "checkpoint_every_steps": 32,
            "data.train_size": 2048,
            "data.val_size": 500,
            "eval_batch_size": 250,
            "learning_rate": 0.001,
            "log_every_steps": 16,
            "model": "ista_net_plus",
            "model_config": {"step_init": 0.1},
            "num_epochs": 2,
        },
    ),
    "cpu_ista_net_step01": (
        "cpu.py:ista_net_step01",
        {
            "batch_size": 32,
            "checkpoint_every_steps": 32,
            "data.train_size": 2048,
            "data.val_size": 500,
            "eval_batch_size": 250,
            "learning_rate": 0.001,
            "log_every_steps": 16,
            "model": "ista_net",
            "model_config": {"step_init": 0.1},
            "num_epochs": 2,
        },
    ),
    "cpu_lista": (
        "cpu.py:lista",
        {
            "batch_size": 32,
            "checkpoint_every_steps": 32,
            "data.train_size": 2048,
            "data.val_size": 500,
            "eval_batch_size": 250,
            "learning_rate": 0.001,
            "log_every_steps": 16,
            "model": "lista",
            "num_epochs": 2,
        },
    ),
    "cpu_localizer": (
        "cpu.py:localizer",
        {
            "batch_size": 128,
            "data.val_size": 2000,
            "learning_rate": 0.002,
            "log_every_steps": 100,
            "model": "localizer",
            "model_config": {"channels": 16, "stages": 3},
            "num_steps": 30000,
            "schedule": "cosine",
        },
    ),
    "cpu_localizer_noise": (
        "cpu.py:localizer_noise",
        {
            "batch_size": 128,
            "count_weight": 1.0,
            "data.noise_std": [0.0, 5.0],
            "data.val_size": 2000,
            "learning_rate": 0.002,
            "log_every_steps": 100,
            "model": "localizer",
            "model_config": {"channels": 16, "stages": 3},
            "num_steps": 20000,
            "schedule": "cosine",
            "steps_per_call": 10,
        },
    ),
    "derefnet_seqcsist": (
        "seqcsist.py:derefnet",
        {
            "batch_size": 16,
            "brightness_threshold": 70.0,
            "checkpoint_every_steps": 2000,
            "data.dataset": "seqcsist",
            "data.train_size": 3500,
            "data.val_size": 750,
            "eval_batch_size": 1000,
            "log_every_steps": 100,
            "model": "derefnet",
            "num_epochs": 100,
            "weight_decay": 1e-05,
            "window": 5,
        },
    ),
    "dista_net_c3": (
        "published.py:dista_net",
        {"checkpoint_every_steps": 2000, "eval_batch_size": 1000, "log_every_steps": 100},
    ),
    "dista_net_c5": (
        "published.py:dista_net,5",
        {"c": 5, "checkpoint_every_steps": 2000, "eval_batch_size": 1000, "log_every_steps": 100},
    ),
    "dista_net_c7": (
        "published.py:dista_net,7",
        {"c": 7, "checkpoint_every_steps": 2000, "eval_batch_size": 1000, "log_every_steps": 100},
    ),
    "dista_net_seqcsist": (
        "seqcsist.py:dista_net",
        {
            "brightness_threshold": 70.0,
            "checkpoint_every_steps": 2000,
            "data.dataset": "seqcsist",
            "data.train_size": 3500,
            "data.val_size": 750,
            "eval_batch_size": 1000,
            "log_every_steps": 100,
            "num_epochs": 100,
            "weight_decay": 1e-05,
        },
    ),
    "ista_net_c3": (
        "published.py:ista_net",
        {
            "checkpoint_every_steps": 2000,
            "eval_batch_size": 1000,
            "log_every_steps": 100,
            "model": "ista_net",
        },
    ),
    "ista_net_plus_c3": (
        "published.py:ista_net_plus",
        {
            "checkpoint_every_steps": 2000,
            "eval_batch_size": 1000,
            "log_every_steps": 100,
            "model": "ista_net_plus",
        },
    ),
    "ista_net_plus_seqcsist": (
        "seqcsist.py:ista_net_plus",
        {
            "brightness_threshold": 70.0,
            "checkpoint_every_steps": 2000,
            "data.dataset": "seqcsist",
            "data.train_size": 3500,
            "data.val_size": 750,
            "eval_batch_size": 1000,
            "log_every_steps": 100,
            "model": "ista_net_plus",
            "num_epochs": 100,
            "weight_decay": 1e-05,
        },
    ),
    "ista_net_seqcsist": (
        "seqcsist.py:ista_net",
        {
            "brightness_threshold": 70.0,
            "checkpoint_every_steps": 2000,
            "data.dataset": "seqcsist",
            "data.train_size": 3500,
            "data.val_size": 750,
            "eval_batch_size": 1000,
            "log_every_steps": 100,
            "model": "ista_net",
            "num_epochs": 100,
            "weight_decay": 1e-05,
        },
    ),
    "lista_c3": (
        "published.py:lista",
        {"checkpoint_every_steps": 2000, "eval_batch_size": 1000, "log_every_steps": 100, "model": "lista"},
    ),
    "seq_cpu_derefnet": (
        "seqcsist.py:cpu_derefnet",
        {
            "batch_size": 16,
            "brightness_threshold": 70.0,
            "checkpoint_every_steps": 100,
            "data.dataset": "seqcsist",
            "data.train_size": 200,
            "data.val_size": 40,
            "eval_batch_size": 320,
            "learning_rate": 0.001,
            "model": "derefnet",
            "model_config": {"step_init": 0.1},
            "num_epochs": 100,
            "num_steps": 400,
            "weight_decay": 1e-05,
            "window": 5,
        },
    ),
    "seq_cpu_derefnet_noise": (
        "seqcsist.py:cpu_derefnet_noise",
        {
            "batch_size": 16,
            "brightness_threshold": 70.0,
            "checkpoint_every_steps": 50,
            "data.dataset": "seqcsist",
            "data.noise_std": [0.0, 5.0],
            "data.train_size": 3500,
            "data.val_size": 40,
            "eval_batch_size": 320,
            "learning_rate": 0.001,
            "log_every_steps": 50,
            "model": "derefnet",
            "model_config": {"step_init": 0.1},
            "num_epochs": 100,
            "num_steps": 200,
            "weight_decay": 1e-05,
            "window": 5,
        },
    ),
    "seq_cpu_dista_net": (
        "seqcsist.py:cpu_dista_net",
        {
            "batch_size": 16,
            "brightness_threshold": 70.0,
            "checkpoint_every_steps": 100,
            "data.dataset": "seqcsist",
            "data.train_size": 200,
            "data.val_size": 40,
            "eval_batch_size": 320,
            "learning_rate": 0.001,
            "model_config": {"step_init": 0.1},
            "num_epochs": 100,
            "num_steps": 400,
            "weight_decay": 1e-05,
        },
    ),
    "seq_cpu_ista_net": (
        "seqcsist.py:cpu_ista_net",
        {
            "batch_size": 16,
            "brightness_threshold": 70.0,
            "checkpoint_every_steps": 100,
            "data.dataset": "seqcsist",
            "data.train_size": 200,
            "data.val_size": 40,
            "eval_batch_size": 320,
            "learning_rate": 0.001,
            "model": "ista_net",
            "model_config": {"step_init": 0.1},
            "num_epochs": 100,
            "num_steps": 400,
            "weight_decay": 1e-05,
        },
    ),
    "seq_cpu_ista_net_plus": (
        "seqcsist.py:cpu_ista_net_plus",
        {
            "batch_size": 16,
            "brightness_threshold": 70.0,
            "checkpoint_every_steps": 100,
            "data.dataset": "seqcsist",
            "data.train_size": 200,
            "data.val_size": 40,
            "eval_batch_size": 320,
            "learning_rate": 0.001,
            "model": "ista_net_plus",
            "model_config": {"step_init": 0.1},
            "num_epochs": 100,
            "num_steps": 400,
            "weight_decay": 1e-05,
        },
    ),
    "seq_cpu_window_localizer": (
        "seqcsist.py:cpu_window_localizer",
        {
            "brightness_threshold": 70.0,
            "count_weight": 1.0,
            "data.dataset": "seqcsist",
            "data.noise_std": [0.0, 5.0],
            "data.train_size": 3500,
            "data.val_size": 100,
            "eval_batch_size": 400,
            "learning_rate": 0.002,
            "log_every_steps": 100,
            "model": "window_localizer",
            "model_config": {"channels": 16, "stages": 2},
            "num_steps": 12000,
            "schedule": "cosine",
            "steps_per_call": 10,
            "window": 5,
        },
    ),
}

#: zoo arguments run at a CPU scale -> the module fields they recorded (the reduced sizes or none)
ZOO_CPU = {
    "fista_net,cpu": {},
    "han,cpu": {"n_feats": 8, "n_resblocks": 1, "n_resgroups": 1, "reduction": 4},
    "ista_net_pp,seq_cpu": {"channels": 8, "cond_hidden": 8, "res_blocks": 1, "stages": 2},
    "srcnn,cpu": {},
    "tdan,seq_cpu": {},
    "usrnet,cpu,5": {"channels": 4, "h_nc": 8, "n_iter": 1, "nb": 1},
}

#: the zoo's recipes: the old file with the same recipe for a single-frame / a window network
ZOO_RECIPES = {
    "cpu": ("cpu_ista_net", "cpu_ista_net"),
    "published": ("ista_net_c3", "ista_net_c3"),
    "seq_cpu": ("seq_cpu_ista_net", "seq_cpu_derefnet"),
    "seq_published": ("ista_net_seqcsist", "derefnet_seqcsist"),
}

#: the shipped networks (their model.json records the flat config they were trained with) -> variant
SHIPPED = {
    "csist_jax/checkpoints/localizer_noise_c3": "cpu.py:localizer_noise",
    "csist_jax/checkpoints/window_localizer_noise_c3": "seqcsist.py:cpu_window_localizer",
    "experiments/checkpoints/ista_net_plus_c3_cpu": "cpu.py:ista_net_plus_step01",
    "experiments/checkpoints/ista_net_plus_noise_c3_cpu": "cpu.py:ista_net_plus_noise",
    "experiments/checkpoints/localizer_c3_cpu": "cpu.py:localizer",
    "experiments/checkpoints/derefnet_noise_c3_cpu": "seqcsist.py:cpu_derefnet_noise",
}


def _old(changes: dict) -> dict:
    """The flat config of ``OLD_DEFAULT`` with ``changes`` (``data.<field>`` dotted)."""
    out = copy.deepcopy(OLD_DEFAULT)
    for key, value in changes.items():
        if key.startswith("data."):
            out["data"][key[5:]] = value
        else:
            out[key] = copy.deepcopy(value)
    return out


def _values(config) -> dict:
    """A config's fields as JSON values, the module fields left at the class default (None) dropped."""
    out = json.loads(json.dumps(config_lib.upgrade(config)))
    out["model"] = {k: v for k, v in out["model"].items() if k in config_lib.MODEL_FIELDS or v is not None}
    return out


def _load(spec: str):
    """``get_config(arg)`` of ``"file.py:arg"`` in experiments/configs."""
    file, _, arg = spec.partition(":")
    return importlib.import_module(f"experiments.configs.{file[:-3]}").get_config(arg or None)


@pytest.mark.parametrize("old", sorted(OLD_CONFIGS))
def test_every_old_config_file_is_a_variant_with_the_same_fields(old):
    spec, changes = OLD_CONFIGS[old]
    new = _load(spec)
    assert _values(new) == _values(_old(changes))
    config_lib.resolve(new)


def test_the_defaults_are_the_old_defaults_in_their_groups():
    assert _values(config_lib.default_config()) == _values(OLD_DEFAULT)
    assert config_lib.is_flat(OLD_DEFAULT) and not config_lib.is_flat(config_lib.default_config())
    grouped = config_lib.default_config().to_dict()
    assert config_lib.upgrade(grouped) == grouped, "a grouped config is read as it is"


def test_the_zoo_keeps_its_fields():
    """Every zoo method at the published scales (cheap: no size check), and some at a CPU scale."""
    zoo = importlib.import_module("experiments.configs.zoo")
    window_models = set(baselines.SEQUENCE_ZOO)
    args = [f"{n},{s}" for n in models.BASELINE_NAMES for s in ("published", "seq_published")]
    args += [f"{n},seq_published" for n in sorted(window_models)] + sorted(ZOO_CPU)
    for arg in args:
        name, scale, *c = arg.split(",")
        changes = dict(OLD_CONFIGS[ZOO_RECIPES[scale][name in window_models]][1])
        changes.update(model=name, model_config=ZOO_CPU.get(arg, {}))
        if c:
            changes["c"] = int(c[0])
        assert _values(zoo.get_config(arg)) == _values(_old(changes)), arg


@pytest.mark.parametrize("path", sorted(SHIPPED))
def test_each_shipped_network_was_trained_by_its_variant(path):
    """The flat config in a shipped network's model.json is the same run as its variant (only the
    cadence may differ, as on a resume)."""
    recorded = models.read_meta(os.path.join(ROOT, path))["info"]["config"]
    assert config_lib.is_flat(recorded)
    config, defaults = _load(SHIPPED[path]), config_lib.default_config()
    changed = workdir_lib.compare(path, recorded, config, defaults)
    assert set(changed) <= set(workdir_lib.CADENCE), changed
    assert workdir_lib.length_change(path, recorded, config, defaults, steps_per_epoch=1) == {}


def test_a_variant_is_chosen_on_the_command_line_and_its_fields_overridden():
    spec = os.path.join(ROOT, "experiments", "configs", "cpu.py:localizer")
    argv = ["prog", f"--config={spec}", "--config.optim.num_steps=7", "--config.model.channels=8"]
    values = flags.FlagValues()
    config_flags.DEFINE_config_file("config", None, "", flag_values=values, sys_argv=argv)
    values(argv)
    cfg = values.config
    assert (cfg.model.name, cfg.model.channels, cfg.optim.num_steps) == ("localizer", 8, 7)
    assert cfg.optim.schedule == "cosine" and cfg.optim.batch_size == 128


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("cpu.py:ista_nett", r"cpu\.py:<variant>: variant must be one of .*did you mean cpu\.py:ista_net\?"),
        ("cpu.py", r"cpu\.py:<variant>"),
        ("seqcsist.py:cpu_lista", r"seqcsist\.py:<variant>"),
        ("published.py:localizer", r"published\.py:<model>\[,<c>\]"),
        ("published.py:dista_net,five", r"c must be an integer"),
    ],
)
def test_an_unknown_variant_names_the_variants(spec, message):
    with pytest.raises(ValueError, match=message):
        _load(spec)


def test_every_model_reads_loss_options_the_config_holds():
    loss = config_lib.default_config().loss
    for name, entry in models.REGISTRY.items():
        config_lib.check_loss_options(name)
        cls = entry.cls
        if cls.LOSS_OPTIONS:
            assert set(cls.LOSS_OPTIONS) <= set(loss[cls.LOSS_GROUP]), name
    declared = {(e.cls.LOSS_GROUP, o) for e in models.REGISTRY.values() for o in e.cls.LOSS_OPTIONS}
    held = {(g, o) for g in loss for o in loss[g]}
    assert declared == held, "every field of config.loss is read by some model"


def _documented_text() -> dict[str, str]:
    """README, docs, the checkpoint READMEs, and the module docstrings (``--help`` texts, config files)
    of every Python file of csist_jax / experiments."""
    patterns = ["README.md", "docs/*.md", "csist_jax/**/*.md", "experiments/**/*.md"]
    patterns += ["csist_jax/**/*.py", "experiments/**/*.py"]
    files = sorted({f for p in patterns for f in glob.glob(os.path.join(ROOT, p), recursive=True)})
    out = {}
    for f in files:
        with open(f) as fh:
            text = fh.read()
        out[os.path.relpath(f, ROOT)] = (
            (ast.get_docstring(ast.parse(text)) or "") if f.endswith(".py") else text
        )
    return out


_CONFIG_FILE = re.compile(r"--config=experiments/configs/(\w+\.py)(?::([\w,$]+))?")
_OVERRIDE = re.compile(r"--config\.([A-Za-z_][\w.]*)=")


def _field_exists(path: str) -> bool:
    fields = config_lib.flatten(config_lib.default_config())
    if path in fields:
        return True
    group, _, field = path.partition(".")
    module_fields = {f for e in models.REGISTRY.values() for f in e.cls.__dataclass_fields__}
    return group == "model" and field in module_fields


def test_every_documented_config_and_override_exists():
    """Every ``--config=experiments/configs/FILE.py[:VARIANT]`` written in the docs, the READMEs or a
    docstring names a file and variant that load, and every ``--config.<field>=`` a field there is."""
    found = 0
    for name, text in _documented_text().items():
        for file, arg in _CONFIG_FILE.findall(text):
            found += 1
            assert os.path.isfile(os.path.join(ROOT, "experiments", "configs", file)), (name, file)
            if arg and "$" not in arg:
                config_lib.resolve(_load(f"{file}:{arg}"))
        for path in _OVERRIDE.findall(text):
            assert _field_exists(path), f"{name}: --config.{path}= is not a field of the config"
    assert found > 20
