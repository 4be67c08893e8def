r"""The command's work in chunks: a fixed plan, shared among processes, kept on disk so a killed run resumes.

**Plan.** The frames of the inputs, in order, are cut into chunks: a chunk holds consecutive frames of one
size (a run of inputs of one size is one group; a new size starts a new group), at most ``chunk`` of them
(default :func:`default_chunk`). The plan depends only on the inputs and ``chunk``, so every run and every
process cuts the same chunks. The last chunk of a group with several chunks is padded (by the library
call, :attr:`Chunk.pad_to`) to the group's chunk size, so a group compiles one shape.

**Processes.** Of ``P`` processes (``jax.process_count()``), process ``i`` runs chunks ``i, i + P, ...``
(:func:`assigned`).

**Parts.** A finished chunk's CSV rows go to ``OUT.parts/chunk_NNNNN.csv``, written atomically (a
temporary file, then ``os.replace``): a part exists only complete. ``OUT.parts/manifest.json`` records the
inputs (paths, sizes and modification times, frame counts), the options and the plan; a later run with the
same manifest skips the finished chunks, one with another manifest is refused (:class:`ManifestMismatch`)
until ``--restart``. At the end the parts are joined in chunk order into ``OUT`` (atomically) and the parts
directory is removed. Nothing finished is redone or lost: a run killed at any moment leaves whole parts,
and a run killed after writing ``OUT`` but before removing the parts writes the same ``OUT`` again.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil

from csist_jax.cli.inputs import FrameSet, files

#: frames per chunk for 11 x 11 crops, and the pixel budget of a chunk of larger frames
CROP_CHUNK = 256
FRAME_CHUNK_PIXELS = 2**20
MANIFEST = "manifest.json"
#: the manifest's format; a run of another format is refused like another manifest
FORMAT = 1


@dataclasses.dataclass(frozen=True)
class Chunk:
    """Frames ``first .. first + size - 1`` of the inputs, all of ``shape``: the ``(set, lo, hi)``
    ranges of :attr:`pieces`."""

    index: int
    shape: tuple[int, int]
    first: int
    size: int
    pieces: tuple[tuple[int, int, int], ...]
    pad_to: int


def default_chunk(shape: tuple[int, int]) -> int:
    """Frames per chunk: 256 crops of 11 x 11, else about a megapixel (1 to 256 frames)."""
    if tuple(shape) == (11, 11):
        return CROP_CHUNK
    return max(1, min(CROP_CHUNK, FRAME_CHUNK_PIXELS // (shape[0] * shape[1])))


def plan(sets: list[FrameSet], chunk: int | None = None) -> list[Chunk]:
    """The chunks of ``sets`` (module docstring); ``chunk``: frames per chunk (None: by size)."""
    groups: list[list[tuple[int, int]]] = []  # runs of (set index, frame) of one shape
    shapes: list[tuple[int, int]] = []
    for s, frames in enumerate(sets):
        if frames.count == 0:
            continue
        if not shapes or shapes[-1] != frames.shape:
            groups.append([])
            shapes.append(frames.shape)
        groups[-1].append((s, frames.count))
    chunks: list[Chunk] = []
    first = 0
    for shape, group in zip(shapes, groups):
        size = chunk or default_chunk(shape)
        total = sum(count for _, count in group)
        pad_to = size if total > size else total
        pending: list[tuple[int, int, int]] = []
        taken = 0
        for s, count in group:
            lo = 0
            while lo < count:
                step = min(count - lo, size - taken)
                pending.append((s, lo, lo + step))
                taken, lo = taken + step, lo + step
                if taken == size:
                    chunks.append(Chunk(len(chunks), shape, first, taken, tuple(pending), pad_to))
                    first, pending, taken = first + taken, [], 0
        if pending:
            chunks.append(Chunk(len(chunks), shape, first, taken, tuple(pending), pad_to))
            first += taken
    return chunks


def assigned(n_chunks: int, process_index: int, process_count: int) -> list[int]:
    """The chunks process ``process_index`` of ``process_count`` runs: ``i, i + P, i + 2P, ...``."""
    if not 0 <= process_index < process_count:
        raise ValueError(f"process index {process_index} is not in 0..{process_count - 1}")
    return list(range(process_index, n_chunks, process_count))


def digest(value) -> str:
    """A short hash of a JSON-able value (the manifest's record of the inputs and the plan)."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def manifest(inputs: list[str], sets: list[FrameSet], chunks: list[Chunk], options: dict) -> dict:
    """What a run computes, for :meth:`Parts.open` to compare: the inputs (as given, with a digest of
    every file's path, size, modification time and frames), the options and the plan."""
    records = [
        [f.source, f.kind, f.key, list(f.shape), f.count, f.scale, json.loads(json.dumps(f.signature))]
        for f in sets
    ]
    return {
        "format": FORMAT,
        "inputs": {
            "given": list(inputs),
            "files": files(sets),
            "frames": sum(f.count for f in sets),
            "digest": digest(records),
        },
        "options": dict(options),
        "chunks": {"count": len(chunks), "digest": digest([dataclasses.astuple(c) for c in chunks])},
    }


class ManifestMismatch(ValueError):
    """The parts directory holds an unfinished run of other inputs or options."""


def _differences(old, new, prefix: str = "") -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for key in sorted(set(old) | set(new), key=str):
            out += _differences(old.get(key), new.get(key), f"{prefix}{key}.")
        return out
    if old != new:
        name = prefix.rstrip(".")
        if name.endswith("digest"):
            return [f"{name.removesuffix('.digest')} (files added, removed or changed)"]
        return [f"{name} {json.dumps(old)} -> {json.dumps(new)}"]
    return []


def atomic_write(path: str, text: str) -> None:
    """Write ``text`` to ``path`` so that ``path`` is either absent, its old content or all of ``text``."""
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8", newline="") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class Parts:
    """``OUT.parts/``: the manifest, one CSV part per finished chunk, and small JSON records."""

    def __init__(self, out: str):
        self.out = out
        self.path = out + ".parts"

    def part(self, k: int) -> str:
        return os.path.join(self.path, f"chunk_{k:05d}.csv")

    def done(self, k: int) -> bool:
        return os.path.exists(self.part(k))

    def write(self, k: int, text: str) -> None:
        atomic_write(self.part(k), text)

    def stored_manifest(self) -> dict | None:
        try:
            with open(os.path.join(self.path, MANIFEST), encoding="utf-8") as f:
                return json.load(f)
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as err:
            raise ManifestMismatch(
                f"{os.path.join(self.path, MANIFEST)} is unreadable ({err}); pass --restart to discard "
                f"{self.path}, or choose another --out"
            ) from None

    def check(self, wanted: dict, restart: bool = False) -> int:
        """Refuse a parts directory of another run (:class:`ManifestMismatch`, unless ``restart``);
        returns how many chunks it has finished (0 when it is new or restarted). Reads only."""
        if restart or not os.path.isdir(self.path):
            return 0
        stored = self.stored_manifest()
        if stored is None:
            if any(not name.startswith(MANIFEST) for name in os.listdir(self.path)):
                raise ManifestMismatch(
                    f"{self.path} exists without a {MANIFEST}; pass --restart to discard it, "
                    "or choose another --out"
                )
            return 0
        if stored != wanted:
            changes = "; ".join(_differences(stored, wanted)[:6])
            raise ManifestMismatch(
                f"{self.path} holds an unfinished run of other inputs or options ({changes}); pass "
                f"--restart to discard it and start again, or choose another --out"
            )
        return sum(self.done(k) for k in range(wanted["chunks"]["count"]))

    def open(self, wanted: dict, restart: bool = False) -> None:
        """Create the directory and its manifest (the writing process only); ``restart`` discards an
        existing one first. Call after :meth:`check`."""
        if restart and os.path.isdir(self.path):
            shutil.rmtree(self.path)
        os.makedirs(self.path, exist_ok=True)
        for name in os.listdir(self.path):  # the temporary files of a killed run
            if ".tmp" in name:
                os.remove(os.path.join(self.path, name))
        if self.stored_manifest() is None:
            atomic_write(os.path.join(self.path, MANIFEST), json.dumps(wanted, indent=1, sort_keys=True))

    def load(self, name: str) -> dict | None:
        try:
            with open(os.path.join(self.path, name), encoding="utf-8") as f:
                return json.load(f)
        except FileNotFoundError:
            return None

    def save(self, name: str, value: dict) -> None:
        atomic_write(os.path.join(self.path, name), json.dumps(value, indent=1, sort_keys=True))

    def join(self, header: str, n_chunks: int) -> tuple[int, int]:
        """``OUT`` = ``header`` + the parts in chunk order, written atomically; returns ``(rows, frames
        with a row)``. A missing part is a ``FileNotFoundError`` naming it."""
        missing = [self.part(k) for k in range(n_chunks) if not self.done(k)]
        if missing:
            raise FileNotFoundError(
                f"{len(missing)} chunk(s) are not finished, e.g. {missing[0]}: run the command again "
                "to finish them"
            )
        rows, frames = 0, set()
        tmp = f"{self.out}.tmp{os.getpid()}"
        with open(tmp, "w", encoding="utf-8", newline="") as out:
            out.write(header)
            for k in range(n_chunks):
                with open(self.part(k), encoding="utf-8", newline="") as part:
                    text = part.read()
                out.write(text)
                lines = text.splitlines()
                rows += len(lines)
                frames.update(line.rsplit(",", 5)[0] for line in lines)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, self.out)
        return rows, len(frames)

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


__all__ = [
    "CROP_CHUNK",
    "Chunk",
    "ManifestMismatch",
    "Parts",
    "assigned",
    "atomic_write",
    "default_chunk",
    "manifest",
    "plan",
]
