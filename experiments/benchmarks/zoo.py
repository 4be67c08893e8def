"""Every single-frame method's inference speed, parameters and MACs, beside the published GPU figures.

One row per name of ``csist_jax.models.MODEL_NAMES`` (the unfolding networks and the comparison zoo)
plus the learned localiser, at the published size (``--quick``: the reduced test sizes): frames/s of
the jitted forward pass on this machine (best of the timed passes after compilation; batch 64, or 8
for a model above 1e9 multiply-accumulates per image on a CPU), trained parameters and MACs per image
(``csist_jax.models.complexity``). The note sets the published GPU frames/s beside ours (SPEC sec. 10:
the FOCUS paper's CSIST-100K re-runs, else the SeqCSIST table); those were measured on other hardware,
so the columns are not a ratio. FOCUS (122,522) and DISTA-Net (10,992) in the FOCUS paper are the
issue's reference pair; the ``focus vs dista_net`` row is their ratio measured here in one run.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from csist_jax import models
from csist_jax.data import csist100k
from csist_jax.models import baselines
from experiments.benchmarks.common import Row, best_time

SECTION = "zoo"

#: published GPU frames/s (SPEC sec. 10.3, the FOCUS paper's table; else sec. 10.2, SeqCSIST Table 7)
PUBLISHED_FPS = {
    "liht": (46_009, "FOCUS"),
    "lamp": (12_625, "FOCUS"),
    "lista": (34_111, "FOCUS"),
    "ista_net": (2_127, "FOCUS"),
    "ista_net_plus": (1_696, "FOCUS"),
    "dista_net": (10_992, "FOCUS"),
    "fista_net": (12_516, "FOCUS"),
    "tilista": (9_408, "FOCUS"),
    "usrnet": (1_084, "FOCUS"),
    "rpcanet": (1_892, "FOCUS"),
    "rdn": (5_050, "FOCUS"),
    "edsr": (28_075, "FOCUS"),
    "focus": (122_522, "FOCUS"),
    "srcnn": (102_961, "SeqCSIST"),
    "gmfn": (855, "SeqCSIST"),
    "dbpn": (7_109, "SeqCSIST"),
    "srgan": (12_965, "SeqCSIST"),
    "bsrgan": (1_528, "SeqCSIST"),
    "esrgan": (1_024, "SeqCSIST"),
    "espcn": (144_901, "SeqCSIST"),
    "ista_net_pp": (1_751, "SeqCSIST"),
}
HEAVY_MACS = 1e9


def _module(name: str, quick: bool):
    if not quick:
        return models.create(name)
    if name in models.BASELINE_NAMES:
        return models.create(name, **baselines.small_config(name))
    return models.create(name, stages=1)


def timing_variables(module, x, seed: int = 0):
    """Variables of ``module``'s shapes filled with N(0, 0.02) draws (NumPy): the values do not change the
    timing, and XLA:CPU takes many minutes to compile the initialiser of the largest models (HAN's 64M
    parameters), against seconds for their forward pass."""
    rng = np.random.default_rng(seed)
    shapes = jax.eval_shape(module.init, jax.random.PRNGKey(seed), x)
    return jax.tree.map(lambda s: jnp.asarray(rng.normal(0.0, 0.02, s.shape).astype(s.dtype)), shapes)


def measure(name: str, quick: bool, images: np.ndarray) -> dict:
    """``{"params", "macs", "fps", "batch"}`` of ``name``'s jitted forward pass on ``images``."""
    module = _module(name, quick)
    cost = models.complexity(module)
    accelerator = jax.default_backend() != "cpu"
    batch = 64 if accelerator or cost["macs"] <= HEAVY_MACS else 8
    if quick:
        batch = 16
    x = jnp.asarray(images[:batch])
    variables = timing_variables(module, x[:1])
    if models.is_localizer(module):
        from csist_jax.models import localizer

        apply = models.jit(lambda v, x: localizer.points(module.apply(v, x)), inference_of=module)
    else:
        apply = models.jit(module.apply, inference_of=module)
    repeats = 2 if quick else (10 if accelerator else 3)
    seconds = best_time(lambda: apply(variables, x), repeats=repeats)
    return {**cost, "fps": batch / seconds, "batch": batch}


def run(quick: bool = False) -> list[Row]:
    images = csist100k.generate(11, 64)["image"].astype(np.float32)
    names = models.MODEL_NAMES + models.LOCALIZER_NAMES
    rows, fps = [], {}
    bar = tqdm(names, desc="zoo frames/s", unit="model", leave=False)
    for name in bar:
        bar.set_postfix_str(name)
        m = measure(name, quick, images)
        fps[name] = m["fps"]
        published = PUBLISHED_FPS.get(name)
        note = f"{m['params']:,} params, {m['macs'] / 1e6:,.1f}M MACs/image, batch {m['batch']}"
        if published:
            note += f"; published GPU {published[0]:,} fps ({published[1]} table)"
        rows.append(Row(SECTION, f"{name} inference", m["fps"], "frames/s", note=note))
    if "focus" in fps and "dista_net" in fps:
        rows.append(
            Row(
                SECTION,
                "focus vs dista_net, frames/s",
                fps["focus"] / fps["dista_net"],
                "x",
                ratio=fps["focus"] / fps["dista_net"],
                note="published on a GPU: 122,522 / 10,992 = 11.1x",
            )
        )
    return rows
