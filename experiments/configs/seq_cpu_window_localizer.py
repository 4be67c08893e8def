"""The multi-frame learned localiser (``csist_jax.models.WindowLocalizer``) on SeqCSIST windows of 5
frames, noise-trained, c = 3, at a CPU budget.

    python -m experiments.train --config=experiments/configs/seq_cpu_window_localizer.py \\
        --workdir=runs/seq_cpu_window_localizer

A shared per-frame trunk (16 channels, 2 residual blocks) over the five frames of a window, a temporal
context stage over the stacked features (32 channels, 2 residual blocks) and the localiser's heads for
the centre frame. Read noise drawn per window on the device (``csist_jax.train.noise``): std uniform in
[0, 5] grey levels, every frame of the window with its own draw at that level. Count term on
(``count_weight`` 1). NUM_STEPS steps of Adam at batch 64 from the windows of the 3,500 generated
training trajectories (56,000 windows), cosine from 2e-3; validation on the windows of 100 validation
trajectories (1,600, one fixed noise draw) after every epoch, best by CSO-mAP.

Budget: at most two hours on this 2-core CPU (issue 22); measured in ``experiments/checkpoints/README.md``.
For a short run add ``--config.num_steps=100``.
"""

from csist_jax import train

NUM_STEPS = 12_000


def get_config():
    cfg = train.default_config()
    cfg.model = "window_localizer"
    cfg.c = 3
    cfg.model_config.stages = 2
    cfg.model_config.channels = 16
    cfg.data.dataset = "seqcsist"
    cfg.window = 5
    cfg.data.train_size = 3_500
    cfg.data.val_size = 100
    cfg.data.noise_std = (0.0, 5.0)
    cfg.count_weight = 1.0
    cfg.brightness_threshold = 70.0
    cfg.batch_size = 64
    cfg.learning_rate = 2e-3
    cfg.schedule = "cosine"
    cfg.num_steps = NUM_STEPS
    cfg.steps_per_call = 10
    cfg.eval_every_epochs = 1
    cfg.eval_batch_size = 400
    cfg.log_every_steps = 100
    return cfg
