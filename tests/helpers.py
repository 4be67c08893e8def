"""Checks shared by the model tests: one Adam step lowers a loss, and a sample's output does not depend
on the rest of its batch."""

from __future__ import annotations

import os

import jax
import numpy as np
import optax

#: the repository root (tests read the docs, run the checkpoints and start subprocesses from it)
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

#: batch independence tolerance: max |alone - in batch| <= BATCH_RTOL * max |output| per sample
BATCH_RTOL = 1e-5


def assert_adam_step_lowers(loss, params, learning_rate: float = 1e-4) -> None:
    """One Adam step on ``loss(params)`` has finite gradients everywhere and lowers the loss (both values
    from the same compiled program)."""
    opt = optax.adam(learning_rate)

    @jax.jit
    def step(params, state):
        value, grads = jax.value_and_grad(loss)(params)
        updates, state = opt.update(grads, state, params)
        return optax.apply_updates(params, updates), state, value, grads

    new_params, state, before, grads = step(params, opt.init(params))
    assert np.isfinite(float(before))
    bad = [
        jax.tree_util.keystr(p)
        for p, g in jax.tree_util.tree_leaves_with_path(grads)
        if not np.all(np.isfinite(g))
    ]
    assert not bad, f"non-finite gradients: {bad}"
    _, _, after, _ = step(new_params, state)  # the loss at the updated parameters
    assert float(after) < float(before), (float(after), float(before))


def assert_batch_independent(apply, inputs: tuple, rtol: float = BATCH_RTOL, saturated: bool = False) -> None:
    """``apply(*inputs)`` (maps ``[n, hr, hr]``) per sample: alone and in the batch reversed equal the full
    batch to ``rtol`` of each map's scale; with ``saturated``, also the first three beside two frames of
    255 (index inputs: 3)."""
    full = np.asarray(apply(*inputs))
    scale = np.max(np.abs(full), axis=(1, 2))
    assert np.all(scale > 0)

    def close(got, rows):
        err = np.max(np.abs(np.asarray(got) - full[rows]), axis=(1, 2))
        assert np.all(err <= rtol * scale[rows]), (err / scale[rows]).max()

    for i in range(len(full)):
        close(apply(*(a[i : i + 1] for a in inputs)), [i])
    close(np.asarray(apply(*(a[::-1] for a in inputs)))[::-1], slice(None))
    if saturated:
        mixed = [np.concatenate([a[:3], a[:2] * 0 + (255 if a.ndim > 1 else 3)]) for a in inputs]
        close(np.asarray(apply(*mixed))[:3], slice(0, 3))


def tiny_config(**overrides):
    """The smallest training run: ISTA-Net, 1 stage, 4 channels, 64 frames, batch 16, 2 epochs.

    ``overrides``: fields or groups of the config, merged into it (``optim={"num_epochs": 3}`` changes
    that one field of the group)."""
    from csist_jax import train

    cfg = train.default_config()
    cfg.model.name = "ista_net"
    cfg.model.stages = 1
    cfg.model.channels = 4
    # equal split sizes: the data generator compiles once for both
    cfg.data.train_size = 64
    cfg.data.val_size = 64
    cfg.optim.batch_size = 16
    cfg.optim.num_epochs = 2
    cfg.optim.learning_rate = 1e-3
    cfg.log_every_steps = 2
    cfg.eval.batch_size = 32
    cfg.progress = False
    cfg.update(overrides)
    return cfg
