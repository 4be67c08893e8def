"""One workdir, one run: the lock a run holds, the results it never silently starts over, and the
experiment a resume must continue.

* :class:`Lock`: ``workdir/.lock`` (JSON: host, pid, start time) while :func:`train_and_evaluate` runs
  (process 0 only). A second run on a live workdir refuses at once (:class:`WorkdirBusy`, naming the
  holder); a lock left by a killed run on this host (its pid gone, or reused by a process started after
  the lock was written) is reported by a ``RuntimeWarning`` and taken over.
* :func:`prepare`: a workdir that holds results (``metrics.jsonl``, ``best/``) but no checkpoint is
  refused (:class:`NotResumable`) unless ``config.restart``, which moves everything in it to
  ``workdir/previous-<time>/`` (:func:`move_aside`) so that the logs of the new run are one history.
* :func:`compare` / :func:`length_change`: a resume compares the saved ``config.json`` with the new
  config (a ``config.json`` of before the config's groups is read in the grouped layout,
  :func:`csist_jax.train.config.upgrade`). Fields of :data:`CADENCE` (logging, validation, checkpoint
  and call cadence) may change; the run length (:data:`LENGTH`) may grow, except under a cosine schedule
  (whose rate depends on it); any other change refuses (:class:`ConfigMismatch`, naming every field by
  its dotted path, old and new value).
  :func:`record_resume` appends one line per resume to ``config_history.jsonl`` and rewrites
  ``config.json`` with the config the run now has.
"""

from __future__ import annotations

import datetime
import json
import os
import shutil
import socket
import time
import warnings

from csist_jax.train import config as config_lib

LOCK = ".lock"
CONFIG = "config.json"
HISTORY = "config_history.jsonl"
#: what an earlier run leaves that a fresh run would overwrite or append to
RESULTS = ("metrics.jsonl", "best", "train.csv", "val.csv")
PREVIOUS = "previous-"
#: fields a resume may change: how often the run logs, validates, saves and profiles, how it shows
#: progress and how many steps one host call runs (the steps themselves are the same)
CADENCE = (
    "log_every_steps",
    "eval.every_epochs",
    "eval.batch_size",
    "progress",
    "keep_checkpoints",
    "checkpoint_every_steps",
    "steps_per_call",
    "profile_steps",
)
#: fields that set the run length: a resume may raise it (:func:`length_change`)
LENGTH = ("optim.num_epochs", "optim.num_steps")
#: fields that say how this call starts, not what the run is
INVOCATION = ("restart",)


class WorkdirBusy(RuntimeError):
    """Another live run holds the workdir's lock."""


class NotResumable(RuntimeError):
    """The workdir holds an earlier run's results that this run cannot resume."""


class ConfigMismatch(ValueError):
    """The config differs from the workdir's run in a field that changes what the run is."""


def choices(workdir: str) -> str:
    """The two ways on from a workdir that cannot be resumed."""
    return (
        "To go on: run in another --workdir, or start afresh here with config.restart=True "
        f"(--config.restart=True), which moves this workdir's contents to {workdir}/{PREVIOUS}<time>/ "
        "(nothing is deleted)."
    )


# the lock --------------------------------------------------------------------------------------------


