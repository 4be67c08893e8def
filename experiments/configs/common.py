"""Shared pieces of the experiment configs: the published full-scale run and the CPU-scale run."""

from __future__ import annotations

import ml_collections

from csist_jax.train import default_config


def published(model: str, c: int = 3) -> ml_collections.ConfigDict:
    """The published CSIST-100K recipe: all 80,000 training frames, 10,000 for validation, Adam 1e-4,
    batch 64, 250 epochs, best checkpoint by validation CSO-mAP (SPEC sec. 7). A GPU/TPU job."""
    cfg = default_config()
    cfg.model = model
    cfg.c = c
    cfg.data.train_size = 80_000
    cfg.data.val_size = 10_000
    cfg.batch_size = 64
    cfg.learning_rate = 1e-4
    cfg.num_epochs = 250
    cfg.log_every_steps = 100
    cfg.eval_batch_size = 1000
    cfg.checkpoint_every_steps = 2000
    return cfg


def cpu_scale(model: str, c: int = 3) -> ml_collections.ConfigDict:
    """The CPU-scale budget shared by every network of the CPU table: equal data, steps and optimiser.

    2,048 training frames, batch 32, 2 epochs (128 steps), validation on 500 frames after each epoch.
    Adam at 1e-3 instead of the published 1e-4: with a few hundred steps instead of 312,500 the
    published rate leaves every network far from converged.
    """
    cfg = published(model, c)
    cfg.data.train_size = 2048
    cfg.data.val_size = 500
    cfg.batch_size = 32
    cfg.learning_rate = 1e-3
    cfg.num_epochs = 2
    cfg.log_every_steps = 16
    cfg.eval_batch_size = 250
    cfg.checkpoint_every_steps = 32
    return cfg
