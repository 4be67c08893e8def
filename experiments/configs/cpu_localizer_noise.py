"""The noise-trained learned localiser (``csist_jax.models.localizer``), c = 3, at a CPU budget.

    python -m experiments.train --config=experiments/configs/cpu_localizer_noise.py \\
        --workdir=runs/cpu_localizer_noise

The network of ``cpu_localizer.py`` (16 channels, 3 residual blocks), trained on frames with read noise
drawn per frame on the device (``csist_jax.train.noise``): std uniform in [0, 5] grey levels, clean +
N(0, std^2), rounded and clipped as ``physics.sensor.observe`` stores a frame. The count term of the loss
is on (``count_weight`` 1: the Gaussian approximation of the number of targets from the per-cell
probabilities), so the counts the detections add up to are calibrated. NUM_STEPS steps of Adam at batch
128 from the 80,000 generated training frames, the rate decayed from 2e-3 to 0 on a cosine; validation
on 2,000 val frames with one fixed draw of the same noise after every epoch, best by CSO-mAP.

Budget: at most two hours on this 2-core CPU (issue 22); measured in ``experiments/checkpoints/README.md``.
For a short run add ``--config.num_steps=200``.
"""

from csist_jax import train

NUM_STEPS = 20_000


def get_config():
    cfg = train.default_config()
    cfg.model = "localizer"
    cfg.c = 3
    cfg.model_config.stages = 3
    cfg.model_config.channels = 16
    cfg.data.train_size = 80_000
    cfg.data.val_size = 2_000
    cfg.data.noise_std = (0.0, 5.0)
    cfg.count_weight = 1.0
    cfg.batch_size = 128
    cfg.learning_rate = 2e-3
    cfg.schedule = "cosine"
    cfg.num_steps = NUM_STEPS
    cfg.steps_per_call = 10
    cfg.eval_every_epochs = 1
    cfg.eval_batch_size = 500
    cfg.log_every_steps = 100
    return cfg
