"""What the tests share besides the fixtures of conftest.py: the repository root, the tiny training run,
a fast-compiling ``init``, and the model checks (one Adam step lowers a loss; a sample's output does not
depend on the rest of its batch)."""

from __future__ import annotations

import os

import jax
import jax.extend.random
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax

#: the repository root (tests read the docs, run the checkpoints and start subprocesses from it)
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def subprocess_env(**extra) -> dict:
    """The environment for a Python subprocess of a test: this process's, with the repository on
    ``PYTHONPATH``, ``JAX_PLATFORMS=cpu``, no device count of the suite's own, and the suite's XLA flags
    kept (its optimisation level: conftest.py), so the child compiles what its parent would; ``extra``
    set on top (``XLA_FLAGS`` given there is added to the suite's)."""
    env = {k: v for k, v in os.environ.items() if k != "JAX_NUM_CPU_DEVICES"}
    flags = [f for f in env.get("XLA_FLAGS", "").split() if "device_count" not in f]
    flags += extra.pop("XLA_FLAGS", "").split()
    env["XLA_FLAGS"] = " ".join(flags)
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    env["JAX_PLATFORMS"] = "cpu"
    env.update(extra)
    return env


def free_port() -> int:
    """A TCP port free on this machine now (a ``jax.distributed`` coordinator's)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("localhost", 0))
        return sock.getsockname()[1]


def run_together(commands, *, env, timeout: float, cwd=ROOT) -> list[tuple[int, str]]:
    """Start every command (an argv list) at once, wait for all of them, and return each one's
    ``(exit code, stdout and stderr)``; any still running after ``timeout`` seconds is killed, and the
    wait raises ``subprocess.TimeoutExpired``."""
    import subprocess

    procs = [
        subprocess.Popen(
            [str(a) for a in argv],
            env=env,
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for argv in commands
    ]
    try:
        logs = [proc.communicate(timeout=timeout)[0] for proc in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    return [(proc.returncode, log) for proc, log in zip(procs, logs)]


#: batch independence tolerance: max |alone - in batch| <= BATCH_RTOL * max |output| per sample
BATCH_RTOL = 1e-5


def assert_adam_step_lowers(loss, params, learning_rate: float = 1e-4) -> None:
    """One Adam step on ``loss(params)`` has finite gradients everywhere and lowers the loss (both values
    from the same compiled program)."""
    opt = optax.adam(learning_rate)

    @jax.jit
    def step(params, state):
        value, grads = jax.value_and_grad(loss)(params)
        updates, state = opt.update(grads, state, params)
        return optax.apply_updates(params, updates), state, value, grads

    new_params, state, before, grads = step(params, opt.init(params))
    assert np.isfinite(float(before))
    bad = [
        jax.tree_util.keystr(p)
        for p, g in jax.tree_util.tree_leaves_with_path(grads)
        if not np.all(np.isfinite(g))
    ]
    assert not bad, f"non-finite gradients: {bad}"
    _, _, after, _ = step(new_params, state)  # the loss at the updated parameters
    assert float(after) < float(before), (float(after), float(before))


def assert_batch_independent(apply, inputs: tuple, rtol: float = BATCH_RTOL, saturated: bool = False) -> None:
    """``apply(*inputs)`` (maps ``[n, hr, hr]``) per sample: alone and in the batch reversed equal the full
    batch to ``rtol`` of each map's scale; with ``saturated``, also the first three beside two frames of
    255 (index inputs: 3)."""
    full = np.asarray(apply(*inputs))
    scale = np.max(np.abs(full), axis=(1, 2))
    assert np.all(scale > 0)

    def close(got, rows):
        err = np.max(np.abs(np.asarray(got) - full[rows]), axis=(1, 2))
        assert np.all(err <= rtol * scale[rows]), (err / scale[rows]).max()

    for i in range(len(full)):
        close(apply(*(a[i : i + 1] for a in inputs)), [i])
    close(np.asarray(apply(*(a[::-1] for a in inputs)))[::-1], slice(None))
    if saturated:
        mixed = [np.concatenate([a[:3], a[:2] * 0 + (255 if a.ndim > 1 else 3)]) for a in inputs]
        close(np.asarray(apply(*mixed))[:3], slice(0, 3))


def tiny_config(**overrides):
    """The smallest training run: ISTA-Net, 1 stage, 4 channels, 64 frames, batch 16, 2 epochs.

    ``overrides``: fields or groups of the config, merged into it (``optim={"num_epochs": 3}`` changes
    that one field of the group)."""
    from csist_jax import train

    cfg = train.default_config()
    cfg.model.name = "ista_net"
    cfg.model.stages = 1
    cfg.model.channels = 4
    # equal split sizes: the data generator compiles once for both
    cfg.data.train_size = 64
    cfg.data.val_size = 64
    cfg.optim.batch_size = 16
    cfg.optim.num_epochs = 2
    cfg.optim.learning_rate = 1e-3
    cfg.log_every_steps = 2
    cfg.eval.batch_size = 32
    cfg.progress = False
    cfg.update(overrides)
    return cfg


def train_killed_at(step: int, config, workdir, monkeypatch) -> None:
    """``train.train_and_evaluate(config, workdir)`` interrupted (``KeyboardInterrupt``) as the training
    loop is about to dispatch ``step``: what a killed run leaves in its workdir."""
    import pytest

    from csist_jax import train
    from csist_jax.train import loop

    dispatch = loop.TrainLoop._dispatch

    def dies(self, first, count):
        if first == step:
            raise KeyboardInterrupt
        return dispatch(self, first, count)

    with monkeypatch.context() as m:
        m.setattr(loop.TrainLoop, "_dispatch", dies)
        with pytest.raises(KeyboardInterrupt):
            train.train_and_evaluate(config, str(workdir))


# ---------------------------------------------------------------------------------------------- init
# XLA:CPU spends most of a network's ``jax.jit(module.init)`` compile on the PRNG: threefry's 20 rounds,
# expanded once for every parameter array (about 60,000 HLO instructions for a 140-array baseline). The
# tests need parameters drawn by the module's own initialisers, not threefry's particular values, so
# ``init`` feeds the initialisers from a hash of a few instructions (murmur3's 32-bit finaliser over the
# element index and the key): the same distributions, other values, a compile 2-3x shorter.


def _mix(x):
    x = x ^ (x >> 16)
    x = x * jnp.uint32(0x85EBCA6B)
    x = x ^ (x >> 13)
    x = x * jnp.uint32(0xC2B2AE35)
    return x ^ (x >> 16)


def _bits(key, bit_width, shape):
    index = lax.iota(jnp.uint32, max(int(np.prod(shape)), 1))
    x = _mix(_mix(index ^ key[0]) + key[1])
    if bit_width == 64:
        x = x.astype(jnp.uint64) << 32 | _mix(x ^ key[1]).astype(jnp.uint64)
    return x.astype(jnp.dtype(f"uint{bit_width}"))[: int(np.prod(shape))].reshape(shape)


def _split(key, shape):
    index = lax.iota(jnp.uint32, max(int(np.prod(shape)), 1))
    a = _mix(key[0] + index * jnp.uint32(0x9E3779B9) + key[1])
    b = _mix(a ^ (key[1] + jnp.uint32(0x632BE5AB)))
    return jnp.stack([a, b], -1)[: int(np.prod(shape))].reshape(*shape, 2)


FAST_PRNG = jax.extend.random.define_prng_impl(
    key_shape=(2,),
    seed=lambda s: _split(jnp.stack([_mix(jnp.asarray(s).astype(jnp.uint32)), jnp.uint32(0x7F4A7C15)]), ()),
    split=_split,
    random_bits=_bits,
    fold_in=lambda key, d: jnp.stack([_mix(key[0] ^ _mix(jnp.asarray(d).astype(jnp.uint32))), key[1]]),
    name="tests.helpers.FAST_PRNG",
)


def init(module, *inputs, seed: int = 0):
    """``module.init`` compiled, its initialisers fed by :data:`FAST_PRNG` (the note above): the variables
    of a network whose initial values the test does not compare with the default PRNG's."""
    return jax.jit(module.init)(jax.random.key(seed, impl=FAST_PRNG), *inputs)


