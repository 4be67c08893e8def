"""The training configuration: every field :func:`train_and_evaluate` reads, in groups, with its defaults
and its checks (``docs/training.md``).

==========  ===============================================================================================
group       fields
==========  ===============================================================================================
``model``   ``name`` (a registry name), ``c``, ``q_init_size`` and the module fields of the model's class
            (``stages``, ``channels``, ``step_init``, ...; None or absent: the class default)
``data``    ``dataset``, ``source``, ``seed``, ``dir``, ``train_size``, ``val_size``, ``window`` (SeqCSIST
            windows of a window model), ``noise_std``, ``background``
``optim``   ``batch_size``, ``learning_rate``, ``schedule``, ``weight_decay``, ``num_epochs``, ``num_steps``
``loss``    one sub-group per objective of :mod:`csist_jax.models.objectives`: ``unfolding`` (``sym_weight``),
            ``derefnet`` (``objective``), ``localizer`` (``count_weight``, ``physics_weight``). A model's
            class names the sub-group it reads (``LOSS_GROUP``) and the fields of it its objective takes
            (``LOSS_OPTIONS``); the other sub-groups are not read by it
``eval``    ``batch_size``, ``brightness_threshold``, ``every_epochs``
(the run)   ``seed``, ``log_every_steps``, ``checkpoint_every_steps``, ``keep_checkpoints``, ``progress``,
            ``steps_per_call``, ``compute_dtype``, ``profile_steps``, ``restart``
==========  ===============================================================================================

:func:`resolve` lays a config (a ``ConfigDict`` or nested dict of the fields it changes) over
:func:`default_config` and checks every field, nested ones included: a misspelt or moved field raises
naming its full dotted path and the field meant. Configs stored before the groups (flat:
``config.batch_size``, ``config.model = "dista_net"``, ``config.model_config``; in a workdir's
``config.json`` or a saved network's ``info``) are read through :func:`upgrade` and :data:`FLAT_NAMES`.
"""

from __future__ import annotations

import copy
import difflib
import math
import numbers

import ml_collections
import numpy as np

from csist_jax import _checks, models
from csist_jax.train import losses
from csist_jax.train import noise as noise_lib

#: the compute dtypes of ``config.compute_dtype`` (parameters and optimiser state stay float32)
COMPUTE_DTYPES = ("float32", "bfloat16")
#: the datasets of ``config.data.dataset``
DATASETS = ("csist100k", "seqcsist")
#: the learning-rate schedules of ``config.optim.schedule``
SCHEDULES = ("constant", "cosine")
#: the groups of the config (:func:`default_config`)
GROUPS = ("model", "data", "optim", "loss", "eval")
#: the fields of the ``model`` group that are not module fields of the model's class
MODEL_FIELDS = ("name", "c", "q_init_size")

#: The flat config of before the groups -> where each field lives now (dotted, under ``config.``); the
#: flat fields not named here (``seed``, ``data.*`` but ``window``, the run's cadence, ``compute_dtype``,
#: ``profile_steps``, ``restart``) kept their place. ``model_config``'s module fields moved into ``model``.
#: :func:`upgrade` maps a stored flat config with it; :func:`resolve` names the new place of a flat field.
FLAT_NAMES = {
    "model": "model.name",
    "c": "model.c",
    "model_config": "model",
    "q_init_size": "model.q_init_size",
    "window": "data.window",
    "batch_size": "optim.batch_size",
    "learning_rate": "optim.learning_rate",
    "schedule": "optim.schedule",
    "weight_decay": "optim.weight_decay",
    "num_epochs": "optim.num_epochs",
    "num_steps": "optim.num_steps",
    "sym_weight": "loss.unfolding.sym_weight",
    "objective": "loss.derefnet.objective",
    "count_weight": "loss.localizer.count_weight",
    "physics_weight": "loss.localizer.physics_weight",
    "eval_batch_size": "eval.batch_size",
    "brightness_threshold": "eval.brightness_threshold",
    "eval_every_epochs": "eval.every_epochs",
}


