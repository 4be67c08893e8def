"""Training: ``train_and_evaluate(config, workdir)`` with Optax, Orbax (auto-resume) and a device mesh.

Modules: :mod:`.config` (fields and checks), :mod:`.data` (where the splits come from),
:mod:`.device_data` (the training split on the device), :mod:`.losses` (every training objective),
:mod:`.step` (the update), :mod:`.evaluation` (validation), :mod:`.loop` (the step stream),
:mod:`.checkpoints` (Orbax), :mod:`.writer` (logs), :mod:`.train` (``train_and_evaluate``). See
``docs/training.md``.
"""

from csist_jax.train.config import COMPUTE_DTYPES, default_config
from csist_jax.train.evaluation import Validator, evaluate, make_apply, make_mesh, predict
from csist_jax.train.losses import data_misfit, derefnet_loss, loss_fn, unfolding_loss
from csist_jax.train.step import (
    cast_floating,
    init_state,
    make_device_steps,
    make_train_step,
    stage_monitors,
)
from csist_jax.train.train import maybe_initialize_distributed, train_and_evaluate

__all__ = [
    "COMPUTE_DTYPES",
    "Validator",
    "cast_floating",
    "data_misfit",
    "default_config",
    "derefnet_loss",
    "evaluate",
    "init_state",
    "loss_fn",
    "make_apply",
    "make_device_steps",
    "make_mesh",
    "make_train_step",
    "maybe_initialize_distributed",
    "predict",
    "stage_monitors",
    "train_and_evaluate",
    "unfolding_loss",
]
