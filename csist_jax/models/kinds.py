r"""Model kinds: what a model consumes, what it produces, and how training and evaluation call it.

Every model of :mod:`csist_jax.models` is one kind, declared by its class attribute ``KIND``:

=================  ==========================================  =============================================
kind               consumes (``apply`` after the variables)    produces
=================  ==========================================  =============================================
``FRAME_MAPS``     frames ``[n, size, size]``                   HR maps ``[n, size c, size c]``
``WINDOW_MAPS``    windows ``[n, T, size, size]``, centre       the centre frames' HR maps
                   indices ``[n]``
``FRAME_POINTS``   frames                                       per-cell detection heads (a dict), decoded
                                                                to points ``[n, M, 3]`` and counts ``[n]``
``WINDOW_POINTS``  windows, centre indices                      the centre frames' detection heads
=================  ==========================================  =============================================

A kind is the pair of its two halves. *What it consumes* fixes the arrays a batch hands the model
(:meth:`Kind.inputs`), the zero inputs of ``init`` and the frames a physics term compares with. *What it
produces* fixes how the model is run for its loss and what it is trained against: an HR-map model is run
with ``return_aux=True`` and trained against the HR label map of the targets; a point model is trained
against the targets themselves. The model itself owns the rest:

* ``objective(outputs, aux, labels, **options)`` (maps) or ``objective(outputs, targets, *, images,
  **options)`` (points): its training loss, ``(loss, parts)``;
* ``LOSS_GROUP`` and ``LOSS_OPTIONS``: the sub-group of the training config's ``loss`` group its
  objective's options live in and the names of the fields of it the objective reads (e.g. ``"unfolding"``
  and ``("sym_weight",)``: ``config.loss.unfolding.sym_weight``); the training route passes exactly
  those, nothing is replaced behind the config's back;
* ``decode(outputs, **options)``: ``{"maps": ...}`` or ``{"points", "count", ...}`` for the metrics.

The training route (:mod:`csist_jax.train`) calls only this interface: it never asks which kind, name
or class a model is. A new kind of model is a new :class:`Kind` value here (or an existing one) and its
class; see ``docs/adding_a_method.md``.
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp

from csist_jax import physics

#: what a kind may consume / produce
CONSUMES = ("frames", "windows")
PRODUCES = ("maps", "points")


@dataclasses.dataclass(frozen=True)
class Kind:
    """A model kind: ``consumes`` (``"frames"`` or ``"windows"``) and ``produces`` (``"maps"`` or
    ``"points"``). Stateless; every method takes the model (a Flax module) it serves."""

    consumes: str
    produces: str

    def __post_init__(self):
        if self.consumes not in CONSUMES or self.produces not in PRODUCES:
            raise ValueError(f"a kind consumes one of {CONSUMES} and produces one of {PRODUCES}")

    @property
    def name(self) -> str:
        return f"{self.consumes[:-1]}_{self.produces}"

    @property
    def windows(self) -> bool:
        """Whether the model reads windows of frames (and their centre indices)."""
        return self.consumes == "windows"

    # what it consumes ------------------------------------------------------------------------------

    def input_keys(self) -> tuple[str, ...]:
        """The batch entries the model reads, in ``apply`` order."""
        return ("image", "frame") if self.windows else ("image",)

    def inputs(self, batch: dict) -> tuple:
        """The arrays of ``batch`` (``image``, and for windows ``frame``) the model's ``apply`` reads."""
        missing = [k for k in self.input_keys() if batch.get(k) is None]
        if missing:
            raise ValueError(
                f"a {self.name} model needs the batch entries {missing} (windows and their centre indices)"
            )
        return tuple(batch[k] for k in self.input_keys())

    def example_inputs(self, module, n: int = 1, window: int | None = None) -> tuple:
        """Zero inputs of ``module.init`` for ``n`` samples (windows of ``window`` frames, default 5)."""
        frames = jnp.zeros((n, module.size, module.size), jnp.float32)
        if not self.windows:
            return (frames,)
        window = window or 5
        return jnp.zeros((n, window, module.size, module.size), jnp.float32), jnp.full(
            (n,), window // 2, jnp.int32
        )

    def centre_frames(self, images):
        """The frames a prediction is of: the frames themselves, or each window's centre frame."""
        return images[:, images.shape[1] // 2] if self.windows else images

    def check_window(self, window: int, dataset: str, name: str) -> None:
        """Raise naming the fields unless ``config.data.window`` / ``config.data.dataset`` suit this kind."""
        if self.windows:
            if dataset != "seqcsist" or window < 3 or window % 2 == 0:
                raise ValueError(
                    f"config.model.name={name!r} reads windows of frames: it needs "
                    f"config.data.dataset='seqcsist' and an odd config.data.window >= 3, got {dataset!r} "
                    f"and {window}"
                )
        elif window:
            raise ValueError(
                f"config.data.window must be 0 for the single-frame model {name!r} (it sees one frame), "
                f"got {window}"
            )

    # what it produces ------------------------------------------------------------------------------

    def loss(self, module, variables, batch: dict, options: dict | None = None):
        """``(loss, parts)``: ``module`` run on ``batch`` (``image`` float, ``targets`` ``[B, K, 3]``, for
        windows ``frame``) and scored by its own ``objective`` with ``options`` (the config fields of
        ``module.LOSS_OPTIONS``)."""
        options = dict(options or {})
        inputs = self.inputs(batch)
        targets = batch["targets"]
        if self.produces == "maps":
            out, aux = module.apply(variables, *inputs, return_aux=True)
            labels = physics.hr_label(targets, module.c, module.size)
            return module.objective(out, aux, labels, **options)
        outputs = module.apply(variables, *inputs)
        return module.objective(outputs, targets, images=self.centre_frames(inputs[0]), **options)


FRAME_MAPS = Kind("frames", "maps")
WINDOW_MAPS = Kind("windows", "maps")
FRAME_POINTS = Kind("frames", "points")
WINDOW_POINTS = Kind("windows", "points")
KINDS = (FRAME_MAPS, WINDOW_MAPS, FRAME_POINTS, WINDOW_POINTS)


def of(module) -> Kind:
    """The kind ``module`` (a model of :mod:`csist_jax.models`, or any module with ``KIND``) declares."""
    kind = getattr(module, "KIND", None)
    if not isinstance(kind, Kind):
        raise TypeError(
            f"{type(module).__name__} declares no model kind "
            "(a class attribute KIND of csist_jax.models.kinds)"
        )
    return kind


def loss_options(module, config) -> dict:
    """The options ``module``'s objective reads: the fields ``module.LOSS_OPTIONS`` of the sub-group
    ``module.LOSS_GROUP`` of ``config.loss`` (``config``: the training config, or its ``loss`` group)."""
    names = tuple(getattr(module, "LOSS_OPTIONS", ()))
    if not names:
        return {}
    loss = config["loss"] if "loss" in config else config
    group = loss[module.LOSS_GROUP]
    return {name: group[name] for name in names}


__all__ = [
    "CONSUMES",
    "FRAME_MAPS",
    "FRAME_POINTS",
    "KINDS",
    "Kind",
    "PRODUCES",
    "WINDOW_MAPS",
    "WINDOW_POINTS",
    "loss_options",
    "of",
]