# ---------------------------------------------------------------------------------------------- commands
# ``python -m <module> ...`` costs a Python and JAX start-up (2-3 s on 2 cores) before the command runs.
# ``run_module`` runs it the way ``python -m`` does (``runpy.run_module`` as ``__main__``, ``sys.argv`` set,
# in the given directory and environment), in a child forked from one server process per test process
# that has imported the libraries already. The child is a process of its own: its exit code, its stdout
# and stderr come back as ``subprocess.run`` gives them. Environment variables that JAX reads at import
# (``XLA_FLAGS``, the compilation cache) are the server's (``JAX_PLATFORMS`` is passed on): use
# ``subprocess`` where they must differ.
# Forking is safe because the server only imports: importing the libraries starts no XLA backend (the
# server checks), so no runtime thread exists at a fork, and each child starts a backend of its own.


def _serve() -> None:  # pragma: no cover - runs in the server process
    """The server: preload, then one JSON request a line on stdin -> one JSON reply a line on stdout."""
    import json
    import runpy
    import signal
    import sys
    import tempfile
    import time

    from jax._src import xla_bridge

    import csist_jax  # noqa: F401  the imports the entry points share, paid once
    import csist_jax.models  # noqa: F401
    import csist_jax.train  # noqa: F401

    if getattr(xla_bridge, "_backends", None):  # threads exist: a fork could deadlock
        raise RuntimeError("importing the libraries started an XLA backend; run_module cannot fork safely")

    reply = os.fdopen(os.dup(1), "w")
    for line in sys.stdin:
        request = json.loads(line)
        out, err = tempfile.TemporaryFile(), tempfile.TemporaryFile()
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                os.dup2(os.open(os.devnull, os.O_RDONLY), 0)  # the requests stay the server's
                os.dup2(out.fileno(), 1)
                os.dup2(err.fileno(), 2)
                os.chdir(request["cwd"])
                os.environ.clear()
                os.environ.update(request["env"])
                if "JAX_PLATFORMS" in request["env"]:  # read at import: set it for this child
                    jax.config.update("jax_platforms", request["env"]["JAX_PLATFORMS"])
                sys.argv = list(request["argv"])
                sys.path.insert(0, request["cwd"])
                runpy.run_module(request["argv"][0], run_name="__main__", alter_sys=True)
                code = 0
            except SystemExit as exit:
                code = exit.code if isinstance(exit.code, int) else (0 if exit.code is None else 1)
                if isinstance(exit.code, str):
                    print(exit.code, file=sys.stderr)
            except BaseException:
                import traceback

                traceback.print_exc()
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        deadline = time.monotonic() + request["timeout"]
        while (done := os.waitpid(pid, os.WNOHANG))[0] == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        if done[0] == 0:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            code = None
        else:
            code = os.waitstatus_to_exitcode(done[1])
        texts = []
        for f in (out, err):
            f.seek(0)
            texts.append(f.read().decode(errors="replace"))
            f.close()
        reply.write(json.dumps({"returncode": code, "stdout": texts[0], "stderr": texts[1]}) + "\n")
        reply.flush()


