"""The step stream: host calls of compiled steps, with logs, validation and checkpoints that never wait
for the device unless they must.

The host dispatches calls of ``steps_per_call`` steps (:class:`Schedule`) and moves on; JAX runs them in
order. Each call's measurements stay on the device. At a *flush point* (every ``log_every_steps``, and at
every validation or checkpoint step) the loop

1. closes the interval of measurement rows since the last flush point and starts their copy to the host;
2. registers the work due at this step: a device copy of the state (the next call donates the live one),
   the validation forward passes on it (dispatched now, they run on the device between training calls),
   and the checkpoint to save from it;
3. then, and only then, waits for what was registered at the *previous* flush points: their rows (written
   to the logs; a NaN or infinite loss stops the run), the validation maps (scored on the host, logged,
   ``best/`` written when the score improves) and the checkpoint (an asynchronous Orbax save).

The device so always holds the steps up to the current flush point while the host logs, scores and
saves the previous interval. Nothing is saved past a non-finite loss: a checkpoint is written only after
the rows up to its step were read and found finite. A run killed between two flush points loses the
checkpoint registered at the last one (the next run resumes from the one before); the end of a run
waits for everything.
"""

from __future__ import annotations

import dataclasses
import time

import jax
import jax.numpy as jnp
import numpy as np

#: ``curves.png`` is redrawn at a validation only when it is older than this (seconds), and at the end
PLOT_EVERY_S = 60.0


