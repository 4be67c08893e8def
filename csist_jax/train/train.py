r"""``train_and_evaluate(config, workdir)``: train a single-frame unfolding network, resumably.

Loss (SPEC sec. 7), on the raw 0..255 scale:

    L = mean((x_N - s)^2) + sym_weight * sum_k mean(sym_k^2)          (sym_weight = 0.01)

with ``s`` the HR label (:func:`csist_jax.physics.hr_label`) and ``sym_k`` the symmetry residual of stage
``k`` (none for LISTA). Adam, constant learning rate (published: 1e-4, batch 64, 250 epochs). One pure,
jitted update step with donated state; data parallel over every device of a ``("data",)`` mesh (params
replicated, batch sharded), so the same code runs on one CPU, several GPUs or a TPU slice (multi-host:
call :func:`maybe_initialize_distributed` first; each process feeds its rows of the global batch).

In ``workdir``:

* ``checkpoints/`` Orbax checkpoints of the full state (params, optimiser, ``Q``, best score), every
  ``checkpoint_every_steps`` and at each epoch end; a rerun with the same ``workdir`` resumes from the
  latest one and, with the same config, ends with the same parameters as an uninterrupted run (the batch
  order is a function of ``(seed, epoch)``);
* ``best/`` the network with the best validation CSO-mAP so far (``csist_jax.models.load_checkpoint``);
* ``metrics.jsonl`` (every logged row), ``train.csv`` / ``val.csv``, ``curves.png`` (loss and val mAP).

A NaN or infinite loss stops training with ``FloatingPointError``; nothing after the last finite step is
saved, so the last good checkpoint stays the latest.
"""

from __future__ import annotations

import functools
import os
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P
from tqdm.auto import tqdm

from csist_jax import _checks, metrics, models, physics
from csist_jax.data.pipeline import Pipeline
from csist_jax.train import data as data_lib
from csist_jax.train import writer as writer_lib


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
    cfg.data = ml_collections.ConfigDict(
        {"source": "generate", "seed": 0, "dir": "", "train_size": 80_000, "val_size": 10_000}
    )
    cfg.q_init_size = 0  # training labels used for Q_init (0: all)
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
    return cfg


def maybe_initialize_distributed() -> None:
    """Join a multi-host job when the environment describes one (``jax.distributed``)."""
    markers = ("JAX_COORDINATOR_ADDRESS", "COORDINATOR_ADDRESS", "SLURM_JOB_ID", "TPU_WORKER_HOSTNAMES")
    if any(os.environ.get(m) for m in markers) and not jax.distributed.is_initialized():
        jax.distributed.initialize()


def make_mesh(devices=None) -> Mesh:
    """A 1-D ``("data",)`` mesh over every device (all hosts)."""
    return Mesh(np.asarray(devices if devices is not None else jax.devices()), ("data",))


def loss_fn(module, variables, images, labels, sym_weight):
    """``(loss, parts)`` of SPEC sec. 7 for one batch; ``parts`` holds the terms and stage monitors."""
    maps, aux = module.apply(variables, images, return_aux=True)
    mse = jnp.mean((maps - labels) ** 2)
    sym = sum((jnp.mean(a["sym"] ** 2) for a in aux if "sym" in a), jnp.zeros((), maps.dtype))
    parts = {"mse": mse, "sym": sym}
    for k, a in enumerate(aux):
        if "threshold" in a:
            parts[f"threshold_{k}"] = a["threshold"]
    return mse + sym_weight * sym, parts


def stage_monitors(params) -> dict:
    """Each stage's learned step size ``step_k`` and (scalar or mean per-cell) threshold ``threshold_k``."""
    out = {}
    for name, stage in params.items():
        if not name.startswith("stage_"):
            continue
        k = name.split("_", 1)[1]
        if "step" in stage:
            out[f"step_{k}"] = stage["step"]
        if "threshold" in stage and not isinstance(stage["threshold"], dict):
            out[f"threshold_{k}"] = jnp.mean(stage["threshold"])
    return out


def init_state(variables, optimizer) -> dict:
    """The training state :func:`make_train_step` updates: step, params, constants, optimiser state and
    the best validation CSO-mAP so far (-1 before any) with its step."""
    return {
        "step": jnp.zeros((), jnp.int32),
        "params": variables["params"],
        "constants": variables["constants"],
        "opt_state": optimizer.init(variables["params"]),
        "best_map": jnp.full((), -1.0, jnp.float32),
        "best_step": jnp.zeros((), jnp.int32),
    }


