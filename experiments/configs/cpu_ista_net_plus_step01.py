"""ISTA-Net+ at the CPU-scale budget with initial step sizes 0.1 instead of the published 0.5 (ablation).

    python -m experiments.train --config=experiments/configs/cpu_ista_net_plus_step01.py \\
        --workdir=runs/cpu_ista_net_plus_step01

The gradient step ``x - lam Phi^T (Phi x - z)`` is stable only for ``lam < 2 / ||Phi||^2 = 0.233``
(c = 3); at the published 0.5 it multiplies the error along the top singular vector by
``|1 - 0.5 * 8.587| = 3.3`` per stage, and ISTA-Net+'s residual path ``x = r + G(...)`` carries that
through all 9 stages until training shrinks the steps (Adam moves them by at most ``lr`` per update).
This run starts every stage at 0.1 (``< 1 / ||Phi||^2``); everything else equals ``cpu_ista_net_plus``.
"""

from experiments.configs.common import cpu_scale


def get_config():
    cfg = cpu_scale("ista_net_plus")
    cfg.model_config.step_init = 0.1
    return cfg
