"""The official on-disk layouts of CSIST-100K and SeqCSIST (SPEC sec. 4-5): read, validate, write.

One split directory holds two sub-directories, paired by a numeric id ``k``:

================  ===========================  ==============================
layout            images (8-bit grey png)      annotations (xml)
================  ===========================  ==============================
``csist100k``     ``cso_img/image_{k}.png``    ``Annotations/CSO{k}.xml``
``seqcsist``      ``image/image_{k}.png``      ``annotation/COS{k}.xml``
================  ===========================  ==============================

and a dataset root holds one split directory per split (``train``, ``val``, ``test``). Ids are ordered
numerically (``image_10`` after ``image_9``), never by name. In SeqCSIST, trajectory ``j`` is the frames
``n_frames * j .. n_frames * j + n_frames - 1`` (``n_frames`` = 20).

The xml schema (as the toolkit writes it)::

    <annotation>
        <filename>CSO{k}</filename>
        <size><width>11</width><height>11</height><depth>1</depth></size>
        <sigma>0.5</sigma>
        <object>                       (one per target, in target order)
            <name>Target</name>
            <coordinate><xc>x</xc><yc>y</yc><brightness>b</brightness></coordinate>
        </object>
    </annotation>

``xc`` is the row and ``yc`` the column coordinate of SPEC sec. 2. Reading validates every file: a corrupt
or truncated png (or one whose header claims a huge image: refused before decoding), an image that is not
8-bit grey or not ``size x size``, an id beyond int64 or given twice (``image_1``, ``image_01``: the
sample is left out, since either file could be meant), a missing or malformed xml, a
``size`` that disagrees with the png, a target outside the frame ``[-1/2, size - 1/2]^2`` or with
brightness <= 0, more targets than ``max_targets``, an image without annotation or an annotation without
image, and (SeqCSIST) an incomplete trajectory or a count that changes along it, each raise
:class:`DatasetFileError` naming the file. With ``on_error="skip"`` the bad samples (SeqCSIST: their whole
trajectories) are left out instead and listed in a :class:`ReadReport` (returned with
``return_report=True``, and summarised in a warning): nothing is dropped or reordered silently.

Writing uses the same schema; coordinates are written as the shortest decimal that reads back to the
same float32, so ``read_dir(write_dir(path, data))`` returns ``data``'s arrays bit for bit.
"""

from __future__ import annotations

import dataclasses
import os
import re
import warnings
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from csist_jax import _checks

SPLITS = ("train", "val", "test")


@dataclasses.dataclass(frozen=True)
class Layout:
    """Where one dataset keeps its files inside a split directory."""

    name: str
    image_dir: str
    annotation_dir: str
    annotation_prefix: str
    max_targets: int
    n_frames: int | None  # frames per trajectory; None for single-frame datasets

    def image_name(self, k: int) -> str:
        return f"image_{k}.png"

    def annotation_name(self, k: int) -> str:
        return f"{self.annotation_prefix}{k}.xml"


LAYOUTS = {
    "csist100k": Layout("csist100k", "cso_img", "Annotations", "CSO", max_targets=5, n_frames=None),
    "seqcsist": Layout("seqcsist", "image", "annotation", "COS", max_targets=4, n_frames=20),
}
_IMAGE_RE = re.compile(r"^image_(\d+)\.png$")
_MAX_ID = int(np.iinfo(np.int64).max)


class DatasetFileError(ValueError):
    """A file of an official-layout directory is missing, corrupt or inconsistent; ``path`` names it."""

    def __init__(self, path: os.PathLike | str, reason: str):
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


@dataclasses.dataclass
class ReadReport:
    """What :func:`read_dir` read, skipped (file, reason) and ignored (files matching no pattern)."""

    path: Path
    layout: str
    n_read: int = 0
    skipped: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    ignored: list[str] = dataclasses.field(default_factory=list)

    def summary(self, limit: int = 10) -> str:
        lines = [
            f"{self.path} ({self.layout}): read {self.n_read}, skipped {len(self.skipped)}, "
            f"ignored {len(self.ignored)} file(s)"
        ]
        lines += [f"  skipped {path}: {reason}" for path, reason in self.skipped[:limit]]
        if len(self.skipped) > limit:
            lines.append(f"  ... and {len(self.skipped) - limit} more skipped")
        lines += [f"  ignored {path}" for path in self.ignored[:limit]]
        if len(self.ignored) > limit:
            lines.append(f"  ... and {len(self.ignored) - limit} more ignored")
        return "\n".join(lines)