def _jit(compiler_options):
    """:func:`csist_jax.models.jit` (tuned options), or ``jax.jit`` with exactly ``compiler_options``."""
    if compiler_options is None:
        return models.jit
    return functools.partial(jax.jit, compiler_options=dict(compiler_options) or None)


def make_train_step(module, optimizer, config, mesh, compiler_options: dict | None = None):
    """The jitted update ``(state, images, targets) -> (state, measurements)`` (state donated).

    Compiled with :func:`csist_jax.models.compiler_options`, or with exactly ``compiler_options`` when
    given (``{}``: XLA's defaults).
    """
    replicated = NamedSharding(mesh, P())
    batch = NamedSharding(mesh, P("data"))
    c, size = module.c, module.size

    traces = []

    def step(state, images, targets):
        # shapes are static, so a second trace means a silent recompile every time the inputs change
        traces.append(1)
        if len(traces) > 1:
            raise RuntimeError(
                "the train step was traced again: batch shapes or dtypes changed between steps"
            )
        labels = physics.hr_label(targets, c, size)

        def objective(params):
            variables = {"params": params, "constants": state["constants"]}
            return loss_fn(module, variables, images, labels, config.sym_weight)

        (loss, parts), grads = jax.value_and_grad(objective, has_aux=True)(state["params"])
        updates, opt_state = optimizer.update(grads, state["opt_state"], state["params"])
        params = optax.apply_updates(state["params"], updates)
        measured = {
            "loss": loss,
            **parts,
            "grad_norm": optax.global_norm(grads),
            "param_norm": optax.global_norm(params),
            **stage_monitors(params),
        }
        new_state = dict(state, params=params, opt_state=opt_state, step=state["step"] + 1)
        return new_state, measured

    return _jit(compiler_options)(
        step,
        in_shardings=(replicated, batch, batch),
        out_shardings=(replicated, replicated),
        donate_argnums=0,
    )


def _global_batch(array: np.ndarray, sharding: NamedSharding) -> jax.Array:
    """A global array from this process's rows (every process holds the same host array)."""
    if jax.process_count() == 1:
        return jax.device_put(array, sharding)
    rows = np.array_split(np.arange(len(array)), jax.process_count())[jax.process_index()]
    return jax.make_array_from_process_local_data(sharding, array[rows], array.shape)


def make_apply(module, mesh, compiler_options: dict | None = None):
    """``jit(module.apply)`` with replicated variables and images sharded over the mesh.

    Compiled with the network's inference options (:func:`csist_jax.models.compiler_options`), or with
    exactly ``compiler_options`` when given (``{}``: XLA's defaults).
    """
    replicated = NamedSharding(mesh, P())
    if compiler_options is None:
        jit = functools.partial(models.jit, inference_of=module)
    else:
        jit = _jit(compiler_options)
    return jit(
        module.apply,
        in_shardings=(replicated, NamedSharding(mesh, P("data"))),
        out_shardings=replicated,
    )


