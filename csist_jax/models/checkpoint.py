"""A trained network on disk: ``model.json`` (architecture) next to an Orbax ``variables`` directory.

``save_model(path, name, c, model_config, variables, info)`` writes ``path/model.json`` and
``path/variables`` (``params`` and the ``constants`` collection holding ``Q``, empty for a model that
holds none); ``load_checkpoint(path)`` rebuilds ``(module, variables)`` from them, ready for
``module.apply(variables, images)``. The training loop exports its best network this way
(``<workdir>/best``).

A saved constant that the model no longer creates is read and dropped on load: the super-resolution
baselines held a ``Q`` (``constants/q_init``) they never used until they stopped holding one
(``USES_PHYSICS = False``), and their networks saved before still load, with the same outputs.
"""

from __future__ import annotations

import json
import os
import shutil

import jax
import numpy as np

FORMAT = "csist_jax.models/1"


def _checkpointer():
    """Orbax's checkpointer for this process alone: a network is saved by one process (the training
    loop's process 0 writes ``best/``) and loaded by whichever process asks, so no barrier may wait for
    the other processes of a multi-host job (Orbax's default does, and they never arrive)."""
    import orbax.checkpoint as ocp

    if jax.process_count() == 1:
        return ocp.StandardCheckpointer()
    me = jax.process_index()
    options = ocp.options.MultiprocessingOptions(primary_host=me, active_processes={me})
    return ocp.StandardCheckpointer(multiprocessing_options=options)


def save_model(
    path, name: str, c: int, model_config: dict, variables, info: dict | None = None, *, window=None
) -> str:
    """Write the network to ``path`` (replaced atomically if it exists); returns the absolute path.

    ``window``: the frames per window of a multi-frame network (its tail's input channels depend on it;
    default 5, the published one)."""
    path = os.path.abspath(os.fspath(path))
    tmp = path + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    variables = {"params": variables["params"], "constants": variables.get("constants", {})}
    ckpt = _checkpointer()
    ckpt.save(os.path.join(tmp, "variables"), jax.device_get(variables))
    ckpt.wait_until_finished()
    meta = {"format": FORMAT, "model": name, "c": int(c), "config": dict(model_config), "info": info or {}}
    if window is not None:
        meta["window"] = int(window)
    with open(os.path.join(tmp, "model.json"), "w") as f:
        json.dump(meta, f, indent=1, default=_jsonable)
    old = path + ".old"
    shutil.rmtree(old, ignore_errors=True)
    if os.path.exists(path):
        os.rename(path, old)
    os.rename(tmp, path)
    shutil.rmtree(old, ignore_errors=True)
    return path


def read_meta(path) -> dict:
    """The ``model.json`` of a saved network (model name, ``c``, config, training info)."""
    file = os.path.join(os.fspath(path), "model.json")
    if not os.path.isfile(file):
        raise FileNotFoundError(f"{file} not found: path must be a directory written by save_model")
    with open(file) as f:
        meta = json.load(f)
    if meta.get("format") != FORMAT:
        raise ValueError(f"{file}: unknown format {meta.get('format')!r}, expected {FORMAT!r}")
    return meta


def load_checkpoint(path):
    """``(module, variables)`` of the network saved at ``path`` (a ``save_model`` directory).

    >>> module, variables = load_checkpoint("experiments/checkpoints/ista_net_plus_c3_cpu")
    >>> maps = module.apply(variables, images)  # [n, 33, 33]

    A multi-frame network's window length is ``read_meta(path)["window"]`` (5 when absent). Saved
    constants the network does not create (a super-resolution baseline's unused ``Q``, saved before
    those stopped holding one) are dropped (module docstring); every parameter must match.
    """
    from csist_jax import models

    meta = read_meta(path)
    module = models.create(meta["model"], c=meta["c"], **meta["config"])
    inputs = models.example_inputs(module, 1, meta.get("window"))
    abstract = jax.eval_shape(module.init, jax.random.PRNGKey(0), *inputs)
    constants = dict(abstract.get("constants", {}))
    where = os.path.join(os.path.abspath(os.fspath(path)), "variables")
    ckpt = _checkpointer()
    unused = unused_constants(ckpt.metadata(where), constants)
    restored = ckpt.restore(where, {"params": abstract["params"], "constants": {**constants, **unused}})
    return module, drop_constants(restored, unused)


def unused_constants(saved, constants) -> dict:
    """The saved constants a model does not create, to restore and then drop (:func:`drop_constants`):
    the entries of the ``"constants"`` collection in the Orbax metadata ``saved`` (of a saved network or
    training state) missing from ``constants`` (the model's own), as ``jax.ShapeDtypeStruct``. Only the
    ``Q`` of a super-resolution baseline saved before those stopped holding one (module docstring)."""
    tree = getattr(saved, "item_metadata", saved)
    tree = getattr(tree, "tree", tree)
    on_disk = (tree.get("constants") if hasattr(tree, "get") else None) or {}
    return {
        k: jax.ShapeDtypeStruct(tuple(m.shape), m.dtype) for k, m in on_disk.items() if k not in constants
    }


def drop_constants(restored: dict, unused: dict) -> dict:
    """``restored`` (a tree with a ``"constants"`` entry) without the constants named in ``unused``."""
    if not unused:
        return restored
    kept = {k: v for k, v in restored["constants"].items() if k not in unused}
    return {**restored, "constants": kept}


def _jsonable(x):
    if isinstance(x, (np.generic, np.ndarray)):
        return x.tolist()
    raise TypeError(f"{type(x).__name__} is not JSON serialisable")
