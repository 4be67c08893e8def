"""DISTA-Net on SeqCSIST at the CPU-scale budget shared by the SeqCSIST table (see ``common.seqcsist_cpu``).

    python -m experiments.train --config=experiments/configs/seq_cpu_dista_net.py \\
        --workdir=runs/seq_cpu_dista_net

The best network lands in ``<workdir>/best`` for ``experiments/seqcsist_table.py``; runtime and the
measured result are in the README's SeqCSIST table.
"""

from experiments.configs.common import seqcsist_cpu


def get_config():
    return seqcsist_cpu("dista_net")