def predict(module, variables, images: np.ndarray, batch_size: int, mesh=None, apply=None) -> np.ndarray:
    """HR maps ``[n, hr, hr]`` of ``images`` in fixed-size batches (the last one padded, then cut).

    ``apply`` (from :func:`make_apply`) is reused across calls to avoid recompiling.
    """
    mesh = make_mesh() if mesh is None else mesh
    n_dev = mesh.devices.size
    batch_size = -(-batch_size // n_dev) * n_dev
    sharding = NamedSharding(mesh, P("data"))
    apply = make_apply(module, mesh) if apply is None else apply
    out = []
    for lo in range(0, len(images), batch_size):
        chunk = np.asarray(images[lo : lo + batch_size], np.float32)
        real = len(chunk)
        if real < batch_size:
            chunk = np.concatenate([chunk, np.zeros((batch_size - real,) + chunk.shape[1:], chunk.dtype)])
        maps = apply(variables, _global_batch(chunk, sharding))
        out.append(np.asarray(jax.device_get(maps))[:real])
    return np.concatenate(out)


def evaluate(module, variables, arrays: dict, config, mesh=None, apply=None) -> dict:
    """CSO-mAP (and APs), MSE against the HR labels, PSNR/SSIM of the HR maps on ``arrays``."""
    maps = predict(module, variables, arrays["image"], config.eval_batch_size, mesh, apply)
    labels = np.asarray(physics.hr_label(arrays["targets"], module.c, module.size))
    scores = metrics.cso_map_from_maps(
        maps, arrays["targets"], arrays["count"], module.c, config.brightness_threshold
    )
    out = {k: float(v) for k, v in scores.items()}
    out["mse"] = float(np.mean((maps - labels) ** 2))
    out["psnr"] = float(np.mean(np.asarray(metrics.psnr(maps, labels))))
    out["ssim"] = float(np.mean(np.asarray(metrics.ssim(maps, labels))))
    return out


def _model_config(config) -> dict:
    return {k: v for k, v in config.model_config.to_dict().items() if v is not None}


def _check_config(config) -> None:
    if config.model not in models.MODEL_NAMES:
        raise ValueError(f"config.model must be one of {list(models.MODEL_NAMES)}, got {config.model!r}")
    for field in ("batch_size", "num_epochs", "eval_batch_size", "eval_every_epochs", "log_every_steps"):
        _checks.positive_int(f"config.{field}", config[field])
    for field in ("num_steps", "checkpoint_every_steps", "q_init_size"):
        _checks.positive_int(f"config.{field}", config[field], minimum=0)
    _checks.positive_int("config.keep_checkpoints", config.keep_checkpoints)
    _checks.positive_scalar("config.learning_rate", config.learning_rate)
    if config.sym_weight < 0:
        raise ValueError(f"config.sym_weight must be >= 0, got {config.sym_weight}")


def _checkpoint_manager(directory: str, keep: int):
    import orbax.checkpoint as ocp

    options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True)
    return ocp.CheckpointManager(directory, options=options)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """Train ``config.model`` with ``config`` in ``workdir`` (resuming if it holds a checkpoint).

    Returns ``{"step", "params", "constants", "best_val_map", "best_step", "val"}`` (``val``: the last
    validation measurements). See the module docstring for the files written.
    """
    import orbax.checkpoint as ocp

    base = default_config()
    base.update(config.to_dict() if hasattr(config, "to_dict") else config)
    config = base
    _check_config(config)
    workdir = os.path.abspath(os.fspath(workdir))
    os.makedirs(workdir, exist_ok=True)
    main_process = jax.process_index() == 0
    mesh = make_mesh()
    n_dev = mesh.devices.size
    if config.batch_size % n_dev:
        raise ValueError(f"config.batch_size ({config.batch_size}) must be divisible by the {n_dev} devices")

    train_source = data_lib.load_split(config.data, "train")
    val = data_lib.read_all(data_lib.load_split(config.data, "val"))
    pipeline = Pipeline(
        train_source, batch_size=config.batch_size, seed=config.seed, remainder="drop", num_devices=n_dev
    )
    steps_per_epoch = pipeline.steps_per_epoch
    total_steps = config.num_steps or config.num_epochs * steps_per_epoch

    model_config = _model_config(config)
    probe = models.create(config.model, c=config.c, **model_config)
    op = probe.operator()
    q_rows = config.q_init_size or len(train_source)
    q_targets = train_source.read(np.arange(min(q_rows, len(train_source))))["targets"]
    q = np.asarray(physics.q_init(physics.hr_label(q_targets, config.c, probe.size), op))
    module = models.create(config.model, c=config.c, q_init=q, **model_config)
    optimizer = optax.adam(config.learning_rate)

    images0 = jnp.zeros((n_dev, module.size, module.size), jnp.float32)
    variables = module.init(jax.random.PRNGKey(config.seed), images0)
    state = init_state(variables, optimizer)
    replicated = NamedSharding(mesh, P())
    batch_sharding = NamedSharding(mesh, P("data"))

    manager = _checkpoint_manager(os.path.join(workdir, "checkpoints"), config.keep_checkpoints)
    log = writer_lib.MetricsWriter(workdir, enabled=main_process)
    start = manager.latest_step()
    if start is not None:
        abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=replicated), state)
        state = manager.restore(start, args=ocp.args.StandardRestore(abstract))
        log.truncate_after(start)
    else:
        start = 0
        # distinct buffers: initialisers may return one array twice (LISTA's B_k all start at Q), and
        # the donated state must not alias
        state = jax.device_put(jax.tree.map(jnp.copy, state), replicated)
        if main_process:
            with open(os.path.join(workdir, "config.json"), "w") as f:
                f.write(config.to_json_best_effort(indent=1))

    train_step = make_train_step(module, optimizer, config, mesh)
    apply = make_apply(module, mesh)
    bar = tqdm(
        total=total_steps,
        initial=start,
        disable=not (config.progress and main_process),
        desc=f"{config.model} c={config.c}",
        unit="step",
    )
    pending: list = []
    last_good = start
    t_flush, steps_since = time.perf_counter(), 0
    val_scores: dict = {}

    def flush(step: int) -> None:
        nonlocal pending, last_good, t_flush, steps_since
        rows = jax.device_get(pending)
        first = step - len(rows) + 1
        for i, row in enumerate(rows):
            if not np.isfinite(row["loss"]):
                bar.close()
                manager.wait_until_finished()
                raise FloatingPointError(
                    f"training loss is {row['loss']} at step {first + i} ({config.model}, c={config.c}); "
                    f"training stopped. The last good checkpoint (step {last_good}) is kept in "
                    f"{os.path.join(workdir, 'checkpoints')}; lower config.learning_rate or check the data."
                )
        if rows:
            elapsed = time.perf_counter() - t_flush
            # the mean over the interval: a single batch's loss is too noisy to read a curve from
            last = {k: float(np.mean([float(r[k]) for r in rows])) for k in rows[-1]}
            last["images_per_s"] = steps_since * config.batch_size / max(elapsed, 1e-9)
            log.write(step, "train", last)
            bar.set_postfix(loss=f"{last['loss']:.4g}", img_s=f"{last['images_per_s']:.0f}")
        pending, t_flush, steps_since = [], time.perf_counter(), 0

    def save(step: int) -> None:
        nonlocal last_good
        flush(step)
        manager.save(step, args=ocp.args.StandardSave(state))
        last_good = step

    try:
        for step in range(start + 1, total_steps + 1):
            idx, _ = pipeline.batch_indices(step - 1)
            batch = pipeline.read_samples(idx)
            images = _global_batch(batch["image"].astype(np.float32), batch_sharding)
            targets = _global_batch(batch["targets"], batch_sharding)
            state, measured = train_step(state, images, targets)
            pending.append(measured)
            steps_since += 1
            bar.update(1)
            epoch_end = step % steps_per_epoch == 0 or step == total_steps
            if step % config.log_every_steps == 0:
                flush(step)
            if epoch_end and (
                (step // steps_per_epoch) % config.eval_every_epochs == 0 or step == total_steps
            ):
                flush(step)
                variables = {"params": state["params"], "constants": state["constants"]}
                val_scores = evaluate(module, variables, val, config, mesh, apply)
                val_scores["epoch"] = step / steps_per_epoch
                log.write(step, "val", val_scores)
                if val_scores["mAP"] > float(state["best_map"]):
                    state = dict(
                        state,
                        best_map=jax.device_put(jnp.float32(val_scores["mAP"]), replicated),
                        best_step=jax.device_put(jnp.int32(step), replicated),
                    )
                    if main_process:
                        models.save_model(
                            os.path.join(workdir, "best"),
                            config.model,
                            config.c,
                            model_config,
                            variables,
                            {"step": step, "val": val_scores, "config": config.to_dict()},
                        )
                log.plot()
                bar.write(
                    f"step {step} epoch {step / steps_per_epoch:.2f}: val mAP {100 * val_scores['mAP']:.2f} "
                    f"(best {100 * float(state['best_map']):.2f})"
                )
                save(step)
            elif config.checkpoint_every_steps and step % config.checkpoint_every_steps == 0:
                save(step)
        flush(total_steps)
        if manager.latest_step() != total_steps and total_steps > start:
            save(total_steps)
    finally:
        # an interrupted run still completes the checkpoint writes it started
        manager.wait_until_finished()
        bar.close()
    manager.close()
    return {
        "step": int(state["step"]),
        "params": state["params"],
        "constants": state["constants"],
        "best_val_map": float(state["best_map"]),
        "best_step": int(state["best_step"]),
        "val": val_scores,
    }
