"""ISTA-Net+ (c = 3) trained on noisy frames: the grid network of the noise table (issue 22).

    python -m experiments.train --config=experiments/configs/cpu_ista_net_plus_noise.py \\
        --workdir=runs/cpu_ista_net_plus_noise

The shipped CPU ISTA-Net+ recipe (``cpu_ista_net_plus_step01``: step sizes start at 0.1, Adam 1e-3) with
the noise-trained localiser's data and noise: the 80,000 generated training frames, read noise drawn per
frame on the device with std uniform in [0, 5] grey levels (``csist_jax.train.noise``), validation on
1,000 val frames with one fixed draw of it. Budget: NUM_STEPS steps of batch 32 (19,200 frames seen),
about the compute of ``seq_cpu_derefnet_noise.py`` (200 steps of 16 five-frame windows: 16,000 frame
passes through a larger network); the measured times (34 and 32 minutes on the same shared CPU) are in
``experiments/checkpoints/README.md``. Scored after the last step. For a short run add
``--config.num_steps=20``.
"""

from experiments.configs.common import cpu_scale

NUM_STEPS = 600


def get_config():
    cfg = cpu_scale("ista_net_plus")
    cfg.model_config.step_init = 0.1
    cfg.data.train_size = 80_000
    cfg.data.val_size = 1_000
    cfg.data.noise_std = (0.0, 5.0)
    cfg.num_steps = NUM_STEPS
    cfg.checkpoint_every_steps = 200
    cfg.eval_every_epochs = 1
    cfg.log_every_steps = 50
    cfg.eval_batch_size = 500
    return cfg