def default_config() -> ml_collections.ConfigDict:
    """Every field ``train_and_evaluate`` reads, at the published values (DISTA-Net, c = 3)."""
    placeholder = ml_collections.config_dict.placeholder
    cfg = ml_collections.ConfigDict()
    cfg.model = ml_collections.ConfigDict(
        {
            "name": "dista_net",  # a name of csist_jax.models.REGISTRY
            "c": 3,  # the up-sampling ratio: HR maps of 11c x 11c cells
            "q_init_size": 0,  # training labels used for Q_init (0: all)
            # module fields of the model's class (None: its default); any other field of the class may be
            # added (config.model.residual_blocks = 1); these placeholders make the common ones
            # overridable from the command line
            "stages": placeholder(int),
            "channels": placeholder(int),
            "step_init": placeholder(float),
        }
    )
    # dataset "csist100k" (frames) or "seqcsist" (trajectories; sizes count trajectories)
    cfg.data = ml_collections.ConfigDict(
        {
            "dataset": "csist100k",
            "source": "generate",
            "seed": 0,
            "dir": "",
            "train_size": 80_000,
            "val_size": 10_000,
            # SeqCSIST samples: 0 = single frames (every frame of every trajectory), an odd L >= 3 =
            # windows of L frames predicting their centre frame (the window models, e.g. DeRefNet:
            # published 5)
            "window": 0,
            # read noise drawn per training sample on the device, std ~ U(lo, hi) grey levels, and a
            # background offset ~ U(lo, hi) (csist_jax.train.noise); (0, 0): noise-free. Validation
            # frames get one fixed draw of the same distribution.
            "noise_std": (0.0, 0.0),
            "background": (0.0, 0.0),
        }
    )
    cfg.optim = ml_collections.ConfigDict(
        {
            # any size divisible by the device count; the learning rate is NOT rescaled with it
            "batch_size": 64,
            "learning_rate": 1e-4,
            # the learning rate over the run: "constant", or "cosine" (from learning_rate to 0)
            "schedule": "constant",
            # L2 weight decay added to the gradient before Adam (torch's Adam(weight_decay=...))
            "weight_decay": 0.0,
            "num_epochs": 250,
            "num_steps": 0,  # > 0: stop after this many steps in total (overrides num_epochs)
        }
    )
    # one sub-group per objective (csist_jax.models.objectives); a model reads its class's LOSS_GROUP
    cfg.loss = ml_collections.ConfigDict(
        {
            # the HR-map networks' mse + sym_weight * sym (unfolding_loss; SPEC sec. 7)
            "unfolding": {"sym_weight": losses.SYM_WEIGHT},
            # DeRefNet's objective (derefnet_loss): "toolkit" or "paper"
            "derefnet": {"objective": "toolkit"},
            # the learned localisers' count and physics terms (localizer_loss)
            "localizer": {"count_weight": 0.0, "physics_weight": 0.0},
        }
    )
    cfg.eval = ml_collections.ConfigDict(
        {
            "batch_size": 500,
            "brightness_threshold": 50.0,  # CSO-mAP's brightness threshold of the HR maps
            "every_epochs": 1,
        }
    )
    cfg.seed = 0  # parameter init and batch order
    cfg.log_every_steps = 20
    cfg.checkpoint_every_steps = 0  # 0: at each epoch end only
    cfg.keep_checkpoints = 2
    cfg.progress = True
    # training steps run by one host call (lax.scan over steps, batches gathered on the device)
    cfg.steps_per_call = 1
    # "float32" or "bfloat16": the dtype of the forward and backward pass (parameters stay float32)
    cfg.compute_dtype = "float32"
    # "" (off), "N" (N steps after this run's first) or "A,B" (steps A..B): jax.profiler trace
    cfg.profile_steps = ""
    # start afresh in a workdir that holds an earlier run: its contents (checkpoints, logs, best/) are
    # moved to workdir/previous-<time>/, never deleted. False (default): resume the workdir's run, or
    # refuse when it cannot be resumed (results without a readable checkpoint, another experiment's
    # config). It acts on every run that sets it: do not leave it on in a job that may be restarted.
    cfg.restart = False
    return cfg


# the layout of before the groups -------------------------------------------------------------------


def is_flat(config) -> bool:
    """Whether ``config`` (a dict or ``ConfigDict``) uses a field name of the flat layout of before the
    groups (:data:`FLAT_NAMES`: ``model`` as a name, ``batch_size``, ``model_config``, ...)."""
    given = _as_dict(config)
    return any(k in FLAT_NAMES and not (k == "model" and isinstance(v, dict)) for k, v in given.items())


def upgrade(config) -> dict:
    """A stored config (a dict or ``ConfigDict``) in the grouped layout: the flat fields of before the
    groups moved to their places (:data:`FLAT_NAMES`), ``model_config``'s module fields into ``model``;
    a grouped config is returned as it is (a copy). Values are not changed or checked."""
    given = copy.deepcopy(_as_dict(config))
    if not is_flat(given):
        return given
    out: dict = {}
    for key, value in given.items():
        if key == "model" and isinstance(value, dict):
            _merge(out.setdefault("model", {}), value)
        elif key == "model_config":
            _merge(out.setdefault("model", {}), dict(value or {}))
        elif key in FLAT_NAMES:
            *groups, leaf = FLAT_NAMES[key].split(".")
            node = out
            for group in groups:
                node = node.setdefault(group, {})
            node[leaf] = value
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            _merge(out[key], value)
        else:
            out[key] = value
    return out