def detect_layout(path: os.PathLike | str) -> str:
    """The layout name of a split directory, from the sub-directories it holds."""
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: no such directory")
    found = [name for name, lay in LAYOUTS.items() if (path / lay.image_dir).is_dir()]
    if len(found) == 1:
        return found[0]
    splits = [s for s in SPLITS if (path / s).is_dir()]
    if not found and splits:
        raise ValueError(
            f"{path} is a dataset root holding split directories {splits}: "
            f"pass split=..., or use read_splits({str(path)!r})"
        )
    expected = " or ".join(f"'{lay.image_dir}/' + '{lay.annotation_dir}/'" for lay in LAYOUTS.values())
    raise ValueError(f"{path}: cannot tell the layout; expected {expected} (found image dirs {found})")


def _numbered(
    directory: Path, pattern: re.Pattern, ignored: list[str], problems: list[tuple[Path, str, int | None]]
) -> dict[int, Path]:
    """``{id: file}`` of the files of ``directory`` matching ``pattern`` (in name order); the files whose
    id is too large or repeats an earlier one (``image_1.png``, ``image_01.png``) are appended to
    ``problems`` as ``(file, reason, id or None)`` and left out."""
    files: dict[int, Path] = {}
    if not directory.is_dir():
        return files
    with os.scandir(directory) as entries:
        names = sorted(entry.name for entry in entries)
    for name in names:
        match = pattern.match(name)
        if not match:
            ignored.append(str(directory / name))
            continue
        k = int(match.group(1))
        if k > _MAX_ID:
            problems.append(
                (directory / name, f"id {k} is too large (ids must fit int64: <= {_MAX_ID})", None)
            )
        elif k in files:
            problems.append((directory / name, f"id {k} duplicates {files[k].name}", k))
        else:
            files[k] = directory / name
    return files


def _read_png(path: Path, size: int) -> np.ndarray:
    try:
        with warnings.catch_warnings():
            # a header claiming a huge image is refused before anything is decoded (PIL warns from
            # 89 Mpixel and raises from twice that)
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                mode, shape = img.mode, (img.height, img.width)
                pixels = None
                if mode == "L" and shape == (size, size):  # decode only an image that can be right
                    img.load()
                    pixels = np.asarray(img)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise DatasetFileError(
            path, f"the png header claims an image far too large to decode ({err})"
        ) from None
    except Exception as err:  # noqa: BLE001 - whatever PIL raises on a bad file, the file is named
        raise DatasetFileError(path, f"corrupt or truncated png ({type(err).__name__}: {err})") from None
    if mode != "L":
        raise DatasetFileError(path, f"expected an 8-bit greyscale png (mode 'L'), got mode {mode!r}")
    if shape != (size, size):
        raise DatasetFileError(
            path, f"expected a {size}x{size} image, got {shape[0]}x{shape[1]} (rows x cols)"
        )
    return pixels


def _number(path: Path, element: ET.Element | None, tag: str) -> float:
    node = None if element is None else element.find(tag)
    if node is None or node.text is None:
        raise DatasetFileError(path, f"malformed annotation: missing <{tag}>")
    try:
        value = float(node.text.strip())
    except ValueError:
        raise DatasetFileError(
            path, f"malformed annotation: <{tag}> is {node.text.strip()!r}, not a number"
        ) from None
    if not np.isfinite(value):
        raise DatasetFileError(path, f"malformed annotation: <{tag}> is {value}")
    return value


