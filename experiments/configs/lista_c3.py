"""LISTA on CSIST-100K at c = 3, the published full-scale recipe (16 layers, 21,100,464 parameters).

    python -m experiments.train --config=experiments/configs/lista_c3.py --workdir=runs/lista_c3

All 80,000 training frames, Adam 1e-4, batch 64, 250 epochs (312,500 steps), validation CSO-mAP on
10,000 frames after every epoch, best network kept in ``<workdir>/best``. A GPU/TPU job (data parallel
over every visible device; raise ``--config.batch_size`` with the device count if wanted).
Expected test CSO-mAP x100: 30.13 (published).
"""

from experiments.configs.common import published


def get_config():
    return published("lista", c=3)
