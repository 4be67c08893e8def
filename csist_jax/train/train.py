"""``train_and_evaluate(config, workdir)``: train any model of the registry, resumably.

A run is a short sequence of named steps, each in its own module:

1. **configuration** (:mod:`.config`): ``config`` over :func:`default_config`, every field checked
   (an unknown one named with the closest known name); then the **workdir** (:mod:`.workdir`): locked
   for this run, and either resumable with this config, started afresh (``config.restart``) or refused;
2. **data** (:mod:`.data`, :mod:`.device_data`): the training split put on the device once, shuffled
   there per epoch (a pure function of ``(seed, epoch)``); the validation split on the device in batches;
3. **network and state** (:mod:`.step`): the model's constants (``Q``) fitted to the training labels
   (``module.fit_constants``), Adam, the state restored from the newest readable checkpoint or
   initialised;
4. **steps** (:mod:`.step`): the update compiled ahead of time, ``steps_per_call`` steps per host call;
5. **the loop** (:mod:`.loop`): calls dispatched without waiting; measurements, validation and
   checkpoints settled one flush point later, while the device runs the next steps;
6. **checkpoints** (:mod:`.checkpoints`): asynchronous Orbax saves; unreadable ones skipped with a
   warning.

Data parallel over every device of a ``("data",)`` mesh (params replicated, batch sharded), so the same
code runs on one CPU, several GPUs or a TPU slice (multi-host: call :func:`maybe_initialize_distributed`
first). ``config.optim.batch_size`` must be divisible by the device count; ``config.optim.learning_rate``
is used as given (it is not rescaled with the batch size).

In ``workdir``:

* ``checkpoints/`` Orbax checkpoints of the full state (params, optimiser, constants such as ``Q``, best
  score), every ``checkpoint_every_steps``, at each epoch end and at the last step; a rerun with the
  same ``workdir`` resumes from the latest readable one and, with the same config, ends with the same
  parameters as an uninterrupted run;
* ``best/`` the network with the best validation CSO-mAP so far (``csist_jax.models.load_checkpoint``);
* ``metrics.jsonl`` (every logged row), ``train.csv`` / ``val.csv``, ``curves.png`` (loss and val mAP),
  ``config.json``; ``profile/`` with ``config.profile_steps``;
* ``.lock`` (host, pid, start time) while a run trains: a second run on the workdir refuses, naming it;
  a lock left by a killed run on the same host is taken over with a warning;
* ``config_history.jsonl``: one line per resume (time, step, changed fields ``[old, new]``). A resume
  may change only the cadence fields (``workdir.CADENCE``) and lengthen the run (constant schedule);
  another change refuses naming each field. Results without a readable checkpoint are never started
  over silently: ``config.restart=True`` moves the workdir's contents to ``previous-<time>/`` first.

A NaN or infinite loss stops training with ``FloatingPointError`` naming the step; nothing after the last
finite step is saved, so the last good checkpoint stays the latest.
"""

from __future__ import annotations

import os
import time

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P
from tqdm.auto import tqdm

from csist_jax import models
from csist_jax.train import config as config_lib
from csist_jax.train import data as data_lib
from csist_jax.train import noise as noise_lib
from csist_jax.train import step as step_lib
from csist_jax.train import workdir as workdir_lib
from csist_jax.train import writer as writer_lib
from csist_jax.train.checkpoints import Checkpoints, NoReadableCheckpoint
from csist_jax.train.device_data import DeviceDataset
from csist_jax.train.evaluation import Validator, make_mesh
from csist_jax.train.loop import Schedule, TrainLoop, _copy


def maybe_initialize_distributed() -> None:
    """Join a multi-host job when the environment describes one (``jax.distributed``)."""
    markers = ("JAX_COORDINATOR_ADDRESS", "COORDINATOR_ADDRESS", "SLURM_JOB_ID", "TPU_WORKER_HOSTNAMES")
    if any(os.environ.get(m) for m in markers) and not jax.distributed.is_initialized():
        jax.distributed.initialize()


def _load_data(config) -> tuple[dict, dict]:
    """Host arrays of the training and validation splits (:func:`data.training_arrays`): frames, or
    trajectories and windows (``config.data.window``)."""
    window = config.data.window
    train = data_lib.training_arrays(data_lib.load_split(config.data, "train"), window, "train")
    val = data_lib.training_arrays(data_lib.load_split(config.data, "val"), window, "val")
    val = noise_lib.noisy_split(val, noise_lib.from_config(config), config.data.seed, "val")
    return train, val