def _read_xml(path: Path, shape: tuple[int, int], max_targets: int) -> tuple[np.ndarray, float]:
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as err:
        raise DatasetFileError(path, f"malformed xml ({err})") from None
    except Exception as err:  # noqa: BLE001 - an unreadable file (OSError, bad encoding ...) is named
        raise DatasetFileError(path, f"unreadable annotation ({type(err).__name__}: {err})") from None
    if root.tag != "annotation":
        raise DatasetFileError(path, f"malformed annotation: root is <{root.tag}>, expected <annotation>")
    size_el = root.find("size")
    width, height = _number(path, size_el, "width"), _number(path, size_el, "height")
    if (height, width) != shape:
        raise DatasetFileError(
            path, f"<size> says {int(height)}x{int(width)} but the png is {shape[0]}x{shape[1]}"
        )
    sigma = _number(path, root, "sigma")
    if sigma <= 0:
        raise DatasetFileError(path, f"malformed annotation: <sigma> must be > 0, got {sigma}")
    objects = root.findall("object")
    if len(objects) > max_targets:
        raise DatasetFileError(
            path,
            f"{len(objects)} targets, more than max_targets={max_targets} "
            f"(pass a larger max_targets to read it)",
        )
    targets = np.zeros((len(objects), 3), np.float64)
    for i, obj in enumerate(objects):
        coord = obj.find("coordinate")
        if coord is None:
            raise DatasetFileError(path, f"malformed annotation: <object> {i} has no <coordinate>")
        x, y, b = (_number(path, coord, tag) for tag in ("xc", "yc", "brightness"))
        if not (-0.5 <= x <= shape[0] - 0.5 and -0.5 <= y <= shape[1] - 0.5):
            raise DatasetFileError(
                path,
                f"target {i} at (xc={x}, yc={y}) lies outside the "
                f"{shape[0]}x{shape[1]} frame [-0.5, {shape[0] - 0.5}]",
            )
        if b <= 0:
            raise DatasetFileError(path, f"target {i} has brightness {b}; it must be > 0")
        targets[i] = (x, y, b)
    return targets.astype(np.float32), sigma


def read_dir(
    path: os.PathLike | str,
    *,
    split: str | None = None,
    layout: str | None = None,
    max_targets: int | None = None,
    size: int = 11,
    on_error: str = "raise",
    return_report: bool = False,
    progress: bool | None = None,
):
    """Read one split directory of the official layout into arrays.

    ``path`` is a split directory, or a dataset root with ``split`` naming the sub-directory.
    ``layout`` (``"csist100k"`` or ``"seqcsist"``) is detected from the sub-directories when omitted.
    ``max_targets`` pads the targets (default 5 for CSIST-100K, 4 for SeqCSIST); an annotation with more
    is an error. ``on_error`` is ``"raise"`` (the first bad file raises :class:`DatasetFileError`) or
    ``"skip"`` (bad samples are left out and reported).

    Returns, samples in numeric id order, for ``csist100k``: ``image`` uint8 ``[n, size, size]``,
    ``targets`` float32 ``[n, max_targets, 3]`` (zero-padded), ``count`` int32 ``[n]``, ``id`` int64
    ``[n]``, ``sigma`` float32 ``[n]``; for ``seqcsist``, per trajectory: ``image`` ``[n, T, size, size]``,
    ``targets`` ``[n, T, max_targets, 3]``, ``count`` ``[n]``, ``trajectory`` int64 ``[n]`` (``id // T``),
    ``sigma`` ``[n, T]``. With ``return_report`` the result is ``(arrays, ReadReport)``.
    """
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    size = _checks.positive_int("size", size)
    path = Path(path) if split is None else Path(path) / split
    lay = LAYOUTS[_layout_name(layout)] if layout is not None else LAYOUTS[detect_layout(path)]
    if not (path / lay.image_dir).is_dir():
        raise FileNotFoundError(f"{path / lay.image_dir}: no such directory ({lay.name} layout)")
    k_max = lay.max_targets if max_targets is None else _checks.positive_int("max_targets", max_targets)
    report = ReadReport(path=path, layout=lay.name)
    problems: list[tuple[Path, str, int | None]] = []
    images = _numbered(path / lay.image_dir, _IMAGE_RE, report.ignored, problems)
    ann_re = re.compile(rf"^{lay.annotation_prefix}(\d+)\.xml$")
    annotations = _numbered(path / lay.annotation_dir, ann_re, report.ignored, problems)
    if not (path / lay.annotation_dir).is_dir() and images:
        raise FileNotFoundError(f"{path / lay.annotation_dir}: no such directory ({lay.name} layout)")

    def fail(file: Path, reason: str, ids: list[int]) -> None:
        if on_error == "raise":
            raise DatasetFileError(file, reason)
        report.skipped.append((str(file), reason))
        bad.update(ids)

    bad: set[int] = set()
    for file, reason, k in problems:  # a duplicated id leaves its sample out: which file is meant?
        fail(file, reason, [] if k is None else [k])
    for k in sorted(set(annotations) - set(images) - bad):
        fail(
            annotations[k],
            f"annotation without image (expected {path / lay.image_dir / lay.image_name(k)})",
            [k],
        )
    ids = sorted(images)
    samples: dict[int, tuple[np.ndarray, np.ndarray, float]] = {}
    show = progress if progress is not None else len(ids) > 5000
    for k in tqdm(ids, desc=f"reading {path.name}", unit="file", disable=not show):
        if k in bad:
            continue
        if k not in annotations:
            fail(
                images[k],
                f"image without annotation (expected {path / lay.annotation_dir / lay.annotation_name(k)})",
                [k],
            )
            continue
        try:
            pixels = _read_png(images[k], size)
            targets, sigma = _read_xml(annotations[k], pixels.shape, k_max)
        except DatasetFileError as err:
            fail(err.path, err.reason, [k])
            continue
        samples[k] = (pixels, targets, sigma)

    if lay.n_frames is None:
        good = [k for k in ids if k in samples and k not in bad]
        out = _stack_frames([samples[k] for k in good], k_max, size)
        out["id"] = np.asarray(good, np.int64).reshape(-1)
    else:
        out = _group_trajectories(path, lay, ids, samples, bad, k_max, size, fail)
    report.n_read = len(out["count"])
    if report.skipped or report.ignored:
        warnings.warn(report.summary(), stacklevel=2)
    return (out, report) if return_report else out


