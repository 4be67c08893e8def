"""DeRefNet on SeqCSIST as published (see ``common.seqcsist_published``): a GPU/TPU job.

    python -m experiments.train --config=experiments/configs/derefnet_seqcsist.py \\
        --workdir=runs/derefnet
    # the window ablation (3, 5, 7) and the paper's loss weights (1, 0.01, 0.01):
    python -m experiments.train --config=experiments/configs/derefnet_seqcsist.py \
        --workdir=runs/derefnet_w7 --config.window=7
    python -m experiments.train --config=experiments/configs/derefnet_seqcsist.py \
        --workdir=runs/derefnet_paper --config.objective=paper

Expected: the published DeRefNet row, CSO-mAP 51.55 on the SeqCSIST test centre frames at brightness
threshold 70 (``python -m experiments.seqcsist_table``); not run by this
project on an accelerator yet.
"""

from experiments.configs.common import seqcsist_published


def get_config():
    return seqcsist_published("derefnet")