def _build_network(config, train: dict):
    """The network with its constants fitted to the first ``config.model.q_init_size`` training targets
    (SeqCSIST windows: every frame of the training trajectories): the model's own ``fit_constants``
    (``Q`` for a model that uses it; the model unchanged for one that holds none)."""
    name, c = config.model.name, config.model.c
    model_config = config_lib.module_fields(config)
    if config.data.window and "n_frames" in models.REGISTRY[name].cls.__dataclass_fields__:
        model_config["n_frames"] = int(train["image"].shape[1])
    module = models.create(name, c=c, **model_config)
    all_targets = train["targets"].reshape((-1,) + train["targets"].shape[-2:])
    n = len(all_targets)
    return module.fit_constants(all_targets[: min(config.model.q_init_size or n, n)]), model_config


def _initial_state(module, optimizer, config, mesh, checkpoints: Checkpoints) -> tuple[dict, int]:
    """``(state, step)``: the newest readable checkpoint, or a fresh state at step 0 (replicated)."""
    replicated = NamedSharding(mesh, P())
    inputs = models.example_inputs(module, mesh.devices.size, config.data.window)
    key = jax.random.PRNGKey(config.seed)

    def fresh():
        return step_lib.init_state(module.init(key, *inputs), optimizer)

    abstract = jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=replicated), jax.eval_shape(fresh)
    )
    restored = checkpoints.restore_latest(abstract)
    if restored is not None:
        return restored
    # distinct buffers: initialisers may return one array twice (LISTA's B_k all start at Q), and the
    # donated state must not alias
    return jax.device_put(jax.tree.map(jnp.copy, fresh()), replicated), 0


def _schedule(config, steps_per_epoch: int, start: int) -> Schedule:
    total = config_lib.total_steps(config, steps_per_epoch)
    return Schedule(
        total_steps=total,
        steps_per_epoch=steps_per_epoch,
        steps_per_call=config.steps_per_call,
        log_every=config.log_every_steps,
        checkpoint_every=config.checkpoint_every_steps,
        eval_every_epochs=config.eval.every_epochs,
        profile=config_lib.profile_window(config.profile_steps, start + 1, total),
    )


