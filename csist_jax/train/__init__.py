"""Training: ``train_and_evaluate(config, workdir)`` with Optax, Orbax (auto-resume) and a device mesh."""

from csist_jax.train.train import (
    default_config,
    evaluate,
    init_state,
    loss_fn,
    make_apply,
    make_mesh,
    make_train_step,
    maybe_initialize_distributed,
    predict,
    stage_monitors,
    train_and_evaluate,
)

__all__ = [
    "default_config",
    "evaluate",
    "init_state",
    "loss_fn",
    "make_apply",
    "make_mesh",
    "make_train_step",
    "maybe_initialize_distributed",
    "predict",
    "stage_monitors",
    "train_and_evaluate",
]
