"""The learned continuous localiser (``csist_jax.models.localizer``), c = 3, at the issue's CPU budget.

    python -m experiments.train --config=experiments/configs/cpu_localizer.py \\
        --workdir=runs/cpu_localizer

Budget: at most two hours on a 2-core CPU (issue 13). 20,000 steps of Adam 1e-3 (constant) at batch 64
from the 80,000 frames of the CSIST-100K training split (generated, 8-bit; 16 epochs, 1.28M samples):
0.25 s per step measured on two cores shared with another job (48 channels, 3 residual blocks,
132,159 parameters), so about 85 minutes of steps plus validation. Validation: 2,000 frames of the val split after every epoch,
scored by points (CSO-mAP, count accuracy, RMSE); the best network lands in ``<workdir>/best``.

A shorter run (the first landing's 25-minute run, its numbers in the issue-13 report):
``--config.num_steps=4000``. The loss is ``csist_jax.train.losses.localizer_loss`` at its default weights
(Bernoulli + Gaussian mixture; no count or physics term).
"""

from csist_jax import train


def get_config():
    cfg = train.default_config()
    cfg.model = "localizer"
    cfg.c = 3
    cfg.model_config.stages = 3
    cfg.model_config.channels = 48
    cfg.data.train_size = 80_000
    cfg.data.val_size = 2_000
    cfg.batch_size = 64
    cfg.learning_rate = 1e-3
    cfg.num_steps = 20_000
    cfg.eval_every_epochs = 1
    cfg.eval_batch_size = 500
    cfg.log_every_steps = 50
    return cfg