def _compile(module, optimizer, config, mesh, dataset, schedule, start, state, validator):
    """``(steps, names, seconds)``: the step functions the schedule calls, compiled ahead of time."""
    t0 = time.perf_counter()
    names = step_lib.measurement_names(module, optimizer, config, state, dataset)
    order = dataset.epoch_order(start // schedule.steps_per_epoch)
    steps = {}
    for count in sorted({count for _, count in schedule.calls(start)}):
        fn = step_lib.make_device_steps(module, optimizer, config, mesh, dataset, count, names)
        steps[count] = fn.lower(state, dataset.arrays, order).compile()
    validator.compile({"params": state["params"], "constants": state["constants"]})
    jax.block_until_ready(_copy(state))  # the snapshot copy the loop takes at flush points
    return steps, names, time.perf_counter() - t0


def train_and_evaluate(config, workdir: str) -> dict:
    """Train ``config.model.name`` with ``config`` in ``workdir`` (resuming if it holds a checkpoint).

    Returns ``{"step", "params", "constants", "best_val_map", "best_step", "val", "timing"}`` (``val``:
    the last validation measurements; ``timing``: ``compile_seconds``, ``train_seconds`` from the first
    step's dispatch until the last step is done (logging, checkpoints and validation before the last
    step included, the final validation and save excluded), ``validation_seconds`` (host time scoring),
    ``steps``). See the module docstring for the files written.
    """
    config = config_lib.resolve(config)
    mesh = make_mesh()
    n_dev = mesh.devices.size
    if config.optim.batch_size % n_dev:
        raise ValueError(
            f"config.optim.batch_size ({config.optim.batch_size}) must be divisible by the {n_dev} devices "
            "(each device gets an equal shard of the batch)"
        )
    workdir = os.path.abspath(os.fspath(workdir))
    os.makedirs(workdir, exist_ok=True)
    main_process = jax.process_index() == 0
    lock = _lock(workdir, main_process)
    try:
        return _train(config, workdir, mesh, main_process)
    finally:
        lock.release()


def _lock(workdir: str, main_process: bool) -> workdir_lib.Lock:
    """The workdir's lock, taken by process 0; every process raises when it could not be taken."""
    lock, error = workdir_lib.Lock(workdir, enabled=main_process), None
    try:
        lock.acquire()
    except workdir_lib.WorkdirBusy as err:
        error = err
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        taken = int(multihost_utils.broadcast_one_to_all(np.int32(error is None)))
        if not taken and error is None:
            error = workdir_lib.WorkdirBusy(f"{workdir}: process 0 could not take the lock (see its error)")
    if error is not None:
        raise error
    return lock


def _sync(name: str) -> None:
    """Wait for every process (multi-host): process 0 prepares the workdir before the others read it."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


def _train(config, workdir: str, mesh, main_process: bool) -> dict:
    """:func:`train_and_evaluate` in a locked ``workdir``."""
    workdir_lib.prepare(workdir, config.restart, main_process)
    _sync("csist_jax.train: workdir prepared")
    # a resume continues the same experiment: fields other than the cadence and length refused here,
    # before the data is made; the length once the steps per epoch are known
    saved = workdir_lib.saved_config(workdir) if workdir_lib.checkpoint_steps(workdir) else None
    changes = (
        {} if saved is None else workdir_lib.compare(workdir, saved, config, config_lib.default_config())
    )

    train, val = _load_data(config)
    module, model_config = _build_network(config, train)
    dataset = DeviceDataset(
        train, batch_size=config.optim.batch_size, seed=config.seed, mesh=mesh, window=config.data.window
    )
    optimizer = config_lib.optimizer(config, config_lib.total_steps(config, dataset.steps_per_epoch))
    if saved is not None:
        changes.update(
            workdir_lib.length_change(
                workdir, saved, config, config_lib.default_config(), dataset.steps_per_epoch
            )
        )
    validator = Validator(module, val, config, mesh)

    checkpoints = Checkpoints(os.path.join(workdir, "checkpoints"), config.keep_checkpoints)
    log = writer_lib.MetricsWriter(workdir, enabled=main_process)
    try:
        state, start = _initial_state(module, optimizer, config, mesh, checkpoints)
    except NoReadableCheckpoint as err:
        raise workdir_lib.NotResumable(f"{err} {workdir_lib.choices(workdir)}") from None
    if start:
        log.truncate_after(start)
        if main_process:
            note = None if saved is not None else "no config.json to compare with: this config written"
            note = note or workdir_lib.layout_note(workdir)
            workdir_lib.record_resume(workdir, start, dict(sorted(changes.items())), config, note)
    elif main_process:
        workdir_lib.write_config(workdir, config)
    schedule = _schedule(config, dataset.steps_per_epoch, start)
    steps, names, compile_seconds = _compile(
        module, optimizer, config, mesh, dataset, schedule, start, state, validator
    )
    best = (float(state["best_map"]), int(state["best_step"]))

    def save_best(step: int, variables, scores: dict) -> None:
        if main_process:
            info = {"step": step, "val": scores, "config": config.to_dict()}
            # models.save_model's checkpointer is this process's alone (no multi-host barrier)
            models.save_model(
                os.path.join(workdir, "best"),
                config.model.name,
                config.model.c,
                model_config,
                variables,
                info,
                window=config.data.window or None,
            )

    window = config.data.window
    name = f"{config.model.name} c={config.model.c}" + (f" window={window}" if window else "")
    bar = tqdm(
        total=schedule.total_steps,
        initial=start,
        disable=not (config.progress and main_process),
        desc=name,
        unit="step",
    )
    loop = TrainLoop(
        schedule=schedule,
        dataset=dataset,
        steps=steps,
        names=names,
        validator=validator,
        checkpoints=checkpoints,
        log=log,
        bar=bar,
        save_best=save_best,
        batch_size=config.optim.batch_size,
        best=best,
        profile_dir=os.path.join(workdir, "profile"),
        name=name,
        on_message=bar.write if main_process else (lambda message: None),
    )
    try:
        state = loop.run(state, start)
    finally:
        # an interrupted run still completes the checkpoint writes it started
        checkpoints.wait()
        bar.close()
    checkpoints.close()
    return {
        "step": int(state["step"]),
        "params": state["params"],
        "constants": state["constants"],
        "best_val_map": loop.best_map,
        "best_step": loop.best_step,
        "val": loop.val,
        "timing": dict(loop.timing, compile_seconds=compile_seconds),
    }
