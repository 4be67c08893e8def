"""DISTA-Net on CSIST-100K at c = 7, the published full-scale recipe (4 stages, 6,408,896 parameters).

    python -m experiments.train --config=experiments/configs/dista_net_c7.py \\
        --workdir=runs/dista_net_c7

All 80,000 training frames, Adam 1e-4, batch 64, 250 epochs (312,500 steps), validation CSO-mAP on
10,000 frames after every epoch, best network kept in ``<workdir>/best``. A GPU/TPU job (data parallel
over every visible device; raise ``--config.batch_size`` with the device count if wanted).
Expected test CSO-mAP x100: (published grid ceiling 83.0; no published c=7 number quoted in SPEC) (published).
"""

from experiments.configs.common import published


def get_config():
    return published("dista_net", c=7)
