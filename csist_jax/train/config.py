"""The training configuration: every field :func:`train_and_evaluate` reads, its defaults and its checks."""

from __future__ import annotations

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
#: the learning-rate schedules of ``config.schedule``
SCHEDULES = ("constant", "cosine")


def default_config() -> ml_collections.ConfigDict:
    """Every field ``train_and_evaluate`` reads, at the published values (DISTA-Net, c = 3)."""
    cfg = ml_collections.ConfigDict()
    cfg.model = "dista_net"
    cfg.c = 3
    # module fields (None: the network's default); placeholders keep them overridable from the CLI
    placeholder = ml_collections.config_dict.placeholder
    cfg.model_config = ml_collections.ConfigDict(
        {"stages": placeholder(int), "channels": placeholder(int), "step_init": placeholder(float)}
    )
    cfg.seed = 0  # parameter init and batch order
    # dataset "csist100k" (frames) or "seqcsist" (trajectories; sizes count trajectories)
    cfg.data = ml_collections.ConfigDict(
        {
            "dataset": "csist100k",
            "source": "generate",
            "seed": 0,
            "dir": "",
            "train_size": 80_000,
            "val_size": 10_000,
            # read noise drawn per training sample on the device, std ~ U(lo, hi) grey levels, and a
            # background offset ~ U(lo, hi) (csist_jax.train.noise); (0, 0): noise-free. Validation
            # frames get one fixed draw of the same distribution.
            "noise_std": (0.0, 0.0),
            "background": (0.0, 0.0),
        }
    )
    # SeqCSIST samples: 0 = single frames (every frame of every trajectory), an odd L >= 3 = windows of L
    # frames predicting their centre frame (the multi-frame networks, e.g. DeRefNet: published 5)
    cfg.window = 0
    # DeRefNet's objective (csist_jax.train.losses.derefnet_loss): "toolkit" or "paper"
    cfg.objective = "toolkit"
    # L2 weight decay added to the gradient before Adam (torch's Adam(weight_decay=...)); 0: plain Adam
    cfg.weight_decay = 0.0
    # the learning rate over the run: "constant", or "cosine" (cosine decay from learning_rate to 0)
    cfg.schedule = "constant"
    # the learned localisers' loss weights (csist_jax.models.objectives.localizer_loss): count and physics
    cfg.count_weight = 0.0
    cfg.physics_weight = 0.0
    cfg.q_init_size = 0  # training labels used for Q_init (0: all)
    # any size divisible by the device count; the learning rate is NOT rescaled with it
    cfg.batch_size = 64
    cfg.learning_rate = 1e-4
    cfg.num_epochs = 250
    cfg.num_steps = 0  # > 0: stop after this many steps in total (overrides num_epochs)
    cfg.sym_weight = 0.01
    cfg.brightness_threshold = 50.0
    cfg.eval_batch_size = 500
    cfg.eval_every_epochs = 1
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


def resolve(config) -> ml_collections.ConfigDict:
    """``config`` over :func:`default_config` (missing fields take their defaults), checked.

    Every field of ``config`` must be a field of :func:`default_config` (``model_config``: a field of
    the model's class): a misspelt field raises naming it and the closest known name, rather than being
    carried along unread (``ConfigDict.update`` adds unknown keys silently)."""
    given = _as_dict(config)
    base = default_config()
    check_fields(given)
    base.update(given)
    check(base)
    # after check(): the model name and its window are known good, and named first when they are not
    check_model_fields(base.model_config.to_dict(), base.model)
    return base


def _as_dict(config) -> dict:
    if hasattr(config, "to_dict"):
        return config.to_dict()
    return {k: _as_dict(v) if hasattr(v, "to_dict") or isinstance(v, dict) else v for k, v in config.items()}


def _unknown(path: str, key: str, known, where: str) -> ValueError:
    close = difflib.get_close_matches(key, sorted(known), n=1)
    hint = f" (did you mean {path}{close[0]}?)" if close else ""
    return ValueError(f"{path}{key} is not a field of {where}{hint}; its fields: {sorted(known)}")


def check_fields(given: dict) -> None:
    """Raise ``ValueError`` naming the first field of ``given`` (a config as a nested dict) that
    :func:`default_config` does not have, with the closest known name (``model_config``:
    :func:`check_model_fields`)."""
    _check_keys(given, default_config().to_dict(), "config.", "the training config")