def _merge(into: dict, new: dict) -> None:
    for key, value in new.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value


def flatten(tree, prefix: str = "") -> dict:
    """A nested config dict (or ``ConfigDict``) as ``{dotted field: value}``."""
    out = {}
    for key, value in _as_dict(tree).items():
        if isinstance(value, dict):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


# resolving and checking ----------------------------------------------------------------------------


def resolve(config) -> ml_collections.ConfigDict:
    """``config`` over :func:`default_config` (missing fields take their defaults), checked.

    Every field of ``config`` must be a field of :func:`default_config`, at any depth (``model``: also
    a module field of the model's class): a misspelt field raises naming its dotted path and the
    closest known one, a field of the flat layout of before the groups (``batch_size``) its new place
    (``optim.batch_size``), rather than being carried along unread (``ConfigDict.update`` adds unknown
    keys silently)."""
    given = _as_dict(config)
    base = default_config()
    check_fields(given)
    base.update(given)
    check(base)
    # after check(): the model name and its window are known good, and named first when they are not
    check_model_fields(base.model.to_dict(), base.model.name)
    return base


def module_fields(config) -> dict:
    """The module fields of ``config.model`` that are set (not None): ``models.create``'s keywords."""
    return {k: v for k, v in _as_dict(config.model).items() if k not in MODEL_FIELDS and v is not None}


def _as_dict(config) -> dict:
    if hasattr(config, "to_dict"):
        return config.to_dict()
    return {k: _as_dict(v) if hasattr(v, "to_dict") or isinstance(v, dict) else v for k, v in config.items()}


def _leaves(tree: dict, prefix: str = "config.") -> dict:
    """``{leaf name: [dotted paths]}`` of every field of ``tree``."""
    out: dict = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            for leaf, paths in _leaves(value, f"{prefix}{key}.").items():
                out.setdefault(leaf, []).extend(paths)
        else:
            out.setdefault(key, []).append(f"{prefix}{key}")
    return out


def moved_to(field: str) -> str | None:
    """Where a field of the flat layout of before the groups lives now: ``"batch_size"`` ->
    ``"optim.batch_size"``, ``"model_config.stages"`` -> ``"model.stages"`` (dotted, under ``config.``);
    None for a field that is not one of :data:`FLAT_NAMES`."""
    first, *rest = field.split(".")
    return ".".join([FLAT_NAMES[first], *rest]) if first in FLAT_NAMES else None


def elsewhere(field: str) -> list[str]:
    """The dotted paths (``config.`` first) of the fields of :func:`default_config` whose name is the
    last part of ``field`` (else the closest such name): where a field put in the wrong group, or
    misspelt there, belongs."""
    leaves = _leaves(default_config().to_dict())
    name = field.split(".")[-1]
    close = difflib.get_close_matches(name, sorted(leaves), n=1)
    return leaves.get(name) or (leaves[close[0]] if close else [])


def _unknown(path: str, key: str, known, where: str, search: bool = True) -> ValueError:
    """The error of a field ``path + key`` that ``where`` (fields ``known``) lacks: its new place when it
    is a field of the flat layout, else the closest sibling, else (``search``) a field of that name
    elsewhere."""
    moved = moved_to(key) if path == "config." else None
    if moved is not None:
        hint = (
            f" (the config is grouped: it is config.{moved} now, docs/training.md)"
            if moved != "model"
            else " (the config is grouped: the module fields are fields of config.model now)"
        )
    else:
        close = difflib.get_close_matches(key, sorted(known), n=1)
        other = elsewhere(key) if search else []
        if close:
            hint = f" (did you mean {path}{close[0]}?)"
        elif other:
            hint = f" (did you mean {' or '.join(other)}?)"
        else:
            hint = ""
    return ValueError(f"{path}{key} is not a field of {where}{hint}; its fields: {sorted(known)}")


def check_fields(given: dict) -> None:
    """Raise ``ValueError`` naming the first field of ``given`` (a config as a nested dict, at any
    depth) that :func:`default_config` does not have, by its dotted path, with the closest known name
    or the new place of a field of the flat layout (``model``'s module fields:
    :func:`check_model_fields`)."""
    model = given.get("model")
    if model is not None and not isinstance(model, dict):
        raise TypeError(
            f"config.model is a group of fields (name, c, q_init_size and the model's module fields), got "
            f"{model!r}: the config is grouped, set config.model.name = {model!r} (docs/training.md)"
        )
    _check_keys(given, default_config().to_dict(), "config.", "the training config")


