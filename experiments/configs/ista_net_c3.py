"""ISTA-Net on CSIST-100K at c = 3, the published full-scale recipe (9 stages, 171,090 parameters).

    python -m experiments.train --config=experiments/configs/ista_net_c3.py \\
        --workdir=runs/ista_net_c3

All 80,000 training frames, Adam 1e-4, batch 64, 250 epochs (312,500 steps), validation CSO-mAP on
10,000 frames after every epoch, best network kept in ``<workdir>/best``. A GPU/TPU job (data parallel
over every visible device; raise ``--config.batch_size`` with the device count if wanted).
Expected test CSO-mAP x100: 45.16 (published).
"""

from experiments.configs.common import published


def get_config():
    return published("ista_net", c=3)
