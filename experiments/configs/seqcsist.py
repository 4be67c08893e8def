"""SeqCSIST runs, one variant per argument (``seqcsist.py:<variant>``): the published recipes and the
CPU budgets.

    python -m experiments.train --config=experiments/configs/seqcsist.py:cpu_derefnet \\
        --workdir=runs/seq_cpu_derefnet
    python -m experiments.train --config=experiments/configs/seqcsist.py:derefnet --workdir=runs/derefnet
    # the window ablation (3, 5, 7) and the paper's loss weights (1, 0.01, 0.01):
    python -m experiments.train --config=experiments/configs/seqcsist.py:derefnet \\
        --workdir=runs/derefnet_w7 --config.data.window=7
    python -m experiments.train --config=experiments/configs/seqcsist.py:derefnet \\
        --workdir=runs/derefnet_paper --config.loss.derefnet.objective=paper

Published (``common.seqcsist_published``; GPU/TPU jobs, not run by this project on an accelerator yet):

* ``derefnet``: the 3,500 / 750 training / validation trajectories, windows of 5 frames in batches of
  16 (one trajectory's worth), the toolkit's objective, Adam 1e-4 with weight decay 1e-5, 100 epochs,
  best by validation CSO-mAP at brightness threshold 70. Expected: the published row, CSO-mAP 51.55 on
  the SeqCSIST test centre frames (``python -m experiments.seqcsist_table``).
* ``ista_net``, ``ista_net_plus``, ``dista_net``: per frame, on every frame of the training
  trajectories at batch 64, scored on the test windows' centre frames. Expected: the published rows
  (ISTA-Net 48.95, ISTA-Net+ 51.02; DISTA-Net has no published SeqCSIST row).

CPU budgets (``common.seqcsist_cpu``; the best network in ``<workdir>/best`` for
``experiments/seqcsist_table.py``, runtimes and results in ``docs/results.md``):

* ``cpu_derefnet``, ``cpu_ista_net``, ``cpu_ista_net_plus``, ``cpu_dista_net``: the SeqCSIST table's
  equal budget: the same 200 training trajectories, 400 steps of 16 samples (a window for DeRefNet, a
  frame for the others), Adam 1e-3 with weight decay 1e-5, step sizes from 0.1.
* ``cpu_derefnet_noise``: the window grid network of the noise table (issue 22): ``cpu_derefnet`` on the
  windows of all 3,500 training trajectories with read noise drawn per window on the device, std uniform
  in [0, 5] grey levels (every frame its own draw), validation on the windows of 40 validation
  trajectories with one fixed draw. ``DEREFNET_NOISE_STEPS`` steps (a DeRefNet step of 16 five-frame
  windows costs about three ISTA-Net+ steps of 32 frames: about the compute of
  ``cpu.py:ista_net_plus_noise``); 32 minutes measured (``experiments/checkpoints/README.md``).
* ``cpu_window_localizer``: the multi-frame learned localiser (``csist_jax.models.WindowLocalizer``) on
  windows of 5 frames: a shared per-frame trunk (16 channels, 2 residual blocks), a temporal context
  stage (32 channels, 2 blocks) and the localiser's heads for the centre frame; read noise std ~ U(0, 5)
  per window, count term on (``config.loss.localizer.count_weight`` 1); ``WINDOW_LOCALIZER_STEPS`` steps
  of Adam at batch 64 from the windows of the 3,500 training trajectories (56,000 windows), cosine from
  2e-3; validation on the windows of 100 validation trajectories after every epoch. At most two hours
  on this 2-core CPU (issue 22). The shipped ``csist_jax/checkpoints/window_localizer_noise_c3``.

Any of them short: ``--config.optim.num_steps=20``.
"""

from __future__ import annotations

import ml_collections

from csist_jax.train import default_config
from experiments.configs.common import choose, seqcsist_cpu, seqcsist_published

#: the steps of ``cpu_derefnet_noise`` and ``cpu_window_localizer``
DEREFNET_NOISE_STEPS = 200
WINDOW_LOCALIZER_STEPS = 12_000


def _derefnet_noise() -> ml_collections.ConfigDict:
    cfg = seqcsist_cpu("derefnet")
    cfg.data.train_size = 3_500
    cfg.data.val_size = 40
    cfg.data.noise_std = (0.0, 5.0)
    cfg.optim.num_steps = DEREFNET_NOISE_STEPS
    cfg.eval.every_epochs = 1
    cfg.checkpoint_every_steps = 50
    cfg.log_every_steps = 50
    return cfg


def _window_localizer() -> ml_collections.ConfigDict:
    cfg = default_config()
    cfg.model.name = "window_localizer"
    cfg.model.c = 3
    cfg.model.stages = 2
    cfg.model.channels = 16
    cfg.data.dataset = "seqcsist"
    cfg.data.window = 5
    cfg.data.train_size = 3_500
    cfg.data.val_size = 100
    cfg.data.noise_std = (0.0, 5.0)
    cfg.loss.localizer.count_weight = 1.0
    cfg.eval.brightness_threshold = 70.0
    cfg.optim.batch_size = 64
    cfg.optim.learning_rate = 2e-3
    cfg.optim.schedule = "cosine"
    cfg.optim.num_steps = WINDOW_LOCALIZER_STEPS
    cfg.steps_per_call = 10
    cfg.eval.every_epochs = 1
    cfg.eval.batch_size = 400
    cfg.log_every_steps = 100
    return cfg


NETWORKS = ("derefnet", "ista_net", "ista_net_plus", "dista_net")
VARIANTS = {
    **{name: (lambda name=name: seqcsist_published(name)) for name in NETWORKS},
    **{f"cpu_{name}": (lambda name=name: seqcsist_cpu(name)) for name in NETWORKS},
    "cpu_derefnet_noise": _derefnet_noise,
    "cpu_window_localizer": _window_localizer,
}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    return choose(arg, VARIANTS, "seqcsist.py")
