r"""The update step: loss, gradients, Adam, and the measurements each step reports.

Loss: the model's own objective, run by its kind (:func:`csist_jax.train.losses.batch_loss`,
:mod:`csist_jax.models.kinds`) with the fields of ``config.loss`` the model declares (its class's
``LOSS_GROUP`` and ``LOSS_OPTIONS``, e.g. ``config.loss.unfolding.sym_weight``):
for the HR-map networks against the HR label (SPEC sec. 7, computed inside the step), for the
localisers against the targets. With ``config.data.noise_std`` / ``background`` the batch first gets
its read noise on the device (:mod:`csist_jax.train.noise`). Data parallel over a ``("data",)`` mesh:
parameters replicated, batch sharded, gradients summed by XLA.

``config.compute_dtype = "bfloat16"``: the forward and backward pass run in bfloat16 (floating
parameters, constants and images cast inside the loss); the maps are cast back and the loss is computed
in float32; the gradients reach the float32 parameters through the cast, and Adam updates in float32.

Two compiled forms share one update:

* :func:`make_train_step`: ``(state, images, targets) -> (state, measured)`` on a batch the caller puts on
  the device (benchmarks, tests);
* :func:`make_device_steps`: ``(state, data, order) -> (state, rows)``: ``k`` steps in one call
  (``lax.scan`` for ``k > 1``), each gathering its batch from the on-device split
  (:class:`csist_jax.train.device_data.DeviceDataset`); ``rows`` ``[k, len(names)]`` float32 holds
  every step's measurements, left on the device until the loop logs them.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import optax
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from csist_jax import models
from csist_jax.models import kinds
from csist_jax.train import config as config_lib
from csist_jax.train import noise as noise_lib
from csist_jax.train.losses import batch_loss


def cast_floating(tree, dtype):
    """``tree`` with every floating leaf cast to ``dtype`` (integer leaves unchanged)."""
    return jax.tree.map(lambda a: a.astype(dtype) if jnp.issubdtype(a.dtype, jnp.floating) else a, tree)


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
    """The training state :func:`make_train_step` updates: step, params, constants (``{}`` for a model
    that holds none), optimiser state and the best validation CSO-mAP so far (-1 before any) with its
    step."""
    return {
        "step": jnp.zeros((), jnp.int32),
        "params": variables["params"],
        "constants": variables.get("constants", {}),
        "opt_state": optimizer.init(variables["params"]),
        "best_map": jnp.full((), -1.0, jnp.float32),
        "best_step": jnp.zeros((), jnp.int32),
    }


def _jit(compiler_options):
    """:func:`csist_jax.models.jit` (tuned options), or ``jax.jit`` with exactly ``compiler_options``."""
    if compiler_options is None:
        return models.jit
    return functools.partial(jax.jit, compiler_options=dict(compiler_options) or None)


def make_update(module, optimizer, config):
    """The pure update ``(state, batch) -> (state, measured)``.

    ``batch``: ``image`` float ``[B, H, W]`` (a window model's ``[B, L, H, W]`` with ``frame`` ``[B]``, its
    centre frames' indices) and ``targets`` ``[B, K, 3]`` (of the centre frames). The configured read
    noise of step ``state["step"]`` is drawn on the images first; the loss is :func:`batch_loss`.
    """
    dtype = config_lib.compute_dtype(config)
    options = kinds.loss_options(module, config)
    noise = noise_lib.from_config(config)
    seed = config.seed

    def update(state, batch):
        images = noise.at_step(seed, state["step"], batch["image"].astype(jnp.float32))
        batch = dict(batch, image=images.astype(dtype))

        def objective_of(params):
            variables = cast_floating({"params": params, "constants": state["constants"]}, dtype)
            return batch_loss(module, variables, batch, options)

        (loss, parts), grads = jax.value_and_grad(objective_of, has_aux=True)(state["params"])
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

    return update


def make_train_step(module, optimizer, config, mesh, compiler_options: dict | None = None):
    """The jitted update ``(state, images, targets) -> (state, measurements)`` (state donated); for a
    window model ``(state, windows, targets, frame)``.

    ``images`` float ``[B, H, W]`` (raw 0..255; windows ``[B, L, H, W]``), ``targets`` ``[B, K, 3]`` and
    ``frame`` ``[B]`` are sharded over the mesh.
    Compiled with :func:`csist_jax.models.compiler_options`, or with exactly ``compiler_options`` when
    given (``{}``: XLA's defaults).
    """
    replicated = NamedSharding(mesh, P())
    batch = NamedSharding(mesh, P("data"))
    update = make_update(module, optimizer, config)
    traces = []

    keys = ("image", "targets") + kinds.of(module).input_keys()[1:]

    def step(state, *inputs):
        # shapes are static, so a second trace means a silent recompile every time the inputs change
        traces.append(1)
        if len(traces) > 1:
            raise RuntimeError(
                "the train step was traced again: batch shapes or dtypes changed between steps"
            )
        return update(state, dict(zip(keys, inputs, strict=True)))

    n_inputs = len(keys)
    return _jit(compiler_options)(
        step,
        in_shardings=(replicated,) + (batch,) * n_inputs,
        out_shardings=(replicated, replicated),
        donate_argnums=0,
    )


def measurement_names(module, optimizer, config, state, dataset) -> tuple[str, ...]:
    """The names of the measurements one step reports, in the column order of the rows."""
    update = make_update(module, optimizer, config)

    def one(state, data):
        return update(state, dataset.batch(data, jnp.arange(dataset.num_frames), state["step"]))[1]

    return tuple(jax.eval_shape(one, state, dataset.arrays))


def make_device_steps(
    module, optimizer, config, mesh, dataset, count: int, names, compiler_options: dict | None = None
):
    """``count`` updates in one jitted call ``(state, data, order) -> (state, rows)`` (state donated).

    Each step gathers its batch from ``data`` (``dataset.arrays``) in the epoch order ``order`` at the
    position given by ``state["step"]``; a call must not cross an epoch end. ``rows`` is ``[count,
    len(names)]`` float32, one row of measurements (columns ``names``) per step.
    """
    replicated = NamedSharding(mesh, P())
    update = make_update(module, optimizer, config)
    # XLA:CPU runs a rolled loop over the step about 12x slower than the step itself (measured, ISTA-Net,
    # 2-core CPU), and an unrolled one faster (fewer per-call buffer allocations); elsewhere the rolled
    # loop keeps the compile time of one step
    unroll = count if mesh.devices.flat[0].platform == "cpu" else 1

    def one_step(state, data, order):
        state, measured = update(state, dataset.batch(data, order, state["step"]))
        return state, jnp.stack([jnp.asarray(measured[k], jnp.float32) for k in names])

    def steps(state, data, order):
        if count == 1:
            state, row = one_step(state, data, order)
            return state, row[None]
        return jax.lax.scan(lambda s, _: one_step(s, data, order), state, length=count, unroll=unroll)

    return _jit(compiler_options)(
        steps,
        in_shardings=(replicated, replicated, replicated),
        out_shardings=(replicated, replicated),
        donate_argnums=0,
    )
