"""The published full-scale CSIST-100K recipe of an unfolding network (``published.py:<model>[,<c>]``).

    python -m experiments.train --config=experiments/configs/published.py:dista_net \\
        --workdir=runs/dista_net_c3
    python -m experiments.train --config=experiments/configs/published.py:dista_net,5 \\
        --workdir=runs/dista_net_c5

``common.published``: all 80,000 training frames, Adam 1e-4, batch 64, 250 epochs (312,500 steps),
validation CSO-mAP on 10,000 frames after every epoch, best network kept in ``<workdir>/best``. A GPU/TPU
job (data parallel over every visible device; raise ``--config.optim.batch_size`` with the device count
if wanted). ``c`` defaults to 3. The comparison zoo's published recipes: ``zoo.py:<name>,published``.

==================  ===========================================  ===========================================
argument            network                                      expected test CSO-mAP x100
==================  ===========================================  ===========================================
``ista_net``        ISTA-Net, 9 stages, 171,090 parameters       45.16 (published)
``ista_net_plus``   ISTA-Net+, 9 stages, 336,978 parameters      46.06 (published)
``dista_net``       DISTA-Net, 6 stages, 2,179,104 parameters    46.74 (published)
``dista_net,5``     DISTA-Net c = 5, 6 stages, 5,152,800         no published number (grid ceiling 73.5)
``dista_net,7``     DISTA-Net c = 7, 4 stages, 6,408,896         no published number (grid ceiling 83.0)
``lista``           LISTA, 16 layers, 21,100,464 parameters      30.13 (published)
==================  ===========================================  ===========================================
"""

from __future__ import annotations

import ml_collections

from experiments.configs.common import published

#: the networks with a published CSIST-100K recipe
NETWORKS = ("ista_net", "ista_net_plus", "dista_net", "lista")


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    parts = [p.strip() for p in (arg or "").split(",")]
    name = parts[0]
    if name not in NETWORKS or len(parts) > 2:
        raise ValueError(f"published.py:<model>[,<c>]: model must be one of {list(NETWORKS)}, got {arg!r}")
    try:
        c = int(parts[1]) if len(parts) > 1 else 3
    except ValueError:
        raise ValueError(f"published.py:<model>,<c>: c must be an integer, got {parts[1]!r}") from None
    return published(name, c=c)
