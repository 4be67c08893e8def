"""Shared set-up of the suite (tests/README.md): the layer markers, one XLA compilation cache per run, and
the fixtures several files use.

Markers: every test under ``tests/unit``, ``tests/models`` and ``tests/e2e`` carries ``unit``, ``model``
or ``e2e`` (``-m unit`` runs one layer); ``slow`` marks the long end-to-end tests, so ``-m "not slow"``
is the quick subset.

Compilation cache: the run's xdist workers and the subprocesses the tests start (training processes,
command lines, ``jax.distributed`` workers) compile many of the same programs (the tiny training run,
the generators, the shipped networks). A fresh persistent cache per run (a temporary directory, removed
at the end) lets each program compile once per run instead of once per process; nothing is kept between
runs, so a run's time is what a clean checkout pays. ``--xla-cache=DIR`` keeps one in DIR instead (a
warm cache across runs, for local work), ``--xla-cache=off`` turns it off; a ``JAX_COMPILATION_CACHE_DIR``
already in the environment is used as it is.

Compiler optimisation: nearly all of the suite's time is XLA:CPU compiling small programs, and most of a
compile is LLVM optimising the generated code. The suite therefore compiles with XLA's backend
optimisation level 0 (``--xla_backend_optimization_level=0`` in ``XLA_FLAGS``, inherited by the workers
and the subprocesses): the same HLO programs and the same HLO optimisations, the machine code left
unoptimised, about half the compile time. Float results differ from the default level's by rounding
(fused multiply-adds, vectorised sums), which every test tolerates; no test compares numbers computed at
the two levels. ``--xla-opt=default`` runs the suite at XLA's default level (what users' programs get),
and a level already in ``XLA_FLAGS`` is kept.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import tempfile

import numpy as np
import pytest

#: directory under tests/ -> the marker its tests carry
LAYERS = {"unit": "unit", "models": "model", "e2e": "e2e"}
_TESTS = pathlib.Path(__file__).resolve().parent
_CACHE_ENV = "JAX_COMPILATION_CACHE_DIR"
#: programs that compile faster than this are not written to the cache (they cost more to key and read)
_CACHE_MIN_COMPILE_S = "0.2"
#: the XLA flag that sets the level of LLVM's optimisation of the compiled code
_OPT_FLAG = "--xla_backend_optimization_level"


def pytest_addoption(parser):
    parser.addoption(
        "--xla-cache",
        default="run",
        help="XLA compilation cache: 'run' (default: a fresh one shared by this run's processes), "
        "'off', or a directory to keep it in across runs",
    )
    parser.addoption(
        "--xla-opt",
        default="0",
        choices=("0", "1", "2", "3", "default"),
        help="XLA backend optimisation level of the suite's compiles (default 0: a compile about twice "
        "as fast; 'default' leaves XLA's own level; a level already in XLA_FLAGS wins)",
    )


def pytest_configure(config):
    _optimisation_level(config)  # before any compile (the markers are declared in pyproject.toml)
    _compilation_cache(config)


def _optimisation_level(config) -> None:
    """Put the suite's backend optimisation level into ``XLA_FLAGS`` (read when the CPU backend starts;
    the workers and subprocesses inherit it), unless the environment sets one or ``--xla-opt=default``."""
    level = config.getoption("--xla-opt")
    flags = os.environ.get("XLA_FLAGS", "")
    if level != "default" and _OPT_FLAG not in flags:
        os.environ["XLA_FLAGS"] = f"{flags} {_OPT_FLAG}={level}".strip()


def _compilation_cache(config) -> None:
    """Point this process, and through the environment the xdist workers and every subprocess, at one
    compilation cache. The controller (or a run without xdist) makes it; workers inherit it."""
    choice = config.getoption("--xla-cache")
    if choice == "off" or os.environ.get("PYTEST_XDIST_WORKER"):
        pass  # a worker: the controller's environment already holds the cache
    elif _CACHE_ENV not in os.environ:
        if choice == "run":
            path = tempfile.mkdtemp(prefix="csist-jax-xla-cache-")
            config._csist_cache_to_remove = path
        else:
            path = os.path.abspath(choice)
            os.makedirs(path, exist_ok=True)
        os.environ[_CACHE_ENV] = path
        os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", _CACHE_MIN_COMPILE_S)
        os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")
    if choice != "off" and _CACHE_ENV in os.environ:
        import jax  # the environment is read when jax is first imported; set it here too, in case

        jax.config.update("jax_compilation_cache_dir", os.environ[_CACHE_ENV])
        jax.config.update(
            "jax_persistent_cache_min_compile_time_secs",
            float(os.environ.get("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", _CACHE_MIN_COMPILE_S)),
        )


def pytest_unconfigure(config):
    path = getattr(config, "_csist_cache_to_remove", None)
    if path:
        shutil.rmtree(path, ignore_errors=True)
        os.environ.pop(_CACHE_ENV, None)


def pytest_collection_modifyitems(config, items):
    for item in items:
        try:
            layer = pathlib.Path(item.path).resolve().relative_to(_TESTS).parts[0]
        except ValueError:
            continue
        if layer in LAYERS:
            item.add_marker(LAYERS[layer])


# ---------------------------------------------------------------------------------------------- data
# Session-scoped: each xdist worker generates a set once. They are read-only (the arrays refuse writes),
# so a test that wants to change one copies it first.


def _frozen(data: dict) -> dict:
    for value in data.values():
        value.flags.writeable = False
    return data


@pytest.fixture(scope="session")
def frames6():
    """Six CSIST-100K frames (seed 3): the generator's dict (``image`` uint8 ``[6, 11, 11]``, ``targets``
    ``[6, 5, 3]``, ``count``) plus ``images`` (float32) and ``labels`` (the HR labels at c = 3)."""
    from csist_jax import physics
    from csist_jax.data import csist100k

    data = csist100k.generate(3, 6)
    data["images"] = data["image"].astype(np.float32)
    data["labels"] = np.asarray(physics.hr_label(data["targets"], 3))
    return _frozen(data)


@pytest.fixture(scope="session")
def csist100k_64():
    """64 CSIST-100K frames of seed 0 from the start of the stream (the generator's dict)."""
    from csist_jax.data import csist100k

    return _frozen(csist100k.generate(seed=0, n=64))


@pytest.fixture(scope="session")
def seqcsist_4():
    """Four SeqCSIST trajectories of seed 0 from the start of the stream (the generator's dict)."""
    from csist_jax.data import seqcsist

    return _frozen(seqcsist.generate(seed=0, n_trajectories=4))
