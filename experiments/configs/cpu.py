"""CSIST-100K runs at a CPU budget, one variant per argument (``cpu.py:<variant>``).

    python -m experiments.train --config=experiments/configs/cpu.py:ista_net_plus_step01 \\
        --workdir=runs/cpu_ista_net_plus_step01
    # any of them short: --config.optim.num_steps=20

The CPU table's networks (``common.cpu_scale``: 2,048 generated training frames, batch 32, 2 epochs =
128 steps of Adam 1e-3, validation on 500 frames after each epoch; Adam at 1e-3 instead of the published
1e-4, which a few hundred steps leave far from converged). The best network lands in
``<workdir>/best`` for ``experiments/csist100k_table.py``; runtimes and results in ``docs/results.md``.

* ``ista_net``, ``ista_net_plus``, ``dista_net``, ``lista``: the published sizes at that budget.
* ``ista_net_step01``, ``ista_net_plus_step01``, ``dista_net_step01``: the same with every stage's
  step size starting at 0.1 instead of the published 0.5. The gradient step ``x - lam Phi^T (Phi x - z)``
  is stable only for ``lam < 2 / ||Phi||^2 = 0.233`` (c = 3); at 0.5 it multiplies the error along the
  top singular vector by ``|1 - 0.5 * 8.587| = 3.3`` per stage, and ISTA-Net+'s residual path carries
  that through all 9 stages until training shrinks the steps (Adam moves them by at most ``lr`` per
  update). 0.1 is below ``1 / ||Phi||^2 = 0.116``. ``ista_net_plus_step01`` is the shipped
  ``experiments/checkpoints/ista_net_plus_c3_cpu``.
* ``ista_net_plus_noise``: the grid network of the noise table (issue 22): ``ista_net_plus_step01``
  trained on the 80,000 generated training frames with read noise drawn per frame on the device, std
  uniform in [0, 5] grey levels (``csist_jax.train.noise``), validation on 1,000 val frames with one
  fixed draw of it. ``NOISE_STEPS`` steps of batch 32 (19,200 frames seen), about the compute of
  ``seqcsist.py:cpu_derefnet_noise``; scored after the last step. 34 minutes measured
  (``experiments/checkpoints/README.md``).
* ``localizer``: the learned continuous localiser (``csist_jax.models.localizer``), 16 channels and 3
  residual blocks (more than ten times ``refine.localize``'s frames/s on the same CPU), ``LOCALIZER_STEPS``
  steps of Adam at batch 128 from the 80,000 training frames, the rate decayed from 2e-3 to 0 on a
  cosine; validation on 2,000 val frames after every epoch, decoded by ``localizer.points`` and scored
  by points (CSO-mAP, count accuracy, RMSE). Loss: Bernoulli + Gaussian mixture
  (``csist_jax.models.objectives.localizer_loss``; ``config.loss.localizer`` count and physics weights
  0). Budget: at most two hours on a 2-core CPU (issue 13).
* ``localizer_noise``: the same network trained with read noise std ~ U(0, 5) per frame (clean +
  N(0, std^2), rounded and clipped as ``physics.sensor.observe`` stores a frame) and the count term on
  (``config.loss.localizer.count_weight`` 1, so the counts the detections add up to are calibrated),
  ``LOCALIZER_NOISE_STEPS`` steps; validation with one fixed draw of the noise. The shipped
  ``csist_jax/checkpoints/localizer_noise_c3``.
"""

from __future__ import annotations

import ml_collections

from csist_jax.train import default_config
from experiments.configs.common import choose, cpu_scale

#: the steps of ``ista_net_plus_noise``, ``localizer`` and ``localizer_noise``
NOISE_STEPS = 600
LOCALIZER_STEPS = 30_000
LOCALIZER_NOISE_STEPS = 20_000


def _step01(name: str) -> ml_collections.ConfigDict:
    cfg = cpu_scale(name)
    cfg.model.step_init = 0.1
    return cfg


def _ista_net_plus_noise() -> ml_collections.ConfigDict:
    cfg = _step01("ista_net_plus")
    cfg.data.train_size = 80_000
    cfg.data.val_size = 1_000
    cfg.data.noise_std = (0.0, 5.0)
    cfg.optim.num_steps = NOISE_STEPS
    cfg.checkpoint_every_steps = 200
    cfg.eval.every_epochs = 1
    cfg.log_every_steps = 50
    cfg.eval.batch_size = 500
    return cfg


def _localizer(noise: bool = False) -> ml_collections.ConfigDict:
    cfg = default_config()
    cfg.model.name = "localizer"
    cfg.model.c = 3
    cfg.model.stages = 3
    cfg.model.channels = 16
    cfg.data.train_size = 80_000
    cfg.data.val_size = 2_000
    cfg.optim.batch_size = 128
    cfg.optim.learning_rate = 2e-3
    cfg.optim.schedule = "cosine"
    cfg.optim.num_steps = LOCALIZER_STEPS
    cfg.eval.every_epochs = 1
    cfg.eval.batch_size = 500
    cfg.log_every_steps = 100
    if noise:
        cfg.data.noise_std = (0.0, 5.0)
        cfg.loss.localizer.count_weight = 1.0
        cfg.optim.num_steps = LOCALIZER_NOISE_STEPS
        cfg.steps_per_call = 10
    return cfg


VARIANTS = {
    "ista_net": lambda: cpu_scale("ista_net"),
    "ista_net_plus": lambda: cpu_scale("ista_net_plus"),
    "dista_net": lambda: cpu_scale("dista_net"),
    "lista": lambda: cpu_scale("lista"),
    "ista_net_step01": lambda: _step01("ista_net"),
    "ista_net_plus_step01": lambda: _step01("ista_net_plus"),
    "dista_net_step01": lambda: _step01("dista_net"),
    "ista_net_plus_noise": _ista_net_plus_noise,
    "localizer": _localizer,
    "localizer_noise": lambda: _localizer(noise=True),
}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    return choose(arg, VARIANTS, "cpu.py")
