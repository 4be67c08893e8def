"""The learned continuous localiser (``csist_jax.models.localizer``), c = 3, at the issue's CPU budget.

    python -m experiments.train --config=experiments/configs/cpu_localizer.py \\
        --workdir=runs/cpu_localizer

Budget: at most two hours on a 2-core CPU (issue 13). A narrow network, 16 channels and 3 residual
blocks, so that it localises at more than ten times ``refine.localize``'s frames/s on the same CPU
(``experiments/bench.py`` and ``experiments/localizer_table.py`` measure both). NUM_STEPS steps of Adam
at batch 128 from the 80,000 frames of the CSIST-100K training split (generated, 8-bit), the rate decayed
from 2e-3 to 0 on a cosine. Validation: 2,000 frames of the val split after every epoch, decoded by
``localizer.points`` at its defaults and scored by points (CSO-mAP, count accuracy, RMSE); the best
network lands in ``<workdir>/best``. The loss is ``csist_jax.train.losses.localizer_loss`` (Bernoulli +
Gaussian mixture; the count and physics terms at ``count_weight`` / ``physics_weight``, 0 here).
"""

from csist_jax import train

NUM_STEPS = 30_000


def get_config():
    cfg = train.default_config()
    cfg.model = "localizer"
    cfg.c = 3
    cfg.model_config.stages = 3
    cfg.model_config.channels = 16
    cfg.data.train_size = 80_000
    cfg.data.val_size = 2_000
    cfg.batch_size = 128
    cfg.learning_rate = 2e-3
    cfg.schedule = "cosine"
    cfg.num_steps = NUM_STEPS
    cfg.eval_every_epochs = 1
    cfg.eval_batch_size = 500
    cfg.log_every_steps = 100
    return cfg
