"""DeRefNet on SeqCSIST windows of 5 frames, trained on noisy frames: the window grid network of the
noise table (issue 22).

    python -m experiments.train --config=experiments/configs/seq_cpu_derefnet_noise.py \\
        --workdir=runs/seq_cpu_derefnet_noise

The CPU SeqCSIST recipe (``common.seqcsist_cpu``: step sizes from 0.1, Adam 1e-3 with weight decay 1e-5,
batch 16, the toolkit's objective) on the windows of all 3,500 training trajectories with read noise drawn
per window on the device, std uniform in [0, 5] grey levels (every frame its own draw), validation on the
windows of 40 validation trajectories with one fixed draw. Budget: NUM_STEPS steps (half the CPU SeqCSIST
table's 400: a DeRefNet step of 16 five-frame windows costs about three ISTA-Net+ steps of 32 frames, so
this is about the compute of ``cpu_ista_net_plus_noise.py``'s 600); the measured time is in
``experiments/checkpoints/README.md``. For a short run add ``--config.num_steps=20``.
"""

from experiments.configs.common import seqcsist_cpu

NUM_STEPS = 200


def get_config():
    cfg = seqcsist_cpu("derefnet")
    cfg.data.train_size = 3_500
    cfg.data.val_size = 40
    cfg.data.noise_std = (0.0, 5.0)
    cfg.num_steps = NUM_STEPS
    cfg.eval_every_epochs = 1
    cfg.checkpoint_every_steps = 50
    cfg.log_every_steps = 50
    return cfg
