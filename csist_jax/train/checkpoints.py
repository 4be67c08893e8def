"""Orbax checkpoints of the training state: asynchronous saves and a restore that survives bad files.

:class:`Checkpoints` keeps the newest ``keep`` steps in ``directory`` (absolute path, one sub-directory
per step). Saves are asynchronous: :meth:`Checkpoints.save` returns once the state is copied to the host,
and the files are written in the background (:meth:`Checkpoints.wait` before exit or restore).

:meth:`Checkpoints.restore_latest` tries the steps from the newest down. A checkpoint that cannot be
read (truncated or corrupted files, half-written directories) is reported by a ``RuntimeWarning`` naming
its path; once an older one restores, the unreadable newer ones are moved to ``<directory>.unreadable/``
(re-saving their step would otherwise be refused: Orbax keeps an existing step). When no checkpoint
can be read, :class:`NoReadableCheckpoint` (a ``RuntimeError``) names the directory and nothing is moved.
Saved constants the model no longer creates are dropped on restore
(:func:`csist_jax.models.checkpoint.unused_constants`).

A failed restore leaves TensorStore reads in flight after Orbax has closed the event loop they report
to; each then prints a "RuntimeError: Event loop is closed" traceback (through ``sys.unraisablehook``,
from a TensorStore thread). :meth:`Checkpoints.restore_latest` drops exactly those while it tries the
checkpoints (and until the abandoned reads have settled); every other unraisable exception still shows.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import time
import warnings

import jax

from csist_jax.models.checkpoint import drop_constants, unused_constants


class NoReadableCheckpoint(RuntimeError):
    """Checkpoints exist but none of them can be read."""


class Checkpoints:
    """The checkpoints of one run in ``directory`` (created if missing), the newest ``keep`` kept."""

    def __init__(self, directory: str, keep: int):
        import orbax.checkpoint as ocp

        self._ocp = ocp
        self.directory = os.path.abspath(os.fspath(directory))
        options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True)
        # the handler named: a fresh manager can then read a step's metadata (restore_latest)
        handler = ocp.StandardCheckpointHandler()
        self._manager = ocp.CheckpointManager(self.directory, options=options, item_handlers=handler)

    def steps(self) -> list[int]:
        """The steps with a checkpoint directory, oldest first."""
        return sorted(self._manager.all_steps())

    def path(self, step: int) -> str:
        return os.path.join(self.directory, str(step))

    def save(self, step: int, state) -> None:
        """Start writing ``state`` as checkpoint ``step`` (in the background)."""
        self._manager.save(step, args=self._ocp.args.StandardSave(state))

    def restore_latest(self, abstract_state) -> tuple[dict, int] | None:
        """``(state, step)`` of the newest readable checkpoint, or None when there is none at all."""
        with _abandoned_reads_quiet() as failed:
            return self._restore_latest(abstract_state, failed)

    def _restore_latest(self, abstract_state, failed) -> tuple[dict, int] | None:
        steps = self.steps()
        unreadable = []
        for step in reversed(steps):
            try:
                # constants saved that the model no longer creates (a super-resolution baseline's Q from
                # before those stopped holding one) are read and dropped: such a run resumes
                constants = abstract_state.get("constants", {})
                unused = unused_constants(self._manager.item_metadata(step), constants)
                target = dict(abstract_state, constants={**constants, **unused}) if unused else abstract_state
                state = self._manager.restore(step, args=self._ocp.args.StandardRestore(target))
                state = drop_constants(state, unused)
            except Exception as err:  # noqa: BLE001 - any failure to read means: try the one before
                failed()
                first = (str(err).strip().splitlines() or [""])[0][:300]
                warnings.warn(
                    f"checkpoint {self.path(step)} cannot be read ({type(err).__name__}: {first}); "
                    "trying the one before it",
                    RuntimeWarning,
                    stacklevel=3,
                )
                unreadable.append(step)
                continue
            self._set_aside(unreadable)
            return state, step
        if steps:
            raise NoReadableCheckpoint(
                f"no readable checkpoint in {self.directory}: every one of steps {steps} failed to restore "
                "(see the warnings above)."
            )
        return None

    def _set_aside(self, steps: list[int]) -> None:
        """Move the unreadable checkpoints ``steps`` out of the way (process 0 only)."""
        if not steps:
            return
        if jax.process_index() == 0:
            aside = self.directory + ".unreadable"
            os.makedirs(aside, exist_ok=True)
            for step in steps:
                target, n = os.path.join(aside, str(step)), 1
                while os.path.exists(target):
                    target, n = os.path.join(aside, f"{step}.{n}"), n + 1
                shutil.move(self.path(step), target)
                warnings.warn(
                    f"unreadable checkpoint {self.path(step)} moved to {target}", RuntimeWarning, stacklevel=4
                )
        self._manager.reload()

    def wait(self) -> None:
        """Block until every started save is on disk."""
        self._manager.wait_until_finished()

    def close(self) -> None:
        self._manager.close()


def _closed_loop_noise(unraisable) -> bool:
    """Whether an unraisable exception is a TensorStore read completing after a failed restore, into the
    event loop Orbax has closed (``asyncio``'s ``call_soon_threadsafe``: "Event loop is closed")."""
    err, tb = unraisable.exc_value, unraisable.exc_traceback
    return (
        isinstance(err, RuntimeError)
        and str(err) == "Event loop is closed"
        and tb is not None
        and tb.tb_frame.f_code.co_name == "call_soon_threadsafe"
        and "asyncio" in tb.tb_frame.f_code.co_filename
    )


@contextlib.contextmanager
def _abandoned_reads_quiet(settle: float = 0.25, limit: float = 5.0):
    """Drop :func:`_closed_loop_noise` while the block runs; the block calls the yielded function after
    each failed restore, and on exit waits (at most ``limit`` s) until ``settle`` s pass after the last
    failure and the last dropped report, so the abandoned reads of a failed restore finish first."""
    previous = sys.unraisablehook
    last = {"event": None}

    def hook(unraisable):
        if _closed_loop_noise(unraisable):
            last["event"] = time.monotonic()
            return
        previous(unraisable)

    def failed():
        last["event"] = time.monotonic()

    sys.unraisablehook = hook
    try:
        yield failed
    finally:
        if last["event"] is not None:
            deadline = time.monotonic() + limit
            while time.monotonic() < min(deadline, last["event"] + settle):
                time.sleep(0.05)
        if sys.unraisablehook is hook:
            sys.unraisablehook = previous
