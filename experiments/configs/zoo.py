"""Any method of the comparison zoo (``csist_jax.models.BASELINE_NAMES``), c = 3, by name.

    python -m experiments.train --config=experiments/configs/zoo.py:edsr --workdir=runs/cpu_edsr
    python -m experiments.train --config=experiments/configs/zoo.py:edsr,published --workdir=runs/edsr_c3
    python -m experiments.train --config=experiments/configs/zoo.py:rcan,cpu,5 --workdir=runs/cpu_rcan_c5

The argument is ``name[,scale[,c]]``:

* ``cpu`` (default): the CPU-scale budget every row of the CPU table shares (``common.cpu_scale``: 128
  Adam steps of batch 32 on 2,048 generated frames, lr 1e-3), at the published size when one forward
  pass costs at most ``CPU_MACS`` multiply-accumulates per image, otherwise at the model's reduced
  size (its module's ``SMALL``; the row then says so).
* ``published``: the published CSIST-100K recipe (``common.published``: 80,000 frames, batch 64, Adam
  1e-4, 250 epochs) at the published size, a GPU/TPU job.
* ``seq_cpu`` / ``seq_published``: the same on SeqCSIST (``common.seqcsist_cpu`` /
  ``common.seqcsist_published``): a single-frame method on every frame, a multi-frame one (TDAN) on
  5-frame windows, for ``experiments/seqcsist_table.py``.

    python -m experiments.train --config=experiments/configs/zoo.py:tdan,seq_cpu --workdir=runs/seq_cpu_tdan
"""

from __future__ import annotations

import ml_collections

from csist_jax import models
from csist_jax.models import baselines
from experiments.configs.common import (
    cpu_scale,
    published,
    seqcsist_cpu,
    seqcsist_published,
    set_module_fields,
)

#: the most multiply-accumulates per image trained at full size on a CPU (DISTA-Net's is 5.2e8)
CPU_MACS = 6e8
SCALES = ("cpu", "published", "seq_cpu", "seq_published")
RECIPES = {
    "cpu": cpu_scale,
    "published": published,
    "seq_cpu": seqcsist_cpu,
    "seq_published": seqcsist_published,
}


def model_fields(name: str, scale: str, c: int = 3) -> dict:
    """The module fields of ``name`` at ``scale``: {} (published size) or the reduced ``SMALL`` sizes."""
    if scale.endswith("published"):
        return {}
    macs = models.complexity(models.create(name, c=c))["macs"]
    return {} if macs <= CPU_MACS else baselines.small_config(name)


def get_config(arg: str = "srcnn") -> ml_collections.ConfigDict:
    parts = [p.strip() for p in (arg or "srcnn").split(",")]
    name = parts[0]
    scale = parts[1] if len(parts) > 1 and parts[1] else "cpu"
    c = int(parts[2]) if len(parts) > 2 else 3
    known = models.BASELINE_NAMES + tuple(baselines.SEQUENCE_ZOO)
    if name not in known:
        raise ValueError(f"zoo.py:<name>: name must be one of {list(known)}, got {name!r}")
    if scale not in SCALES:
        raise ValueError(f"zoo.py:<name>,<scale>: scale must be one of {SCALES}, got {scale!r}")
    if name in baselines.SEQUENCE_ZOO and not scale.startswith("seq"):
        raise ValueError(f"zoo.py:{name}: a multi-frame method trains on SeqCSIST (seq_cpu or seq_published)")
    # the module fields of the zoo's sizes alone (the recipe's step_init is not a field of most of them)
    return set_module_fields(RECIPES[scale](name, c), model_fields(name, scale, c))
