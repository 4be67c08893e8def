"""Deep unfolding networks for single-frame CSIST unmixing (SPEC sec. 7-8) and their checkpoints.

>>> from csist_jax import models
>>> net = models.create("dista_net", c=3)
>>> variables = net.init(jax.random.PRNGKey(0), images)        # images [n, 11, 11], raw 0..255
>>> maps = net.apply(variables, images)                        # HR maps [n, 33, 33]
>>> maps, aux = net.apply(variables, images, return_aux=True)  # + per-stage symmetry residuals
>>> maps = net.apply(variables, images, operator=physics.sampling_operator(3, sigma=0.6))  # another Phi

Every network is the ISTA loop of :mod:`csist_jax.solvers` (one shared ``gradient_step``) with trained
stages, started at ``x_0 = Q z`` (``Q`` a fixed matrix in the ``"constants"`` collection). The operator
and ``Q`` are inputs: ``apply(..., operator=A, q=Q)`` runs any :class:`csist_jax.physics.SamplingOperator`
of the right shapes (a learned ``DenseOperator`` included) and any ``Q`` ``[hr^2, size^2]``; by default
the analytic ``Phi`` and the stored ``Q``.
"""

from __future__ import annotations

from csist_jax import _checks
from csist_jax.models import baselines
from csist_jax.models.checkpoint import load_checkpoint, read_meta, save_model
from csist_jax.models.compile import CPU_OPTIONS, INFERENCE_FUSIONS, compiler_options, jit
from csist_jax.models.complexity import complexity
from csist_jax.models.derefnet import DeRefNet
from csist_jax.models.dista_net import DISTANet
from csist_jax.models.ista_net import ISTANet
from csist_jax.models.ista_net_plus import ISTANetPlus
from csist_jax.models.layers import MapNetwork, UnfoldingNetwork, WindowNetwork, unroll
from csist_jax.models.lista import LISTA
from csist_jax.models.localizer import Localizer

#: name -> (class, default stages at c = 3, 5, 7) as published
_REGISTRY = {
    "ista_net": (ISTANet, {3: 9, 5: 9, 7: 9}),
    "ista_net_plus": (ISTANetPlus, {3: 9, 5: 9, 7: 9}),
    "dista_net": (DISTANet, {3: 6, 5: 6, 7: 4}),
    "lista": (LISTA, {3: 16, 5: 16, 7: 16}),
    "derefnet": (DeRefNet, {3: 9, 5: 9, 7: 9}),
    "localizer": (Localizer, {3: 3, 5: 3, 7: 3}),
}

#: the multi-frame networks (windows and frame indices in, the centre frame's HR map out)
SEQUENCE_MODEL_NAMES = ("derefnet",) + tuple(baselines.SEQUENCE_ZOO)
#: the learned localisers (images in, per-cell detections out: :mod:`csist_jax.models.localizer`)
LOCALIZER_NAMES = ("localizer",)
#: the library's own single-frame unfolding networks (images in, HR maps out)
UNFOLDING_NAMES = tuple(name for name in _REGISTRY if name not in SEQUENCE_MODEL_NAMES + LOCALIZER_NAMES)
#: the comparison baselines of the published tables (:mod:`csist_jax.models.baselines`), single frame
BASELINE_NAMES = tuple(baselines.ZOO)
#: every single-frame method (images in, HR maps out): the unfolding networks and the baselines
MODEL_NAMES = UNFOLDING_NAMES + BASELINE_NAMES


