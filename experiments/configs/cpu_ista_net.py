"""ISTA-Net, c = 3, at the CPU-scale budget shared by the CPU table (see ``common.cpu_scale``).

    python -m experiments.train --config=experiments/configs/cpu_ista_net.py \\
        --workdir=runs/cpu_ista_net

2,048 training frames, batch 32, 128 steps of Adam 1e-3, validation on 500 frames per epoch. Runtime
and the measured result are in docs/models.md (CPU table); the best network lands in
``<workdir>/best`` for ``experiments/csist100k_table.py``.
"""

from experiments.configs.common import cpu_scale


def get_config():
    return cpu_scale("ista_net")