def _now() -> str:
    return datetime.datetime.now().astimezone().isoformat(timespec="seconds")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _process_start(pid: int) -> float | None:
    """When process ``pid`` started (Unix time; Linux ``/proc``), or None where that cannot be read."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            ticks = int(f.read().rsplit(")", 1)[1].split()[19])  # field 22, starttime, after the name
        with open("/proc/stat") as f:
            boot = next(int(line.split()[1]) for line in f if line.startswith("btime "))
        return boot + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return None


def _describe(holder: dict) -> str:
    keys = ("host", "pid", "start")
    if not all(k in holder for k in keys):
        return f"unreadable lock contents {holder!r}"
    return f"host {holder['host']}, pid {holder['pid']}, started {holder['start']}"


class Lock:
    """``workdir/.lock`` held by this process while a run trains (a no-op unless ``enabled``).

    Use as a context manager, or :meth:`acquire` then :meth:`release` (in a ``finally`` block)."""

    def __init__(self, workdir: str, enabled: bool = True):
        self.workdir = workdir
        self.path = os.path.join(workdir, LOCK)
        self.enabled = enabled
        self.holder: dict | None = None

    def __enter__(self) -> Lock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()

    def acquire(self) -> Lock:
        """Take the lock; raise :class:`WorkdirBusy` naming the holder when a live run has it."""
        if not self.enabled:
            return self
        me = {"host": socket.gethostname(), "pid": os.getpid(), "start": _now()}
        for _ in range(5):
            if self._create(me):
                self.holder = me
                return self
            holder = self._read(self.path)
            if holder is None:  # released meanwhile
                continue
            why = self._stale(holder)
            if why is None:
                raise WorkdirBusy(
                    f"{self.workdir} is in use by another run ({_describe(holder)}): a workdir belongs to "
                    f"one run. Wait for it to finish, or give this run another --workdir. If that run is "
                    f"no longer running (e.g. it was killed on another machine), delete {self.path}."
                )
            self._take_over(holder, why)
        raise WorkdirBusy(f"could not take the lock {self.path}: other runs keep taking it")

    def release(self) -> None:
        """Remove the lock if it is still this process's."""
        if self.holder is None:
            return
        try:
            if self._read(self.path) == self.holder:
                os.remove(self.path)
        except OSError:
            pass
        self.holder = None

    def _create(self, me: dict) -> bool:
        """Write the lock atomically (complete contents or nothing); False when one exists."""
        tmp = f"{self.path}.{socket.gethostname()}.{os.getpid()}.tmp"
        with open(tmp, "w") as f:
            json.dump(me, f)
        try:
            os.link(tmp, self.path)  # fails if the lock exists, on local and network filesystems
            return True
        except FileExistsError:
            return False
        except OSError:  # a filesystem without hard links
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                return False
            with os.fdopen(fd, "w") as f:
                json.dump(me, f)
            return True
        finally:
            os.remove(tmp)

    @staticmethod
    def _read(path: str) -> dict | None:
        """The holder in ``path``; None when there is no such file; the raw text when unreadable."""
        try:
            with open(path) as f:
                text = f.read()
        except FileNotFoundError:
            return None
        try:
            holder = json.loads(text)
        except ValueError:
            return {"unreadable": text[:200]}
        return holder if isinstance(holder, dict) else {"unreadable": text[:200]}

    @staticmethod
    def _stale(holder: dict) -> str | None:
        """Why ``holder``'s run is certainly over (its pid on this host gone or reused), else None."""
        if holder.get("host") != socket.gethostname() or not isinstance(holder.get("pid"), int):
            return None  # another machine's process (or an unreadable lock) cannot be checked from here
        pid = holder["pid"]
        if not _pid_alive(pid):
            return f"pid {pid} is no longer running"
        started = _process_start(pid)
        try:
            locked = datetime.datetime.fromisoformat(str(holder.get("start"))).timestamp()
        except ValueError:
            return None
        if started is not None and started > locked + 2.0:  # the lock was written before it started
            return f"pid {pid} now belongs to a process started after the lock was written"
        return None

    def _take_over(self, holder: dict, why: str) -> None:
        aside = f"{self.path}.stale.{socket.gethostname()}.{os.getpid()}"
        try:
            os.replace(self.path, aside)  # atomic: of two runs taking over, one gets the stale lock
        except FileNotFoundError:
            return
        if self._read(aside) != holder:  # the other one was first: that was its fresh lock, put it back
            try:
                os.link(aside, self.path)
            except OSError:
                pass
            os.remove(aside)
            return
        os.remove(aside)
        warnings.warn(
            f"{self.workdir}: taking over the lock of a run that was killed ({_describe(holder)}; {why})",
            RuntimeWarning,
            stacklevel=3,
        )