def _stack_frames(frames, k_max: int, size: int) -> dict[str, np.ndarray]:
    n = len(frames)
    image = np.zeros((n, size, size), np.uint8)
    targets = np.zeros((n, k_max, 3), np.float32)
    count = np.zeros((n,), np.int32)
    sigma = np.zeros((n,), np.float32)
    for i, (pixels, tgt, s) in enumerate(frames):
        image[i] = pixels
        targets[i, : len(tgt)] = tgt
        count[i] = len(tgt)
        sigma[i] = s
    return {"image": image, "targets": targets, "count": count, "sigma": sigma}


def _group_trajectories(path, lay, ids, samples, bad, k_max, size, fail) -> dict[str, np.ndarray]:
    n_frames = lay.n_frames
    trajectories = sorted({k // n_frames for k in ids})
    kept, stacks = [], []
    for j in trajectories:
        frame_ids = list(range(j * n_frames, (j + 1) * n_frames))
        missing = [k for k in frame_ids if k not in samples and k not in bad]
        if any(k in bad for k in frame_ids):
            continue  # already reported with its file
        if missing:
            fail(
                path / lay.image_dir / lay.image_name(missing[0]),
                f"trajectory {j} is incomplete: {len(missing)} of its {n_frames} frames are missing "
                f"(ids {frame_ids[0]}..{frame_ids[-1]})",
                frame_ids,
            )
            continue
        counts = [len(samples[k][1]) for k in frame_ids]
        if len(set(counts)) != 1:
            first = next(k for k in frame_ids if counts[k - frame_ids[0]] != counts[0])
            fail(
                path / lay.annotation_dir / lay.annotation_name(first),
                f"trajectory {j}: {counts[first - frame_ids[0]]} targets here but {counts[0]} in frame "
                f"{frame_ids[0]}; the count must stay fixed along a trajectory",
                frame_ids,
            )
            continue
        kept.append(j)
        stacks.append(_stack_frames([samples[k] for k in frame_ids], k_max, size))
    n = len(kept)
    return {
        "image": np.stack([s["image"] for s in stacks])
        if n
        else np.zeros((0, n_frames, size, size), np.uint8),
        "targets": np.stack([s["targets"] for s in stacks])
        if n
        else np.zeros((0, n_frames, k_max, 3), np.float32),
        "count": np.asarray([s["count"][0] for s in stacks], np.int32).reshape(-1),
        "trajectory": np.asarray(kept, np.int64).reshape(-1),
        "sigma": np.stack([s["sigma"] for s in stacks]) if n else np.zeros((0, n_frames), np.float32),
    }


def read_splits(path: os.PathLike | str, splits=SPLITS, **kwargs) -> dict[str, dict[str, np.ndarray]]:
    """:func:`read_dir` on every split directory of a dataset root: ``{split: arrays}``."""
    path = Path(path)
    missing = [s for s in splits if not (path / s).is_dir()]
    if missing:
        raise FileNotFoundError(
            f"{path}: missing split director{'y' if len(missing) == 1 else 'ies'} {missing}"
        )
    return {s: read_dir(path / s, **kwargs) for s in splits}


def _layout_name(layout: str) -> str:
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {sorted(LAYOUTS)}, got {layout!r}")
    return layout


def format_float(value) -> str:
    """The shortest decimal that reads back (through float64) to the same float32."""
    return np.format_float_positional(np.float32(value), unique=True, trim="0")


def annotation_xml(
    k: int, targets: np.ndarray, *, layout: str = "csist100k", size: int = 11, sigma: float = 0.5
) -> str:
    """The annotation text of sample ``k`` (``targets`` ``[count, 3]``) as the toolkit formats it."""
    lay = LAYOUTS[_layout_name(layout)]
    lines = [
        '<?xml version="1.0" ?>',
        "<annotation>",
        f"\t<filename>{lay.annotation_prefix}{k}</filename>",
        "\t<size>",
        f"\t\t<width>{size}</width>",
        f"\t\t<height>{size}</height>",
        "\t\t<depth>1</depth>",
        "\t</size>",
        f"\t<sigma>{format_float(sigma)}</sigma>",
    ]
    for x, y, b in np.asarray(targets, np.float32):
        lines += [
            "\t<object>",
            "\t\t<name>Target</name>",
            "\t\t<coordinate>",
            f"\t\t\t<xc>{format_float(x)}</xc>",
            f"\t\t\t<yc>{format_float(y)}</yc>",
            f"\t\t\t<brightness>{format_float(b)}</brightness>",
            "\t\t</coordinate>",
            "\t</object>",
        ]
    lines.append("</annotation>")
    return "\n".join(lines) + "\n"


def write_dir(
    path: os.PathLike | str,
    arrays: dict[str, np.ndarray],
    *,
    layout: str | None = None,
    first_id: int = 0,
    sigma: float = 0.5,
    overwrite: bool = False,
    progress: bool | None = None,
) -> Path:
    """Write arrays as one split directory of the official layout; returns ``path``.

    ``arrays`` is a generator or :func:`read_dir` output: ``image`` uint8 ``[n, H, W]`` (CSIST-100K) or
    ``[n, T, H, W]`` (SeqCSIST; the layout follows from the rank unless ``layout`` is given), ``targets``
    ``[n, (T,) K, 3]`` and ``count`` ``[n]``; only the first ``count`` target rows are written. Ids are
    ``arrays["id"]`` (CSIST-100K) or ``T * arrays["trajectory"] + t`` (SeqCSIST) when present, else
    ``first_id + i`` (trajectories ``first_id + i``). ``sigma`` goes into every annotation unless
    ``arrays["sigma"]`` is present. An existing non-empty layout directory is an error unless
    ``overwrite``, which first removes its png and xml files.
    """
    image = np.asarray(arrays["image"])
    if image.dtype != np.uint8:
        raise TypeError(f"arrays['image'] must be uint8 (the stored 8-bit frames), got {image.dtype}")
    if layout is None:
        if image.ndim not in (3, 4):
            raise ValueError(f"arrays['image'] must be [n, H, W] or [n, T, H, W], got shape {image.shape}")
        layout = "csist100k" if image.ndim == 3 else "seqcsist"
    lay = LAYOUTS[_layout_name(layout)]
    frame_ndim = 3 if lay.n_frames is None else 4
    if image.ndim != frame_ndim or image.shape[-1] != image.shape[-2]:
        raise ValueError(
            f"arrays['image'] must have shape {'[n, H, W]' if frame_ndim == 3 else '[n, T, H, W]'} "
            f"with H == W for the {lay.name} layout, got {image.shape}"
        )
    size = image.shape[-1]
    targets = np.asarray(arrays["targets"], np.float32)
    count = np.asarray(arrays["count"]).astype(np.int64)
    _checks.trailing_shape("arrays['targets']", targets, image.shape[1:-2] + (None, 3), min_ndim=frame_ndim)
    if targets.shape[: frame_ndim - 2] != image.shape[: frame_ndim - 2] or count.shape != image.shape[:1]:
        raise ValueError(
            f"arrays disagree on the sample count: image {image.shape}, targets {targets.shape}, "
            f"count {count.shape}"
        )
    if np.any(count < 0) or np.any(count > targets.shape[-2]):
        raise ValueError(f"arrays['count'] must lie in [0, {targets.shape[-2]}]")
    n = image.shape[0]
    first_id = _checks.positive_int("first_id", first_id, minimum=0)
    sample_ids = np.asarray(
        arrays.get("id" if lay.n_frames is None else "trajectory", np.arange(first_id, first_id + n)),
        np.int64,
    ).reshape(-1)
    if sample_ids.shape != (n,) or len(np.unique(sample_ids)) != n or np.any(sample_ids < 0):
        raise ValueError(f"ids must be {n} distinct non-negative integers, got shape {sample_ids.shape}")
    sigmas = np.broadcast_to(
        np.asarray(arrays.get("sigma", sigma), np.float32), image.shape[: frame_ndim - 2]
    )

    # flatten trajectories to frames: the official files are per frame
    if lay.n_frames is not None:
        n_frames = image.shape[1]
        if n_frames != lay.n_frames:
            raise ValueError(f"{lay.name} trajectories have {lay.n_frames} frames, got {n_frames}")
        frame_ids = (sample_ids[:, None] * n_frames + np.arange(n_frames)).reshape(-1)
        image = image.reshape((-1, size, size))
        targets = targets.reshape((-1,) + targets.shape[2:])
        count = np.repeat(count, n_frames)
        sigmas = sigmas.reshape(-1)
    else:
        frame_ids = sample_ids
    valid = np.arange(targets.shape[1])[None, :] < count[:, None]
    xy = targets[..., :2]
    outside = valid & np.any((xy < -0.5) | (xy > size - 0.5), axis=-1)
    if np.any(outside):
        i = int(np.argwhere(outside)[0, 0])
        raise ValueError(f"arrays['targets']: sample with id {frame_ids[i]} has a target outside the frame")

    path = Path(path)
    image_dir, ann_dir = path / lay.image_dir, path / lay.annotation_dir
    for d in (image_dir, ann_dir):
        if d.is_dir() and any(d.iterdir()):
            if not overwrite:
                raise FileExistsError(f"{d} is not empty; pass overwrite=True to replace its files")
            for f in d.iterdir():
                if f.suffix in (".png", ".xml"):
                    f.unlink()
        d.mkdir(parents=True, exist_ok=True)
    show = progress if progress is not None else len(frame_ids) > 5000
    for i in tqdm(range(len(frame_ids)), desc=f"writing {path.name}", unit="file", disable=not show):
        k = int(frame_ids[i])
        Image.fromarray(np.ascontiguousarray(image[i])).save(image_dir / lay.image_name(k))
        text = annotation_xml(k, targets[i, : count[i]], layout=lay.name, size=size, sigma=float(sigmas[i]))
        (ann_dir / lay.annotation_name(k)).write_text(text, encoding="utf-8")
    return path


def write_splits(path: os.PathLike | str, splits: dict[str, dict[str, np.ndarray]], **kwargs) -> Path:
    """:func:`write_dir` for every ``{split: arrays}`` under a dataset root; returns the root."""
    for name, arrays in splits.items():
        write_dir(Path(path) / name, arrays, **kwargs)
    return Path(path)
