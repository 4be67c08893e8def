"""Benchmark section ``train_loop``: the training loop end to end against its bare jitted step.

    python -c "from experiments.benchmarks import train_loop; from experiments.benchmarks.common import \\
        format_rows; print(format_rows(train_loop.run(quick=False)))"

For ISTA-Net and DISTA-Net (published sizes; ``quick``: smaller networks), side by side in one process:

* ``bare train step``: ``csist_jax.train.make_train_step`` called ``steps`` times in a row on one batch of
  64 frames already on the device (the loop's first batch of frames; no data pipeline, no logs, no
  checkpoints), compiled and warmed up beforehand, blocked on at the end; timed before, between and after
  the loop runs; each loop run is compared with the mean of the bare runs just before and after it;
* ``train_and_evaluate``: the real loop over the same number of steps (``num_steps = steps``, one epoch
  of ``64 * steps`` generated frames, batch 64), timed by the loop itself (``timing["train_seconds"]``):
  from the first step's dispatch until the last step is done. **Included**: the on-device shuffle and
  batch gather, the HR labels, the measurements copied to the host and logged every ``log_every``
  steps (``metrics.jsonl``, CSVs), one checkpoint halfway (asynchronous Orbax save of a state copy).
  **Excluded**: compilation (ahead of time, ``timing["compile_seconds"]``), data generation, and the
  one-off validation and checkpoint after the last step. Progress bar off.
  ``ratio`` = loop steps/s over bare steps/s, target ``>= 0.9``;
* the same loop with ``steps_per_call`` > 1 (a ``lax.scan`` over steps per host call, unrolled on a CPU),
  same ratio.

On a GPU/TPU the step counts are larger (the step is milliseconds, so per-call host costs show).
"""

from __future__ import annotations

import dataclasses
import datetime
import os
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from csist_jax import models, train
from csist_jax.data import csist100k
from experiments.benchmarks.common import Row

SECTION = "train_loop"
BATCH = 64
TARGET = 0.9


@dataclasses.dataclass(frozen=True)
class _Plan:
    steps: int  # training steps timed per measurement
    log_every: int
    steps_per_call: int  # the multi-step row
    networks: tuple  # (name, module fields)


def _plan(quick: bool) -> _Plan:
    accelerator = jax.default_backend() != "cpu"
    published = (("ista_net", {}), ("dista_net", {}))
    if accelerator:
        return _Plan(steps=200 if quick else 1000, log_every=50, steps_per_call=10, networks=published)
    if quick:
        small = (
            ("ista_net", {"stages": 2, "channels": 8}),
            ("dista_net", {"stages": 1, "channels": 8, "hidden": 32}),
        )
        # steps of ~0.2 s: 32 of them, so that one checkpoint (~0.2 s of host CPU for an Orbax save on
        # this 2-core machine) weighs about what it does in a real run rather than a tenth of the total
        return _Plan(steps=32, log_every=8, steps_per_call=4, networks=small)
    return _Plan(steps=16, log_every=4, steps_per_call=4, networks=published)


def _label(name: str, fields: dict) -> str:
    return name + ("" if not fields else " (" + ", ".join(f"{k} {v}" for k, v in fields.items()) + ")")


def _bare_step(name: str, fields: dict, frames: dict):
    """``time(steps) -> seconds``: that many back-to-back calls of the jitted step (compiled and warmed up
    here) on one device-resident batch (the first 64 ``frames``), from a fresh state each time."""
    images = np.asarray(frames["image"][:BATCH], np.float32)
    targets = np.asarray(frames["targets"][:BATCH])
    module = models.create(name, **fields)
    optimizer = optax.adam(1e-4)
    mesh = train.make_mesh()
    variables = jax.jit(module.init)(jax.random.PRNGKey(0), images[:1])
    sharded = NamedSharding(mesh, P("data"))
    images, targets = jax.device_put(images, sharded), jax.device_put(targets, sharded)
    step = train.make_train_step(module, optimizer, train.default_config(), mesh)

    def fresh():
        # distinct buffers: the state is donated, and initialisers may return one array twice
        state = train.init_state(variables, optimizer)
        return jax.device_put(jax.tree.map(jnp.copy, state), NamedSharding(mesh, P()))

    state, _ = step(fresh(), images, targets)  # compile and warm up
    jax.block_until_ready(state)

    def time_steps(steps: int) -> float:
        state = fresh()
        jax.block_until_ready(state)
        t0 = time.perf_counter()
        for _ in range(steps):
            state, _ = step(state, images, targets)
        jax.block_until_ready(state)
        return time.perf_counter() - t0

    return time_steps


