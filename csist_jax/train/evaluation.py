"""Validation: any model's outputs on a split in fixed batches, decoded by the model
(``module.decode``) and scored by what the decoding gives: HR maps by CSO-mAP, MSE, PSNR and SSIM
(:func:`map_scores`); points by CSO-mAP, count accuracy and localisation RMSE (:func:`point_scores`).

:func:`evaluate` / :func:`predict` take host arrays (experiments, tables). The training loop uses a
:class:`Validator`: the split's images live on the device in padded batches, :meth:`Validator.start`
dispatches every batch's forward pass and returns at once (the maps are copied to the host while the
device goes on training), and :meth:`Validator.finish` scores them on the host.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from csist_jax import metrics, models, physics
from csist_jax.models import kinds
from csist_jax.train import config as config_lib
from csist_jax.train.step import _jit, cast_floating


def make_mesh(devices=None) -> jax.sharding.Mesh:
    """A 1-D ``("data",)`` mesh over every device (all hosts)."""
    return jax.sharding.Mesh(np.asarray(devices if devices is not None else jax.devices()), ("data",))


def make_apply(module, mesh, compiler_options: dict | None = None, compute_dtype=None):
    """``jit(module.apply)`` with replicated variables and images sharded over the mesh (a multi-frame
    network: ``(variables, windows, frame)``, both sharded).

    Compiled with the network's inference options (:func:`csist_jax.models.compiler_options`), or with
    exactly ``compiler_options`` when given (``{}``: XLA's defaults). With ``compute_dtype`` (e.g.
    ``"bfloat16"``) the floating variables and the images are cast to it and the outputs (maps, or a
    localiser's dict of arrays) come back float32; without, the network runs in the dtype of its inputs.
    """
    replicated = NamedSharding(mesh, P())
    if compiler_options is None:
        jit = functools.partial(models.jit, inference_of=module)
    else:
        jit = _jit(compiler_options)
    if compute_dtype is None:
        fn = module.apply
    else:
        dtype = jnp.dtype(compute_dtype)

        def fn(variables, images, *frame):
            out = module.apply(cast_floating(variables, dtype), images.astype(dtype), *frame)
            return jax.tree.map(lambda a: a.astype(jnp.float32), out)

    batch = NamedSharding(mesh, P("data"))
    inputs = (batch,) * len(kinds.of(module).input_keys())
    return jit(fn, in_shardings=(replicated,) + inputs, out_shardings=replicated)


def _network_inputs(module, arrays: dict) -> list[np.ndarray]:
    """The arrays a model reads besides its variables (its kind's inputs): ``[image]``, or for windows
    ``[image, frame]``."""
    kind = kinds.of(module)
    return [
        np.asarray(a, np.int32) if k == "frame" else a for k, a in zip(kind.input_keys(), kind.inputs(arrays))
    ]


def _global_batch(array: np.ndarray, sharding: NamedSharding) -> jax.Array:
    """A global array from this process's rows (every process holds the same host array)."""
    if jax.process_count() == 1:
        return jax.device_put(array, sharding)
    rows = np.array_split(np.arange(len(array)), jax.process_count())[jax.process_index()]
    return jax.make_array_from_process_local_data(sharding, array[rows], array.shape)


def _padded_batches(images: np.ndarray, batch_size: int, n_dev: int, dtype) -> tuple[list, int]:
    """``images`` in batches of ``batch_size`` (rounded up to a multiple of ``n_dev``), the last one
    zero-padded; and that batch size."""
    batch_size = -(-batch_size // n_dev) * n_dev
    out = []
    for lo in range(0, len(images), batch_size):
        chunk = np.asarray(images[lo : lo + batch_size], dtype)
        if len(chunk) < batch_size:
            pad = np.zeros((batch_size - len(chunk),) + chunk.shape[1:], chunk.dtype)
            chunk = np.concatenate([chunk, pad])
        out.append(chunk)
    return out, batch_size


def _host(outputs: list, n: int):
    """The first ``n`` rows of per-batch outputs (arrays, or dicts of arrays) as one host array / dict."""
    return jax.tree.map(lambda *xs: np.concatenate([np.asarray(x, np.float32) for x in xs])[:n], *outputs)


def predict(
    module, variables, images: np.ndarray, batch_size: int, mesh=None, apply=None, frame=None
) -> np.ndarray:
    """HR maps ``[n, hr, hr]`` of ``images`` in fixed-size batches (the last one padded, then cut);
    a multi-frame network reads windows ``images`` ``[n, L, H, W]`` and their centre indices ``frame``;
    a learned localiser gives its dict of per-cell arrays (each ``[n, hr, hr, ...]``).

    ``apply`` (from :func:`make_apply`) is reused across calls to avoid recompiling.
    """
    mesh = make_mesh() if mesh is None else mesh
    sharding = NamedSharding(mesh, P("data"))
    apply = make_apply(module, mesh) if apply is None else apply
    inputs = _network_inputs(
        module, {"image": images} if frame is None else {"image": images, "frame": frame}
    )
    dtypes = (np.float32, np.int32)
    columns = [_padded_batches(x, batch_size, mesh.devices.size, dt)[0] for x, dt in zip(inputs, dtypes)]
    maps = [apply(variables, *(_global_batch(c, sharding) for c in chunk)) for chunk in zip(*columns)]
    return _host(maps, len(images))


_DECODERS: dict = {}


def _decoder(module):
    """``jax.jit(module.decode)``, compiled once per model object."""
    if id(module) not in _DECODERS or _DECODERS[id(module)][0] is not module:
        _DECODERS[id(module)] = (module, jax.jit(module.decode))
    return _DECODERS[id(module)][1]


def point_scores(decoded: dict, arrays: dict) -> dict:
    """Detections ``decoded`` (``"points"`` ``[n, M, 3]``, ``"count"`` ``[n]``) scored against ``arrays``:
    CSO-mAP (and APs), ``count_accuracy`` and ``rmse`` (px, one-to-one matches within 0.5 px); for whole
    frames (``arrays`` with ``"group"`` and ``"group_size"``, as ``csist_jax.data.scenes`` gives them) also
    ``group_recall`` (:func:`csist_jax.metrics.group_recall`)."""
    points, count = np.asarray(decoded["points"]), np.asarray(decoded["count"])
    out = {
        k: float(v)
        for k, v in metrics.cso_map_from_points(points, count, arrays["targets"], arrays["count"]).items()
    }
    out["count_accuracy"] = metrics.count_accuracy(count, np.asarray(arrays["count"]))
    rmse = metrics.localization_rmse(points, count, arrays["targets"], arrays["count"], max_distance=0.5)
    out["rmse"] = rmse["rmse"]
    if "group" in arrays and "group_size" in arrays:
        out["group_recall"] = metrics.group_recall(
            points, count, arrays["targets"], arrays["group"], arrays["group_size"]
        )
    return out


def point_scores_by_count(decoded: dict, arrays: dict) -> dict[int, dict]:
    """:func:`point_scores`' counting and localisation per true target count: ``{k: {"images",
    "count_accuracy", "rmse", "matched"}}`` for every count ``k`` in ``arrays``, ascending (one-to-one
    matches within 0.5 px, as :func:`point_scores`)."""
    points, count = np.asarray(decoded["points"]), np.asarray(decoded["count"])
    return metrics.by_count(points, count, arrays["targets"], arrays["count"], max_distance=0.5)


def map_scores(decoded: dict, arrays: dict, *, c: int, size: int, brightness_threshold: float) -> dict:
    """HR maps ``decoded["maps"]`` scored against ``arrays``: CSO-mAP (and APs) at
    ``brightness_threshold``, MSE against the HR labels, PSNR and SSIM."""
    maps = np.asarray(decoded["maps"], np.float32)
    labels = np.asarray(physics.hr_label(arrays["targets"], c, size))
    out = {
        k: float(v)
        for k, v in metrics.cso_map_from_maps(
            maps, arrays["targets"], arrays["count"], c, brightness_threshold
        ).items()
    }
    out["mse"] = float(np.mean((maps - labels) ** 2))
    out["psnr"] = float(np.mean(np.asarray(metrics.psnr(maps, labels))))
    out["ssim"] = float(np.mean(np.asarray(metrics.ssim(maps, labels))))
    return out


def scores(module, outputs, arrays: dict, brightness_threshold: float) -> dict:
    """``module``'s raw ``outputs`` on ``arrays``, decoded by the model (``module.decode``) and scored by
    what that gives: maps (:func:`map_scores`, at ``brightness_threshold``) and/or points
    (:func:`point_scores`)."""
    decoded = _decoder(module)(outputs)
    out = {}
    if "points" in decoded:
        out.update(point_scores(decoded, arrays))
    if "maps" in decoded:
        out.update(
            map_scores(
                decoded, arrays, c=module.c, size=module.size, brightness_threshold=brightness_threshold
            )
        )
    return out


def evaluate(module, variables, arrays: dict, config, mesh=None, apply=None) -> dict:
    """:func:`scores` of ``module`` on ``arrays`` (HR maps: CSO-mAP, APs, MSE, PSNR, SSIM; points:
    CSO-mAP, APs, count accuracy, RMSE).

    The network runs in ``config.compute_dtype`` (float32 when the config has no such field).
    """
    mesh = make_mesh() if mesh is None else mesh
    if apply is None:
        apply = make_apply(module, mesh, compute_dtype=config_lib.compute_dtype(config))
    maps = predict(
        module, variables, arrays["image"], config.eval.batch_size, mesh, apply, arrays.get("frame")
    )
    return scores(module, maps, arrays, config.eval.brightness_threshold)


class Validator:
    """A validation split held on the device in padded batches of ``config.eval.batch_size``."""

    def __init__(self, module, arrays: dict, config, mesh):
        self.module = module
        self.arrays = {
            k: np.asarray(arrays[k]) for k in ("image", "targets", "count", "frame") if k in arrays
        }
        self.brightness_threshold = float(config.eval.brightness_threshold)
        self.apply = make_apply(module, mesh, compute_dtype=config_lib.compute_dtype(config))
        sharding = NamedSharding(mesh, P("data"))
        columns = [
            _padded_batches(x, config.eval.batch_size, mesh.devices.size, x.dtype)[0]
            for x in _network_inputs(module, self.arrays)
        ]
        # per batch: (images,) or (windows, frame)
        self.batches = [tuple(_global_batch(c, sharding) for c in chunk) for chunk in zip(*columns)]

    def compile(self, variables) -> None:
        """Compile the forward pass now (else the first :meth:`start` does)."""
        self.apply = self.apply.lower(variables, *self.batches[0]).compile()

    def start(self, variables) -> list:
        """Dispatch the forward pass of every batch; the maps start their copy to the host."""
        maps = [self.apply(variables, *batch) for batch in self.batches]
        for m in jax.tree.leaves(maps):
            m.copy_to_host_async()
        return maps

    def finish(self, maps: list) -> dict:
        """The scores of maps from :meth:`start` (waits for them)."""
        return scores(
            self.module, _host(maps, len(self.arrays["image"])), self.arrays, self.brightness_threshold
        )