def create(name: str, *, c: int = 3, **config) -> UnfoldingNetwork:
    """The network ``name`` for up-sampling ratio ``c``; ``config`` overrides module fields.

    Names: ``"ista_net"``, ``"ista_net_plus"``, ``"dista_net"``, ``"lista"`` (single frame:
    ``apply(variables, images[n, size, size])``) and ``"derefnet"`` (SeqCSIST:
    ``apply(variables, windows[n, T, size, size], centre_index[n])``). Fields: ``stages``
    (default: the published count for ``c``; DISTA-Net uses 4 at ``c = 7``), ``channels``, ``size``,
    ``sigma``, ``q_init`` (``[(size c)^2, size^2]``, e.g. :func:`csist_jax.physics.q_init`),
    ``step_init`` (initial step sizes, published 0.5; ISTA-Net, ISTA-Net+, DISTA-Net, DeRefNet), and per
    network ``dynamic_share`` / ``hidden`` (DISTA-Net), ``lam`` (LISTA) or ``residual_blocks`` / ``n_frames``
    (DeRefNet). The baselines of :data:`BASELINE_NAMES` (:mod:`csist_jax.models.baselines`) take their
    own fields; their defaults are the published sizes. ``"localizer"``
    (:class:`csist_jax.models.Localizer`): single frame, per-cell detections instead of a map;
    ``stages`` counts its residual blocks (default 3), plus ``reach`` and ``brightness_scale``.
    """
    if name in baselines.ZOO or name in baselines.SEQUENCE_ZOO:
        cls, stages = baselines.get_class(name), None
    elif name in _REGISTRY:
        cls, stages = _REGISTRY[name]
    else:
        known = list(_REGISTRY) + list(baselines.ZOO) + list(baselines.SEQUENCE_ZOO)
        raise ValueError(f"name must be one of {known}, got {name!r}")
    _checks.positive_int("c", c)
    fields = {f for f in cls.__dataclass_fields__ if f not in ("parent", "name")}
    unknown = sorted(set(config) - fields)
    if unknown:
        raise TypeError(f"create({name!r}): unknown config field(s) {unknown}; known: {sorted(fields)}")
    config = dict(config)
    if stages is not None and config.get("stages") is None:
        config["stages"] = stages.get(c, stages[3])
    if config.get("stages") is not None:
        _checks.positive_int("stages", config["stages"])
    return cls(c=c, **config)


def is_sequence_model(module) -> bool:
    """Whether ``module`` is a multi-frame network (``apply(variables, windows, centre_index)``)."""
    return isinstance(module, WindowNetwork)


def is_localizer(module) -> bool:
    """Whether ``module`` is a learned localiser (``apply(variables, images)`` returns per-cell heads,
    decoded to points by :func:`csist_jax.models.localizer.points`)."""
    return isinstance(module, Localizer)


def example_inputs(module, n: int = 1, window: int | None = None) -> tuple:
    """Zero inputs of ``module.init`` for ``n`` samples: ``(images,)`` ``[n, size, size]``, or for a
    multi-frame network ``(windows [n, window, size, size], centre_index [n])`` (``window`` default 5)."""
    import jax.numpy as jnp

    if not is_sequence_model(module):
        return (jnp.zeros((n, module.size, module.size), jnp.float32),)
    window = window or 5
    windows = jnp.zeros((n, window, module.size, module.size), jnp.float32)
    return windows, jnp.full((n,), window // 2, jnp.int32)


def param_count(variables) -> int:
    """Number of trained parameters (the ``"params"`` collection; ``Q`` is a constant, not counted)."""
    import jax

    return int(sum(x.size for x in jax.tree.leaves(variables["params"])))


__all__ = [
    "BASELINE_NAMES",
    "CPU_OPTIONS",
    "DISTANet",
    "DeRefNet",
    "INFERENCE_FUSIONS",
    "ISTANet",
    "ISTANetPlus",
    "LISTA",
    "LOCALIZER_NAMES",
    "Localizer",
    "MODEL_NAMES",
    "MapNetwork",
    "SEQUENCE_MODEL_NAMES",
    "UNFOLDING_NAMES",
    "UnfoldingNetwork",
    "WindowNetwork",
    "baselines",
    "compiler_options",
    "complexity",
    "create",
    "example_inputs",
    "is_localizer",
    "is_sequence_model",
    "jit",
    "load_checkpoint",
    "param_count",
    "read_meta",
    "save_model",
    "unroll",
]
