"""Every model of the library behind one registry: the deep unfolding networks (SPEC sec. 7-8), the
comparison baselines, DeRefNet and the learned localisers, each of one kind (:mod:`.kinds`: frames or
windows in, HR maps or points out), with their objectives (:mod:`.objectives`) and checkpoints.

>>> from csist_jax import models
>>> net = models.create("dista_net", c=3)
>>> variables = net.init(jax.random.PRNGKey(0), images)        # images [n, 11, 11], raw 0..255
>>> maps = net.apply(variables, images)                        # HR maps [n, 33, 33]
>>> maps, aux = net.apply(variables, images, return_aux=True)  # + per-stage symmetry residuals
>>> maps = net.apply(variables, images, operator=physics.sampling_operator(3, sigma=0.6))  # another Phi

Every unfolding network is the ISTA loop of :mod:`csist_jax.solvers` (one shared ``gradient_step``)
with trained stages, started at ``x_0 = Q z`` (``Q`` a fixed matrix in the ``"constants"`` collection).
The operator and ``Q`` are inputs: ``apply(..., operator=A, q=Q)`` runs any
:class:`csist_jax.physics.SamplingOperator` of the right shapes (a learned ``DenseOperator`` included)
and any ``Q`` ``[hr^2, size^2]``; by default the analytic ``Phi`` and the stored ``Q``. A model declares
whether it uses them (``USES_PHYSICS``): the super-resolution baselines
(:class:`SuperResolutionNetwork`, TDAN) do not, and hold no ``Q``. Training asks each model for its
constants fitted to the training labels (``module.fit_constants(targets)``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import flax.linen as nn

from csist_jax import _checks
from csist_jax.models import baselines, kinds, objectives
from csist_jax.models.checkpoint import load_checkpoint, read_meta, save_model
from csist_jax.models.compile import CPU_OPTIONS, INFERENCE_FUSIONS, compiler_options, jit
from csist_jax.models.complexity import complexity
from csist_jax.models.derefnet import DeRefNet
from csist_jax.models.dista_net import DISTANet
from csist_jax.models.ista_net import ISTANet
from csist_jax.models.ista_net_plus import ISTANetPlus
from csist_jax.models.layers import (
    MapNetwork,
    SuperResolutionNetwork,
    UnfoldingNetwork,
    WindowNetwork,
    unroll,
)
from csist_jax.models.lista import LISTA
from csist_jax.models.localizer import Localizer, WindowLocalizer


@dataclasses.dataclass(frozen=True)
class Entry:
    """One model of the registry: its class (imported on first use for the baselines), the published
    stage count per ``c`` (None: the class defaults are the published sizes), its kind, its family
    (``"unfolding"``, ``"baseline"`` or ``"localizer"``) and a small size for tests and smoke runs."""

    name: str
    load: Callable[[], type]
    kind: kinds.Kind
    family: str
    stages: dict | None = None
    small: dict = dataclasses.field(default_factory=dict)

    @property
    def cls(self) -> type:
        return self.load()


def _own(cls, kind, family, stages, small) -> Callable:
    return lambda name: Entry(name, lambda: cls, kind, family, stages, small)


def _baseline(kind) -> Callable:
    return lambda name: Entry(
        name, lambda: baselines.get_class(name), kind, "baseline", None, _LazySmall(name)
    )


class _LazySmall(dict):
    """A baseline's small size, read from its module on first use (the modules import lazily)."""

    def __init__(self, name):
        super().__init__()
        self._name = name

    def _load(self):
        if not super().__len__():
            super().update(baselines.small_config(self._name))

    def __iter__(self):
        self._load()
        return super().__iter__()

    def __len__(self):
        self._load()
        return super().__len__()

    def __getitem__(self, key):
        self._load()
        return super().__getitem__(key)

    def keys(self):
        self._load()
        return super().keys()

    def items(self):
        self._load()
        return super().items()


#: every model of the library, by the name :func:`create` takes: the one registry
REGISTRY: dict[str, Entry] = {
    name: make(name)
    for name, make in {
        "ista_net": _own(ISTANet, kinds.FRAME_MAPS, "unfolding", {3: 9, 5: 9, 7: 9}, {"stages": 2}),
        "ista_net_plus": _own(ISTANetPlus, kinds.FRAME_MAPS, "unfolding", {3: 9, 5: 9, 7: 9}, {"stages": 2}),
        "dista_net": _own(DISTANet, kinds.FRAME_MAPS, "unfolding", {3: 6, 5: 6, 7: 4}, {"stages": 2}),
        "lista": _own(LISTA, kinds.FRAME_MAPS, "unfolding", {3: 16, 5: 16, 7: 16}, {"stages": 2}),
        "derefnet": _own(DeRefNet, kinds.WINDOW_MAPS, "unfolding", {3: 9, 5: 9, 7: 9}, {"stages": 2}),
        **{name: _baseline(kinds.FRAME_MAPS) for name in baselines.ZOO},
        **{name: _baseline(kinds.WINDOW_MAPS) for name in baselines.SEQUENCE_ZOO},
        "localizer": _own(
            Localizer, kinds.FRAME_POINTS, "localizer", {3: 3, 5: 3, 7: 3}, {"stages": 1, "channels": 8}
        ),
        "window_localizer": _own(
            WindowLocalizer,
            kinds.WINDOW_POINTS,
            "localizer",
            {3: 2, 5: 2, 7: 2},
            {"stages": 1, "channels": 4, "context_stages": 1, "context_channels": 8},
        ),
    }.items()
}