def _loop_timing(name: str, fields: dict, plan: _Plan, steps_per_call: int) -> dict:
    """``train_and_evaluate``'s own ``timing`` for ``plan.steps`` steps (see the module docstring)."""
    cfg = train.default_config()
    cfg.model.name = name
    for key, value in fields.items():
        cfg.model[key] = value
    cfg.data.train_size = plan.steps * BATCH
    cfg.data.val_size = plan.steps * BATCH  # one generator compilation for both splits
    cfg.optim.batch_size = BATCH
    cfg.optim.learning_rate = 1e-4
    cfg.optim.num_epochs = 1
    cfg.log_every_steps = plan.log_every
    cfg.checkpoint_every_steps = plan.steps // 2
    cfg.eval.batch_size = 256
    cfg.steps_per_call = steps_per_call
    cfg.progress = False
    with tempfile.TemporaryDirectory() as workdir:
        result = train.train_and_evaluate(cfg, workdir)
    timing = result["timing"]
    if timing["steps"] != plan.steps:
        raise RuntimeError(f"the loop ran {timing['steps']} steps, expected {plan.steps}")
    return timing


def _environment_row(plan: _Plan) -> Row:
    device = jax.devices()[0]
    kind = getattr(device, "device_kind", device.platform)
    parts = [f"jax {jax.__version__}", f"{os.cpu_count()} CPU cores"]
    if hasattr(os, "getloadavg"):
        parts.append(f"load average {os.getloadavg()[0]:.1f} at start")
    parts.append(datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"))
    name = f"environment: {jax.default_backend()} {kind}"[:52]
    return Row(SECTION, name, jax.device_count(), "devices", note=", ".join(parts))


def _verdict(ratio: float) -> str:
    return "[met] " if ratio >= TARGET else "[NOT met] "


def run(quick: bool) -> list[Row]:
    plan = _plan(quick)
    rows = [_environment_row(plan)]
    n = plan.steps
    # the frames the loop trains on (its training split); the bare step takes their first batch
    frames = csist100k.generate(0, n * BATCH)
    for name, fields in plan.networks:
        label = _label(name, fields)
        bare_seconds = _bare_step(name, fields, frames)
        # each loop run between two bare runs: on a shared machine the load drifts, so every loop run is
        # compared with the bare step measured just before and just after it
        bare = [n / bare_seconds(n)]
        loops = []
        for k in (1, plan.steps_per_call):
            loops.append((k, _loop_timing(name, fields, plan, k)))
            bare.append(n / bare_seconds(n))
        rows.append(
            Row(
                SECTION,
                f"{label} bare train step (batch {BATCH})",
                float(np.mean(bare)),
                "steps/s",
                note=f"{n} steps on one device batch; runs before, between and after the loop runs: "
                + ", ".join(f"{b:.3g}" for b in bare),
            )
        )
        for i, (k, timing) in enumerate(loops):
            speed = timing["steps"] / timing["train_seconds"]
            reference = 0.5 * (bare[i] + bare[i + 1])
            rows.append(
                Row(
                    SECTION,
                    f"{label} train_and_evaluate, steps_per_call={k}",
                    speed,
                    "steps/s",
                    ratio=speed / reference,
                    target=f">= {TARGET:g}x bare",
                    note=_verdict(speed / reference)
                    + f"ratio {speed / reference:.3f} to the bare runs around it; {n} steps, logs every "
                    f"{plan.log_every}, a checkpoint at step {n // 2}; excl. compile "
                    f"({timing['compile_seconds']:.1f} s) and the final validation",
                )
            )
    if hasattr(os, "getloadavg"):
        rows[0].note += f", load average {os.getloadavg()[0]:.1f} at the end"
    return rows