_server = None


def run_module(argv, *, env=None, cwd=ROOT, timeout: float = 300):
    """``subprocess.run([sys.executable, "-m", *argv], cwd=cwd, env=env, capture_output=True,
    text=True, timeout=timeout)``, from a forked child of the preloaded server (the note above).
    Raises ``subprocess.TimeoutExpired`` when the command runs over ``timeout`` seconds."""
    import json
    import subprocess
    import sys

    global _server
    if _server is None or _server.poll() is not None:
        server_env = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
        _server = subprocess.Popen(
            [sys.executable, "-c", "from tests.helpers import _serve; _serve()"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            cwd=ROOT,
            env=server_env,
            text=True,
        )
    argv = [str(a) for a in argv]
    request = {"argv": argv, "env": dict(os.environ if env is None else env), "cwd": str(cwd)}
    _server.stdin.write(json.dumps({**request, "timeout": timeout}) + "\n")
    _server.stdin.flush()
    line = _server.stdout.readline()
    if not line:
        raise RuntimeError(f"the command server ended while running python -m {' '.join(argv)}")
    done = json.loads(line)
    if done["returncode"] is None:
        raise subprocess.TimeoutExpired([sys.executable, "-m", *argv], timeout)
    return subprocess.CompletedProcess(
        [sys.executable, "-m", *argv], done["returncode"], done["stdout"], done["stderr"]
    )