# results and restart ---------------------------------------------------------------------------------


def checkpoint_steps(workdir: str) -> list[int]:
    """The steps with a checkpoint directory in ``workdir/checkpoints`` (readable or not)."""
    directory = os.path.join(workdir, "checkpoints")
    if not os.path.isdir(directory):
        return []
    return sorted(int(d) for d in os.listdir(directory) if d.isdigit())


def results(workdir: str) -> list[str]:
    """The names of :data:`RESULTS` present in ``workdir``."""
    return [name for name in RESULTS if os.path.exists(os.path.join(workdir, name))]


def move_aside(workdir: str) -> str | None:
    """Move everything in ``workdir`` (but the lock and earlier ``previous-*``) to a new
    ``workdir/previous-<time>/``; its path, or None when there was nothing to move."""
    entries = [
        e for e in sorted(os.listdir(workdir)) if not e.startswith(LOCK) and not e.startswith(PREVIOUS)
    ]
    if not entries:
        return None
    stamp = time.strftime("%Y%m%d-%H%M%S")
    target, n = os.path.join(workdir, PREVIOUS + stamp), 1
    while os.path.exists(target):
        target, n = os.path.join(workdir, f"{PREVIOUS}{stamp}.{n}"), n + 1
    os.makedirs(target)
    for entry in entries:
        shutil.move(os.path.join(workdir, entry), os.path.join(target, entry))
    return target


def prepare(workdir: str, restart: bool, main_process: bool = True) -> str | None:
    """Before a run: with ``restart``, move the workdir's contents aside (their new place returned);
    otherwise raise :class:`NotResumable` when it holds results but no checkpoint to resume from."""
    if restart:
        if not main_process:
            return None
        target = move_aside(workdir)
        if target is not None:
            warnings.warn(
                f"config.restart: the earlier run in {workdir} was moved to {target}; starting afresh",
                UserWarning,
                stacklevel=3,
            )
        return target
    found = results(workdir)
    if found and not checkpoint_steps(workdir):
        raise NotResumable(
            f"{workdir} holds the results of an earlier run ({', '.join(found)}) but no checkpoint to "
            f"resume it from; it is not started over silently. {choices(workdir)}"
        )
    return None


# the config of a resumed run -------------------------------------------------------------------------


def _flat(tree: dict) -> dict:
    """A stored config (flat layout of before the groups or grouped) as ``{dotted field: value}`` of
    the grouped layout."""
    return config_lib.flatten(config_lib.upgrade(tree))


def _plain(config) -> dict:
    """A config as JSON values (tuples as lists), nested dicts flattened to dotted names."""
    return _flat(
        json.loads(config.to_json_best_effort()) if hasattr(config, "to_json_best_effort") else config
    )


def saved_config(workdir: str) -> dict | None:
    """The workdir run's ``config.json`` (in the grouped layout: a config saved before the groups is
    read through :func:`csist_jax.train.config.upgrade`), or None when there is none."""
    path = os.path.join(workdir, CONFIG)
    if not os.path.isfile(path):
        return None
    try:
        with open(path) as f:
            return config_lib.upgrade(json.load(f))
    except ValueError as err:
        raise NotResumable(
            f"{path} cannot be read ({err}), so the run to resume is unknown: restore that file. "
            f"{choices(workdir)}"
        ) from None


def layout_note(workdir: str) -> str | None:
    """A note for ``config_history.jsonl`` when the workdir's ``config.json`` is of the flat layout of
    before the config's groups (the resume rewrites it grouped), else None."""
    path = os.path.join(workdir, CONFIG)
    try:
        with open(path) as f:
            flat = config_lib.is_flat(json.load(f))
    except (OSError, ValueError):
        return None
    if not flat:
        return None
    return "config.json of the flat layout of before the groups: read through csist_jax.train.config.upgrade"


