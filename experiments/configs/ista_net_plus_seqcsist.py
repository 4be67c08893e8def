"""ISTA-Net+ per frame on SeqCSIST as published (see ``common.seqcsist_published``): a GPU/TPU job.

    python -m experiments.train --config=experiments/configs/ista_net_plus_seqcsist.py \\
        --workdir=runs/ista_net_plus_seqcsist

Trained on every frame of the 3,500 training trajectories, scored on the test windows' centre frames
(``experiments/seqcsist_table.py``). Expected: the published row (ISTA-Net 48.95, ISTA-Net+ 51.02;
DISTA-Net has no published SeqCSIST row); not run by this project on an accelerator yet.
"""

from experiments.configs.common import seqcsist_published


def get_config():
    return seqcsist_published("ista_net_plus")