def _check_keys(given: dict, known: dict, path: str, where: str) -> None:
    for key, value in given.items():
        if key not in known:
            raise _unknown(path, key, known, where)
        if isinstance(known[key], dict) and not isinstance(value, dict):
            raise TypeError(f"{path}{key} must be a group of fields (a dict), got {value!r}")
        if isinstance(known[key], dict) and path + key != "config.model_config":
            _check_keys(value, known[key], f"{path}{key}.", f"{path}{key}")


def check_model_fields(model_config: dict, model: str) -> None:
    """Raise ``ValueError`` naming the first key of ``model_config`` that is not a module field of
    ``model``'s class (with the closest one); the placeholders of :func:`default_config` may stay None."""
    placeholders = default_config().model_config.to_dict()
    fields = set(models.REGISTRY[model].cls.__dataclass_fields__) - {"parent", "name", "c", "q_init"}
    for key, value in model_config.items():
        if key in fields or (key in placeholders and value is None):
            continue
        raise _unknown("config.model_config.", key, fields, f"model {model!r}")


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


def check(config) -> None:
    """Raise ``ValueError`` / ``TypeError`` naming the first bad field of ``config``."""
    _check_finite(config.to_dict(), "config")
    if config.model not in models.REGISTRY:
        raise ValueError(f"config.model must be one of {list(models.REGISTRY)}, got {config.model!r}")
    if config.data.dataset not in DATASETS:
        raise ValueError(f"config.data.dataset must be one of {list(DATASETS)}, got {config.data.dataset!r}")
    _checks.positive_int("config.window", config.window, minimum=0)
    models.REGISTRY[config.model].kind.check_window(config.window, config.data.dataset, config.model)
    noise_lib.from_config(config)  # the noise ranges, checked
    if config.objective not in losses.DEREFNET_OBJECTIVES:
        raise ValueError(
            f"config.objective must be one of {list(losses.DEREFNET_OBJECTIVES)}, got {config.objective!r}"
        )
    if not config.weight_decay >= 0:
        raise ValueError(f"config.weight_decay must be >= 0, got {config.weight_decay}")
    if config.schedule not in SCHEDULES:
        raise ValueError(f"config.schedule must be one of {list(SCHEDULES)}, got {config.schedule!r}")
    for field in ("count_weight", "physics_weight"):
        if not config[field] >= 0:
            raise ValueError(f"config.{field} must be >= 0, got {config[field]}")
    for field in (
        "batch_size",
        "num_epochs",
        "eval_batch_size",
        "eval_every_epochs",
        "log_every_steps",
        "keep_checkpoints",
        "steps_per_call",
    ):
        _checks.positive_int(f"config.{field}", config[field])
    for field in ("seed", "num_steps", "checkpoint_every_steps", "q_init_size"):
        _checks.positive_int(f"config.{field}", config[field], minimum=0)
    _checks.positive_scalar("config.learning_rate", config.learning_rate)
    if not config.sym_weight >= 0:
        raise ValueError(f"config.sym_weight must be >= 0, got {config.sym_weight}")
    # 0 would read as "the whole split" (10,000 validation frames): refused, a size must be given
    _checks.positive_int("config.data.train_size", config.data.train_size)
    _checks.positive_int("config.data.val_size", config.data.val_size)
    _checks.positive_int("config.data.seed", config.data.seed, minimum=0)
    if not isinstance(config.restart, bool):
        raise TypeError(f"config.restart must be True or False, got {config.restart!r}")
    if config.compute_dtype not in COMPUTE_DTYPES:
        raise ValueError(
            f"config.compute_dtype must be one of {list(COMPUTE_DTYPES)}, got {config.compute_dtype!r}"
        )
    profile_window(config.profile_steps, first_step=1, total_steps=1)


def optimizer(config, total_steps: int | None = None):
    """Adam at ``config.learning_rate``, after ``config.weight_decay`` times the parameters is added to
    the gradient when that is > 0 (the toolkit's ``torch.optim.Adam(weight_decay=...)``).

    ``config.schedule`` ``"cosine"`` decays the rate to 0 over ``total_steps`` (the run's steps; required
    then); ``"constant"`` (the default, and configs without the field) keeps it."""
    import optax

    rate = config.learning_rate
    if config.get("schedule", "constant") == "cosine":
        if not total_steps:
            raise ValueError("config.schedule='cosine' needs the run's total_steps (a positive int)")
        rate = optax.cosine_decay_schedule(config.learning_rate, int(total_steps))
    adam = optax.adam(rate)
    if not config.get("weight_decay"):
        return adam
    return optax.chain(optax.add_decayed_weights(config.weight_decay), adam)


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