def _check_keys(given: dict, known: dict, path: str, where: str) -> None:
    for key, value in given.items():
        if key not in known:
            raise _unknown(path, key, known, where)
        if isinstance(known[key], dict) and not isinstance(value, dict):
            raise TypeError(f"{path}{key} must be a group of fields (a dict), got {value!r}")
        if isinstance(known[key], dict) and path + key != "config.model":
            _check_keys(value, known[key], f"{path}{key}.", f"{path}{key}")


def check_model_fields(model_config: dict, model: str) -> None:
    """Raise ``ValueError`` naming the first key of ``model_config`` (the ``model`` group, or only its
    module fields) that is neither a field of the group (:data:`MODEL_FIELDS`) nor a module field of
    ``model``'s class (with the closest one); the placeholders of :func:`default_config` may stay None."""
    defaults = default_config().model.to_dict()
    fields = set(models.REGISTRY[model].cls.__dataclass_fields__) - {"parent", "name", "c", "q_init"}
    for key, value in model_config.items():
        if key in MODEL_FIELDS or key in fields or (key in defaults and value is None):
            continue
        raise _unknown("config.model.", key, fields | set(MODEL_FIELDS), f"model {model!r}", search=False)


def _check_finite(value, path: str) -> None:
    """Raise ``ValueError`` naming the first NaN or infinite number in ``value`` (nested dicts, lists)."""
    if isinstance(value, dict):
        for key, item in value.items():
            _check_finite(item, f"{path}.{key}")
    elif isinstance(value, (list, tuple)):
        for item in value:
            _check_finite(item, path)
    elif isinstance(value, numbers.Real) and not isinstance(value, bool) and not math.isfinite(value):
        raise ValueError(f"{path} must be a finite number, got {value!r}")


def check_loss_options(name: str, loss_config=None) -> None:
    """Raise ``ValueError`` unless the sub-group of ``config.loss`` that model ``name``'s class reads
    (``LOSS_GROUP``) has every field its objective takes (``LOSS_OPTIONS``): a class that declares an
    option the config does not hold. ``loss_config``: the ``loss`` group (default: the defaults')."""
    cls = models.REGISTRY[name].cls
    options = tuple(getattr(cls, "LOSS_OPTIONS", ()))
    if not options:
        return
    loss = _as_dict(loss_config if loss_config is not None else default_config().loss)
    group = getattr(cls, "LOSS_GROUP", None)
    missing = [o for o in options if o not in loss.get(group, {})]
    if group not in loss or missing:
        raise ValueError(
            f"model {name!r} ({cls.__name__}) reads config.loss.{group}.{{{', '.join(options)}}}, which "
            f"the config lacks ({missing or [group]}): add them to csist_jax.train.config.default_config"
        )


def check(config) -> None:
    """Raise ``ValueError`` / ``TypeError`` naming the first bad field of ``config`` (grouped)."""
    _check_finite(config.to_dict(), "config")
    model, data, optim, loss, evals = config.model, config.data, config.optim, config.loss, config.eval
    if model.name not in models.REGISTRY:
        raise ValueError(f"config.model.name must be one of {list(models.REGISTRY)}, got {model.name!r}")
    _checks.positive_int("config.model.c", model.c)
    _checks.positive_int("config.model.q_init_size", model.q_init_size, minimum=0)
    check_loss_options(model.name, loss)
    if data.dataset not in DATASETS:
        raise ValueError(f"config.data.dataset must be one of {list(DATASETS)}, got {data.dataset!r}")
    _checks.positive_int("config.data.window", data.window, minimum=0)
    models.REGISTRY[model.name].kind.check_window(data.window, data.dataset, model.name)
    noise_lib.from_config(config)  # the noise ranges, checked
    # 0 would read as "the whole split" (10,000 validation frames): refused, a size must be given
    _checks.positive_int("config.data.train_size", data.train_size)
    _checks.positive_int("config.data.val_size", data.val_size)
    _checks.positive_int("config.data.seed", data.seed, minimum=0)
    for field in ("batch_size", "num_epochs"):
        _checks.positive_int(f"config.optim.{field}", optim[field])
    _checks.positive_int("config.optim.num_steps", optim.num_steps, minimum=0)
    _checks.positive_scalar("config.optim.learning_rate", optim.learning_rate)
    if not optim.weight_decay >= 0:
        raise ValueError(f"config.optim.weight_decay must be >= 0, got {optim.weight_decay}")
    if optim.schedule not in SCHEDULES:
        raise ValueError(f"config.optim.schedule must be one of {list(SCHEDULES)}, got {optim.schedule!r}")
    if not loss.unfolding.sym_weight >= 0:
        raise ValueError(f"config.loss.unfolding.sym_weight must be >= 0, got {loss.unfolding.sym_weight}")
    if loss.derefnet.objective not in losses.DEREFNET_OBJECTIVES:
        raise ValueError(
            f"config.loss.derefnet.objective must be one of {list(losses.DEREFNET_OBJECTIVES)}, "
            f"got {loss.derefnet.objective!r}"
        )
    for field in ("count_weight", "physics_weight"):
        if not loss.localizer[field] >= 0:
            raise ValueError(f"config.loss.localizer.{field} must be >= 0, got {loss.localizer[field]}")
    _checks.positive_int("config.eval.batch_size", evals.batch_size)
    _checks.positive_int("config.eval.every_epochs", evals.every_epochs)
    for field in ("log_every_steps", "keep_checkpoints", "steps_per_call"):
        _checks.positive_int(f"config.{field}", config[field])
    for field in ("seed", "checkpoint_every_steps"):
        _checks.positive_int(f"config.{field}", config[field], minimum=0)
    if not isinstance(config.restart, bool):
        raise TypeError(f"config.restart must be True or False, got {config.restart!r}")
    if config.compute_dtype not in COMPUTE_DTYPES:
        raise ValueError(
            f"config.compute_dtype must be one of {list(COMPUTE_DTYPES)}, got {config.compute_dtype!r}"
        )
    profile_window(config.profile_steps, first_step=1, total_steps=1)