def _differences(saved: dict, config, defaults) -> dict:
    """``{field: (old, new)}`` over every dotted field (a field the saved config lacks: its default;
    one the code no longer has: ignored; a module field of ``model`` one side lacks: None, the model's
    default). ``saved`` may be of the flat layout of before the groups."""
    new, base = _plain(config), _plain(defaults)
    old = dict(base, **_flat(saved))
    out = {}
    for key in sorted(set(new) | set(old)):
        if key not in base and not key.startswith("model."):
            continue
        if old.get(key) != new.get(key):
            out[key] = (old.get(key), new.get(key))
    return out


def _listing(diffs: dict) -> str:
    return "; ".join(f"config.{k}: {old!r} -> {new!r}" for k, (old, new) in diffs.items())


def compare(workdir: str, saved: dict, config, defaults) -> dict:
    """Check that ``config`` continues the run of ``saved`` (its ``config.json``) except for its length.

    Returns the accepted changes ``{field: (old, new)}`` (fields of :data:`CADENCE`); raises
    :class:`ConfigMismatch` naming every other differing field (run length aside: :func:`length_change`).
    """
    diffs = _differences(saved, config, defaults)
    refused = {k: v for k, v in diffs.items() if k not in CADENCE + LENGTH + INVOCATION}
    if refused:
        raise ConfigMismatch(
            f"{workdir} holds a run of another experiment, which this config would continue under other "
            f"settings: {_listing(refused)} (saved -> now). A resume may only change the run's cadence "
            f"({', '.join(CADENCE)}) or lengthen it ({', '.join(LENGTH)}): use the saved values to resume "
            f"it. {choices(workdir)}"
        )
    return {k: v for k, v in diffs.items() if k in CADENCE}


def _total(fields: dict, steps_per_epoch: int) -> int:
    return int(fields.get("optim.num_steps") or 0) or int(fields["optim.num_epochs"]) * steps_per_epoch


def length_change(workdir: str, saved: dict, config, defaults, steps_per_epoch: int) -> dict:
    """The accepted change of the run length ``{field: (old, new)}``: the same total steps, or more
    under a constant schedule. A shorter run, or a longer one under ``schedule="cosine"`` (whose rate at
    every step depends on the total), raises :class:`ConfigMismatch`."""
    diffs = {k: v for k, v in _differences(saved, config, defaults).items() if k in LENGTH}
    if not diffs:
        return {}
    old = _total(dict(_plain(defaults), **_flat(saved)), steps_per_epoch)
    new = _total(_plain(config), steps_per_epoch)
    why = None
    if new < old:
        why = f"it shortens the run from {old} to {new} steps"
    elif new > old and config.optim.schedule != "constant":
        why = (
            f"it lengthens the run from {old} to {new} steps under "
            f"schedule={config.optim.schedule!r}, whose "
            "learning rate at every step depends on the total: another schedule, not an extension"
        )
    if why:
        raise ConfigMismatch(
            f"{workdir}: {_listing(diffs)} (saved -> now) cannot resume the run there: {why}. Use the "
            f"saved values to resume it. {choices(workdir)}"
        )
    return diffs


def record_resume(workdir: str, step: int, changes: dict, config, note: str | None = None) -> None:
    """Append ``{"time", "step", "changed": {field: [old, new]}}`` to ``config_history.jsonl`` and
    write ``config`` to ``config.json`` (the run's config from now on)."""
    row = {"time": _now(), "step": int(step), "changed": {k: list(v) for k, v in changes.items()}}
    if note:
        row["note"] = note
    with open(os.path.join(workdir, HISTORY), "a") as f:
        f.write(json.dumps(row) + "\n")
    write_config(workdir, config)


def write_config(workdir: str, config) -> None:
    """Write ``config.json`` atomically."""
    path = os.path.join(workdir, CONFIG)
    with open(path + ".tmp", "w") as f:
        f.write(config.to_json_best_effort(indent=1))
    os.replace(path + ".tmp", path)