@dataclasses.dataclass(frozen=True)
class Schedule:
    """Which steps (1-based, global) validate, checkpoint and log, and how steps group into calls."""

    total_steps: int
    steps_per_epoch: int
    steps_per_call: int = 1
    log_every: int = 20
    checkpoint_every: int = 0
    eval_every_epochs: int = 1
    profile: tuple[int, int] | None = None

    def evaluates(self, step: int) -> bool:
        """Validation after ``step``: every ``eval_every_epochs`` epoch ends, and after the last step."""
        if step == self.total_steps:
            return True
        return (
            step % self.steps_per_epoch == 0 and (step // self.steps_per_epoch) % self.eval_every_epochs == 0
        )

    def checkpoints(self, step: int) -> bool:
        """A checkpoint after ``step``: each epoch end, every ``checkpoint_every`` steps, the last step."""
        every = self.checkpoint_every and step % self.checkpoint_every == 0
        return bool(step % self.steps_per_epoch == 0 or step == self.total_steps or every)

    def flushes(self, step: int) -> bool:
        """Measurements are closed into a log row after ``step``."""
        return step % self.log_every == 0 or self.evaluates(step) or self.checkpoints(step)

    def _ends_call(self, step: int) -> bool:
        profile = self.profile is not None and step in (self.profile[0] - 1, self.profile[1])
        return profile or self.flushes(step)

    def calls(self, start: int):
        """``(first step, step count)`` of each call after step ``start``: ``steps_per_call`` steps when no
        flush point (or epoch end) falls inside them, else single steps up to it."""
        step, k = start, self.steps_per_call
        while step < self.total_steps:
            whole = k > 1 and step + k <= self.total_steps
            count = k if whole and not any(self._ends_call(s) for s in range(step + 1, step + k)) else 1
            yield step + 1, count
            step += count


@dataclasses.dataclass
class _Rows:
    """Measurement rows of the steps ``first .. last``: device arrays ``[count, names]`` per call."""

    first: int
    last: int
    chunks: list


@dataclasses.dataclass
class _Due:
    """Work registered at a flush point ``step``: a state copy, validation maps, a checkpoint to save."""

    step: int
    snapshot: dict | None = None
    maps: list | None = None
    checkpoint: bool = False


@jax.jit
def _copy(tree):
    return jax.tree.map(jnp.copy, tree)


class TrainLoop:
    """Runs :class:`Schedule` ``schedule`` from a state; see the module docstring.

    ``steps`` maps a call's step count to its compiled function ``(state, data, order) -> (state, rows)``;
    ``names`` are the columns of ``rows``. ``save_best(step, variables, scores)`` writes ``best/``.
    """

    def __init__(
        self,
        *,
        schedule: Schedule,
        dataset,
        steps: dict,
        names: tuple,
        validator,
        checkpoints,
        log,
        bar,
        save_best,
        batch_size: int,
        best: tuple[float, int],
        profile_dir: str,
        name: str = "",
        on_message=print,
    ):
        self.schedule = schedule
        self.dataset = dataset
        self.steps = steps
        self.names = tuple(names)
        self.validator = validator
        self.checkpoints = checkpoints
        self.log = log
        self.bar = bar
        self.save_best = save_best
        self.batch_size = batch_size
        self.best_map, self.best_step = best
        self.profile_dir = profile_dir
        self.name = name
        self.on_message = on_message
        self.state = None
        self.last_saved = None
        self.val: dict = {}
        self.timing = {"train_seconds": 0.0, "validation_seconds": 0.0, "steps": 0}
        self._open = None  # the rows of the current interval
        self._waiting: list = []  # _Rows and _Due registered at earlier flush points, in step order
        self._orders: dict = {}
        self._profiling = False
        self._clock = 0.0
        self._plotted = 0.0

    # the stream -----------------------------------------------------------------------------------

    def run(self, state: dict, start: int) -> dict:
        """Train from ``state`` (after step ``start``) to the schedule's last step; the final state."""
        self.state, self.last_saved = state, start
        self._clock = self._plotted = t0 = time.perf_counter()
        try:
            for first, count in self.schedule.calls(start):
                self._dispatch(first, count)
                last = first + count - 1
                if self.schedule.flushes(last):
                    self._flush(last)
            self._resolve(lambda step: step <= self.schedule.total_steps, t0=t0)
        finally:
            self._stop_profile()
        if start < self.schedule.total_steps:
            self.log.plot()
        return self.state

    def _dispatch(self, first: int, count: int) -> None:
        """Queue the call of steps ``first .. first + count - 1`` (returns before the device runs it)."""
        profile = self.schedule.profile
        if profile is not None and first == profile[0]:
            jax.profiler.start_trace(self.profile_dir)
            self._profiling = True
        self.state, rows = self.steps[count](self.state, self.dataset.arrays, self._order(first))
        if self._open is None:
            self._open = _Rows(first, first + count - 1, [])
        self._open.chunks.append(rows)
        self._open.last = first + count - 1
        if self._profiling and first + count - 1 >= profile[1]:
            jax.block_until_ready(self.state)
            self._stop_profile()

    def _order(self, first: int) -> jax.Array:
        """The epoch order of step ``first``'s epoch (drawn on the device once per epoch)."""
        epoch = (first - 1) // self.schedule.steps_per_epoch
        if epoch not in self._orders:
            self._orders = {epoch: self.dataset.epoch_order(epoch)}
        return self._orders[epoch]

    def _flush(self, step: int) -> None:
        """Close the interval ending at ``step``, register its work, then settle the earlier ones."""
        rows, self._open = self._open, None
        for chunk in rows.chunks:
            chunk.copy_to_host_async()
        due = None
        if self.schedule.evaluates(step) or self.schedule.checkpoints(step):
            due = _Due(step, snapshot=_copy(self.state), checkpoint=self.schedule.checkpoints(step))
            if self.schedule.evaluates(step):
                due.maps = self.validator.start(_variables(due.snapshot))
        self._resolve(lambda s: s < step)
        self._waiting += [rows] if due is None else [rows, due]

    # settling registered work ---------------------------------------------------------------------

    def _resolve(self, due_now, t0: float | None = None) -> None:
        """Settle, in step order, the waiting rows and work whose step satisfies ``due_now``."""
        while self._waiting and due_now(_step_of(self._waiting[0])):
            item = self._waiting.pop(0)
            if isinstance(item, _Rows):
                self._write_rows(item)
                if t0 is not None and item.last == self.schedule.total_steps:
                    self.timing["train_seconds"] = time.perf_counter() - t0
            else:
                self._settle(item)

    def _write_rows(self, rows: _Rows) -> None:
        """Read an interval's rows (waits for its steps), stop on a non-finite loss, log their mean."""
        values = np.concatenate([np.asarray(chunk) for chunk in rows.chunks])
        loss = values[:, self.names.index("loss")]
        bad = ~np.isfinite(loss)
        if bad.any():
            i = int(np.argmax(bad))
            where = self.checkpoints.directory
            if self.last_saved:
                kept = f"The last good checkpoint (step {self.last_saved}) is kept in {where}"
            else:
                kept = f"No checkpoint was saved before it in {where}"
            raise FloatingPointError(
                f"training loss is {loss[i]} at step {rows.first + i} ({self.name}); training stopped. "
                f"{kept}; lower config.optim.learning_rate or check the data."
            )
        now = time.perf_counter()
        # the mean over the interval: a single batch's loss is too noisy to read a curve from
        row = dict(zip(self.names, values.mean(axis=0).tolist()))
        row["images_per_s"] = len(values) * self.batch_size / max(now - self._clock, 1e-9)
        self._clock = now
        self.timing["steps"] += len(values)
        self.log.write(rows.last, "train", row)
        self.bar.update(len(values))
        self.bar.set_postfix(loss=f"{row['loss']:.4g}", img_s=f"{row['images_per_s']:.0f}")

    def _settle(self, due: _Due) -> None:
        """Score the validation maps of ``due`` (``best/`` on a new best) and save its checkpoint."""
        if due.maps is not None:
            t = time.perf_counter()
            scores = self.validator.finish(due.maps)
            scores["epoch"] = due.step / self.schedule.steps_per_epoch
            self.log.write(due.step, "val", scores)
            if scores["mAP"] > self.best_map:
                self.best_map, self.best_step = scores["mAP"], due.step
                self.save_best(due.step, _variables(due.snapshot), scores)
                self.state = dict(self.state, **self._best_leaves())
            if time.perf_counter() - self._plotted >= PLOT_EVERY_S:
                self.log.plot()
                self._plotted = time.perf_counter()
            self.on_message(
                f"step {due.step} epoch {scores['epoch']:.2f}: val mAP {100 * scores['mAP']:.2f} "
                f"(best {100 * self.best_map:.2f})"
            )
            self.val = scores
            self.timing["validation_seconds"] += time.perf_counter() - t
        if due.checkpoint:
            self.checkpoints.save(due.step, dict(due.snapshot, **self._best_leaves()))
            self.last_saved = due.step

    def _best_leaves(self) -> dict:
        sharding = self.state["best_map"].sharding
        return {
            "best_map": jax.device_put(np.float32(self.best_map), sharding),
            "best_step": jax.device_put(np.int32(self.best_step), sharding),
        }

    def _stop_profile(self) -> None:
        if self._profiling:
            jax.profiler.stop_trace()
            self._profiling = False


def _variables(state: dict) -> dict:
    return {"params": state["params"], "constants": state["constants"]}


def _step_of(item) -> int:
    return item.last if isinstance(item, _Rows) else item.step