def names(*, kind: kinds.Kind | None = None, family: str | None = None) -> tuple[str, ...]:
    """The registry's names, in registry order, of one ``kind`` and/or ``family`` (None: any)."""
    return tuple(
        n
        for n, e in REGISTRY.items()
        if (kind is None or e.kind == kind) and (family is None or e.family == family)
    )


#: every name :func:`create` knows
ALL_NAMES = tuple(REGISTRY)
#: the multi-frame HR-map networks (windows and frame indices in, the centre frame's HR map out)
SEQUENCE_MODEL_NAMES = names(kind=kinds.WINDOW_MAPS)
#: the learned localisers (frames or windows in, per-cell detections out)
LOCALIZER_NAMES = names(family="localizer")
#: the library's own single-frame unfolding networks (frames in, HR maps out)
UNFOLDING_NAMES = names(kind=kinds.FRAME_MAPS, family="unfolding")
#: the single-frame comparison baselines of the published tables (:mod:`csist_jax.models.baselines`)
BASELINE_NAMES = names(kind=kinds.FRAME_MAPS, family="baseline")
#: every single-frame HR-map method (frames in, HR maps out): the unfolding networks and the baselines
MODEL_NAMES = UNFOLDING_NAMES + BASELINE_NAMES


def create(name: str, *, c: int = 3, **config) -> nn.Module:
    """The model ``name`` of the registry for up-sampling ratio ``c``; ``config`` overrides its fields.

    The model's kind (``models.kinds.of(module)``) says what ``apply`` takes and returns: HR-map networks
    ``apply(variables, images[n, size, size])`` (``"ista_net"``, ``"ista_net_plus"``, ``"dista_net"``,
    ``"lista"`` and the baselines of :data:`BASELINE_NAMES`) or ``apply(variables, windows[n, T, size,
    size], centre_index[n])`` (``"derefnet"``, ``"tdan"``) -> maps ``[n, size c, size c]``; learned
    localisers ``"localizer"`` (frames) and ``"window_localizer"`` (windows) -> a dict of per-cell heads
    (decoded by ``module.decode`` / :func:`csist_jax.models.localizer.points`).

    Fields: ``stages`` (default: the published count for ``c``; DISTA-Net uses 4 at ``c = 7``; the
    localisers' residual blocks), ``channels``, ``size``, ``sigma``, ``q_init`` (``[(size c)^2, size^2]``,
    e.g. :func:`csist_jax.physics.q_init`), ``step_init`` (initial step sizes, published 0.5), and per
    network ``dynamic_share`` / ``hidden`` (DISTA-Net), ``lam`` (LISTA), ``residual_blocks`` /
    ``n_frames`` (DeRefNet), ``reach`` / ``brightness_scale`` (localisers), ``context_stages`` /
    ``context_channels`` (window localiser). The baselines take their own fields; their defaults are the
    published sizes. An unknown field raises naming the known ones.
    """
    entry = REGISTRY.get(name)
    if entry is None:
        raise ValueError(f"name must be one of {list(REGISTRY)}, got {name!r}")
    cls, stages = entry.cls, entry.stages
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
    """Whether ``module`` reads windows (``apply(variables, windows, centre_index)``)."""
    return kinds.of(module).windows


def is_localizer(module) -> bool:
    """Whether ``module`` produces per-cell detections (decoded to points) rather than HR maps."""
    return kinds.of(module).produces == "points"


def example_inputs(module, n: int = 1, window: int | None = None) -> tuple:
    """Zero inputs of ``module.init`` for ``n`` samples: ``(images,)`` ``[n, size, size]``, or for a
    multi-frame model ``(windows [n, window, size, size], centre_index [n])`` (``window`` default 5)."""
    return kinds.of(module).example_inputs(module, n, window)


def param_count(variables) -> int:
    """Number of trained parameters (the ``"params"`` collection; ``Q`` is a constant, not counted)."""
    import jax

    return int(sum(x.size for x in jax.tree.leaves(variables["params"])))


__all__ = [
    "ALL_NAMES",
    "BASELINE_NAMES",
    "Entry",
    "REGISTRY",
    "WindowLocalizer",
    "kinds",
    "names",
    "objectives",
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
    "SuperResolutionNetwork",
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
