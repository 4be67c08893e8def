"""ISTA-Net at the CPU-scale budget with initial step sizes 0.1 instead of the published 0.5 (ablation).

    python -m experiments.train --config=experiments/configs/cpu_ista_net_step01.py \\
        --workdir=runs/cpu_ista_net_step01

Same as ``cpu_ista_net`` except ``step_init = 0.1`` (below ``1 / ||Phi||^2 = 0.116``, where the
gradient step is stable); see ``cpu_ista_net_plus_step01`` for why this matters at a small budget.
"""

from experiments.configs.common import cpu_scale


def get_config():
    cfg = cpu_scale("ista_net")
    cfg.model_config.step_init = 0.1
    return cfg