def optimizer(config, total_steps: int | None = None):
    """Adam at ``config.optim.learning_rate``, after ``config.optim.weight_decay`` times the parameters is
    added to the gradient when that is > 0 (the toolkit's ``torch.optim.Adam(weight_decay=...)``).

    ``config.optim.schedule`` ``"cosine"`` decays the rate to 0 over ``total_steps`` (the run's steps;
    required then); ``"constant"`` (the default) keeps it. ``config``: the whole config or its ``optim``
    group."""
    import optax

    optim = config.optim if "optim" in config else config
    rate = optim.learning_rate
    if optim.get("schedule", "constant") == "cosine":
        if not total_steps:
            raise ValueError("config.optim.schedule='cosine' needs the run's total_steps (a positive int)")
        rate = optax.cosine_decay_schedule(optim.learning_rate, int(total_steps))
    adam = optax.adam(rate)
    if not optim.get("weight_decay"):
        return adam
    return optax.chain(optax.add_decayed_weights(optim.weight_decay), adam)


def total_steps(config, steps_per_epoch: int) -> int:
    """The run's steps: ``config.optim.num_steps``, or ``num_epochs`` epochs of ``steps_per_epoch``."""
    return int(config.optim.num_steps or config.optim.num_epochs * steps_per_epoch)


def compute_dtype(config) -> np.dtype:
    """The dtype of ``config.compute_dtype`` (float32 for configs without the field)."""
    import jax.numpy as jnp

    name = config.get("compute_dtype", "float32") if hasattr(config, "get") else "float32"
    if name not in COMPUTE_DTYPES:
        raise ValueError(f"config.compute_dtype must be one of {list(COMPUTE_DTYPES)}, got {name!r}")
    return jnp.dtype(name)


def profile_window(spec: str, first_step: int, total_steps: int) -> tuple[int, int] | None:
    """The steps ``(first, last)`` (inclusive, 1-based) that ``config.profile_steps`` traces, or None.

    ``""`` or ``"0"``: off. ``"N"``: the ``N`` steps after ``first_step`` (the run's first step, whose
    call may still be warming up). ``"A,B"``: steps ``A`` to ``B``. The window is cut to the run's steps;
    None when nothing of it is left.
    """
    text = str(spec).strip()
    error = ValueError(
        f"config.profile_steps must be '' (off), a step count 'N' or a step range 'A,B' with 1 <= A <= B, "
        f"got {spec!r}"
    )
    if text in ("", "0"):
        return None
    parts = [p.strip() for p in text.split(",")]
    if len(parts) > 2 or not all(p.isdigit() for p in parts):
        raise error
    if len(parts) == 1:
        lo, hi = first_step + 1, first_step + int(parts[0])
    else:
        lo, hi = int(parts[0]), int(parts[1])
        if not 1 <= lo <= hi:
            raise error
    lo, hi = max(lo, first_step), min(hi, total_steps)
    return (lo, hi) if lo <= hi else None
