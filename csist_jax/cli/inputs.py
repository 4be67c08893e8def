r"""A user's files as frames: 8/16-bit greyscale PNG, NPY, NPZ and the official dataset layouts.

:func:`scan` turns the command line's inputs (files or folders) into a list of :class:`FrameSet`\ s, in
a fixed order, reading only headers (PNG sizes, NPY/NPZ array headers; an official layout is read whole
by :func:`csist_jax.data.io.read_dir`, which validates it). A frame set is one array of frames of one
size in one file; :meth:`FrameSet.grey` reads a range of its frames as float32 grey levels.

=========================  =======================================  ==============================
input                      frames                                   ``frame`` label of frame ``i``
=========================  =======================================  ==============================
``a.png`` 8-bit grey       one, raw values                          ``0``
``a.png`` 16-bit grey      one, times 255/65535                     ``0``
``a.npy`` ``[H, W]``       one                                      ``0``
``a.npy`` ``[n, H, W]``    ``n``                                    ``i``
``a.npz``                  each array, ``[H, W]`` or ``[n, H, W]``  ``key:i``
=========================  =======================================  ==============================

A folder holding ``cso_img/`` + ``Annotations/`` (CSIST-100K) or ``image/`` + ``annotation/`` (SeqCSIST)
is read as that official layout: every ``image_{k}.png`` in id order, each frame's source its png and its
label ``0``; so is a dataset root holding ``train/``, ``val/``, ``test/`` folders of one. Any other folder
gives its .png / .npy / .npz files in natural name order (``f2`` before ``f10``); its other files and its
sub-folders are not read (the notes of :func:`scan` say so).

``scale`` (the command's ``--scale``) replaces every input's factor to grey levels (default 1, and
255/65535 for 16-bit PNG); the frames must then lie in 0..255. A frame smaller than 11 x 11, a colour
PNG, an array that is not 2-D or 3-D or not numeric, an unreadable file and, inside :meth:`FrameSet.grey`,
non-finite values or values outside 0..255 raise :class:`InputError`, whose message starts with the file.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import re
import sys
import zipfile

import numpy as np

#: file types read from a folder (a file named on the command line must have one of them too)
SUFFIXES = (".png", ".npy", ".npz")
#: a folder of more files than this is read with a progress bar
PROGRESS_FILES = 2000
#: the smallest frame side: one unmixing window
MIN_SIZE = 11
#: 16-bit PNG values to the 0..255 grey levels of the 8-bit sensor model
PNG16_SCALE = 255.0 / 65535.0
_PNG16_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")
_COLOUR_MODES = ("RGB", "RGBA", "RGBX", "P", "PA", "CMYK", "YCbCr", "LAB", "HSV", "La", "LA")


class InputError(ValueError):
    """An input file cannot be read as frames; ``path`` names it and the message starts with it."""

    def __init__(self, path: str, reason: str):
        self.path = path
        super().__init__(f"{path}: {reason}")


@dataclasses.dataclass(frozen=True, eq=False)
class FrameSet:
    """``count`` frames of one ``shape`` from one file (or one official-layout split)."""

    source: str  #: the path as the user wrote it (the CSV's ``source``)
    kind: str  #: "png", "npy", "npz", "csist100k" or "seqcsist"
    shape: tuple[int, int]
    count: int
    scale: float  #: raw value times ``scale`` = grey level
    path: str  #: the file read
    key: str | None = None  #: the NPZ array
    stack: bool = True  #: an array of frames (``[n, H, W]``), not one ``[H, W]`` frame
    sources: tuple[str, ...] | None = None  #: per-frame sources (official layouts: the png files)
    images: np.ndarray | None = None  #: frames read already (official layouts)
    signature: tuple = ()  #: what identifies the file's contents (size, mtime) for resuming

    def frame_source(self, i: int) -> str:
        return self.sources[i] if self.sources is not None else self.source

    def frame_label(self, i: int) -> str:
        if self.sources is not None:
            return "0"
        index = str(i) if self.stack else "0"
        return index if self.key is None else f"{self.key}:{index}"

    def raw(self, lo: int, hi: int) -> np.ndarray:
        """Frames ``lo:hi`` as stored, ``[hi - lo, H, W]``."""
        if self.images is not None:
            return self.images[lo:hi]
        if self.kind == "png":
            return _png_pixels(self.path)[None]
        array = _npy(self.path) if self.kind == "npy" else _npz_array(self.path, self.key)
        return np.asarray(array[lo:hi] if self.stack else array[None])

    def grey(self, lo: int, hi: int) -> np.ndarray:
        """Frames ``lo:hi`` in grey levels (raw times :attr:`scale`), float32, checked finite and in
        0..255 (a value outside raises :class:`InputError` suggesting ``--scale``)."""
        raw = self.raw(lo, hi)
        if raw.dtype.kind == "f" and not np.all(np.isfinite(raw)):
            raise InputError(self.source, "holds NaN or infinite values")
        grey = raw.astype(np.float32) if self.scale == 1.0 else (raw.astype(np.float64) * self.scale)
        grey = grey.astype(np.float32)
        if grey.size and (grey.min() < -0.5 or grey.max() > 255.5):
            raise InputError(
                self.source,
                f"values in [{raw.min():g}, {raw.max():g}] give grey levels "
                f"[{grey.min():g}, {grey.max():g}] at scale {self.scale:g}, outside the 0..255 of the "
                "sensor model; pass --scale FACTOR (e.g. --scale 255/4095 for 12-bit data)",
            )
        return grey


def files(sets: list[FrameSet]) -> int:
    """How many files ``sets`` read (an official layout: its png files)."""
    return len({path for f in sets for path in (f.sources if f.sources is not None else (f.path,))})


def natural_key(name: str) -> list:
    """Sort key ordering names as people do: ``f2`` before ``f10``, case-insensitively."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", name)] + [name]


def _signature(path: str) -> tuple:
    st = os.stat(path)
    return (st.st_size, st.st_mtime_ns)


# ---------------------------------------------------------------------------------------------- PNG


def _open_png(path: str):
    from PIL import Image, UnidentifiedImageError

    try:
        return Image.open(path)
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, SyntaxError) as err:
        raise InputError(path, f"not a readable PNG image ({type(err).__name__}: {err})") from None


def _png_mode(path: str, img) -> float:
    """The factor to grey levels of a greyscale PNG; an error naming the file for any other."""
    if img.format != "PNG":
        raise InputError(path, f"not a PNG file (it is {img.format or 'unknown'})")
    if img.mode == "L":
        return 1.0
    if img.mode in _PNG16_MODES:
        return PNG16_SCALE
    if img.mode in _COLOUR_MODES:
        raise InputError(
            path,
            f"a colour PNG (mode {img.mode!r}); the command reads greyscale frames (8- or 16-bit): "
            "convert it to grey first",
        )
    raise InputError(path, f"not an 8- or 16-bit greyscale PNG (mode {img.mode!r})")


def _png_pixels(path: str) -> np.ndarray:
    img = _open_png(path)
    with img:
        _png_mode(path, img)
        try:
            img.load()
        except Exception as err:  # noqa: BLE001 - whatever PIL raises on a damaged file, the file is named
            raise InputError(path, f"corrupt or truncated PNG ({type(err).__name__}: {err})") from None
        return np.asarray(img)


def _scan_png(path: str, source: str, scale: float | None) -> list[FrameSet]:
    img = _open_png(path)
    with img:
        factor = _png_mode(path, img)
        shape = (img.height, img.width)
    return [
        FrameSet(
            source,
            "png",
            shape,
            1,
            factor if scale is None else scale,
            path,
            stack=False,
            signature=_signature(path),
        )
    ]


# ---------------------------------------------------------------------------------------------- NPY / NPZ


def _check_array(source: str, shape: tuple, dtype: np.dtype, what: str) -> None:
    if len(shape) not in (2, 3):
        raise InputError(
            source, f"{what} has shape {tuple(shape)}: expected one frame [H, W] or frames [n, H, W]"
        )
    if dtype.kind not in "iuf":
        raise InputError(source, f"{what} has dtype {dtype}: expected integer or float grey levels")


@functools.lru_cache(maxsize=4)
def _npy(path: str) -> np.ndarray:
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except Exception as err:  # noqa: BLE001 - a damaged or pickled file: named, with numpy's reason
        raise InputError(path, f"not a readable .npy array ({type(err).__name__}: {err})") from None


@functools.lru_cache(maxsize=1)
def _npz_array(path: str, key: str) -> np.ndarray:
    try:
        with np.load(path, allow_pickle=False) as npz:
            return npz[key]
    except Exception as err:  # noqa: BLE001
        raise InputError(path, f"array {key!r}: not readable ({type(err).__name__}: {err})") from None


def _scan_npy(path: str, source: str, scale: float | None) -> list[FrameSet]:
    array = _npy(path)
    _check_array(source, array.shape, array.dtype, "the array")
    stack = array.ndim == 3
    return [
        FrameSet(
            source,
            "npy",
            tuple(array.shape[-2:]),
            array.shape[0] if stack else 1,
            1.0 if scale is None else scale,
            path,
            stack=stack,
            signature=_signature(path),
        )
    ]


def _npz_headers(path: str) -> list[tuple[str, tuple, np.dtype]]:
    """``(key, shape, dtype)`` of every array of an NPZ file, in the file's order, from the headers."""
    fmt = np.lib.format
    out = []
    try:
        with zipfile.ZipFile(path) as archive:
            for name in archive.namelist():
                if not name.endswith(".npy"):
                    continue
                with archive.open(name) as f:
                    version = fmt.read_magic(f)
                    if version == (1, 0):
                        shape, _, dtype = fmt.read_array_header_1_0(f)
                    elif version == (2, 0):
                        shape, _, dtype = fmt.read_array_header_2_0(f)
                    else:
                        array = _npz_array(path, name[:-4])
                        shape, dtype = array.shape, array.dtype
                out.append((name[:-4], tuple(shape), np.dtype(dtype)))
    except InputError:
        raise
    except Exception as err:  # noqa: BLE001 - not a zip, a damaged member: named, with the reason
        raise InputError(path, f"not a readable .npz archive ({type(err).__name__}: {err})") from None
    return out


def _scan_npz(path: str, source: str, scale: float | None) -> list[FrameSet]:
    headers = _npz_headers(path)
    if not headers:
        raise InputError(source, "the .npz archive holds no arrays")
    sets = []
    signature = _signature(path)
    for key, shape, dtype in headers:
        _check_array(source, shape, dtype, f"array {key!r}")
        stack = len(shape) == 3
        sets.append(
            FrameSet(
                source,
                "npz",
                tuple(shape[-2:]),
                shape[0] if stack else 1,
                1.0 if scale is None else scale,
                path,
                key=key,
                stack=stack,
                signature=signature,
            )
        )
    return sets


# ---------------------------------------------------------------------------------------------- layouts


def layout_of(path: str) -> str | None:
    """``"csist100k"`` / ``"seqcsist"`` when ``path`` is a split directory of that official layout,
    ``"root"`` when it holds split directories (``train``, ``val``, ``test``) of one, else None."""
    from csist_jax.data import io

    for name, lay in io.LAYOUTS.items():
        if os.path.isdir(os.path.join(path, lay.image_dir)) and os.path.isdir(
            os.path.join(path, lay.annotation_dir)
        ):
            return name
    splits = [s for s in io.SPLITS if os.path.isdir(os.path.join(path, s))]
    if splits and all(layout_of(os.path.join(path, s)) in io.LAYOUTS for s in splits):
        return "root"
    return None


def _scan_layout(path: str, source: str, scale: float | None, layout: str) -> list[FrameSet]:
    from csist_jax.data import io

    data = io.read_dir(path, layout=layout)
    lay = io.LAYOUTS[layout]
    if layout == "seqcsist":
        t = data["image"].shape[1]
        ids = (data["trajectory"][:, None] * t + np.arange(t)[None, :]).reshape(-1)
        images = data["image"].reshape(-1, *data["image"].shape[-2:])
    else:
        ids, images = data["id"], data["image"]
    if len(ids) == 0:
        return []
    names = [os.path.join(lay.image_dir, lay.image_name(int(k))) for k in ids]
    signature = tuple(_signature(os.path.join(path, name)) for name in names)
    return [
        FrameSet(
            source,
            layout,
            tuple(images.shape[-2:]),
            len(images),
            1.0 if scale is None else scale,
            path,
            sources=tuple(os.path.join(source, name) for name in names),
            images=images,
            signature=(tuple(names), signature),
        )
    ]


# ---------------------------------------------------------------------------------------------- scan


def _scan_file(path: str, source: str, scale: float | None) -> list[FrameSet]:
    suffix = os.path.splitext(path)[1].lower()
    if suffix == ".png":
        sets = _scan_png(path, source, scale)
    elif suffix == ".npy":
        sets = _scan_npy(path, source, scale)
    elif suffix == ".npz":
        sets = _scan_npz(path, source, scale)
    else:
        raise InputError(source, f"not a frame file: expected one of {', '.join(SUFFIXES)}")
    for frames in sets:
        if min(frames.shape) < MIN_SIZE:
            what = "" if frames.key is None else f" (array {frames.key!r})"
            raise InputError(
                source,
                f"frames of {frames.shape[0]}x{frames.shape[1]}{what} are smaller than the "
                f"{MIN_SIZE}x{MIN_SIZE} unmixing window",
            )
    return sets


def scan(
    inputs: list[str], *, scale: float | None = None, exclude: tuple[str, ...] = (), progress: bool = False
) -> tuple[list[FrameSet], list[str]]:
    """The frame sets of ``inputs`` (files or folders, module docstring), in order, and notes for the
    user (files and sub-folders of a folder that were not read). ``exclude``: paths never read (the
    command's own outputs inside an input folder); ``progress``: a bar (stderr) over a folder of more
    than :data:`PROGRESS_FILES` files."""
    from tqdm import tqdm

    from csist_jax.data import io

    excluded = {os.path.realpath(p) for p in exclude}
    sets: list[FrameSet] = []
    notes: list[str] = []
    for given in inputs:
        if os.path.isdir(given):
            layout = layout_of(given)
            if layout == "root":
                for split in io.SPLITS:
                    if os.path.isdir(os.path.join(given, split)):
                        sub = os.path.join(given, split)
                        sets += _scan_layout(sub, sub, scale, layout_of(sub))
                continue
            if layout is not None:
                sets += _scan_layout(given, given, scale, layout)
                continue
            names = sorted(
                (n for n in os.listdir(given) if not n.startswith(".")),
                key=natural_key,
            )
            skipped, folders = [], []
            show = progress and len(names) > PROGRESS_FILES
            for name in tqdm(names, desc=f"reading {given}", unit="file", file=sys.stderr, disable=not show):
                path = os.path.join(given, name)
                if os.path.realpath(path) in excluded:
                    continue
                if os.path.isdir(path):
                    folders.append(name)
                elif os.path.splitext(name)[1].lower() in SUFFIXES:
                    sets += _scan_file(path, path, scale)
                else:
                    skipped.append(name)
            if skipped:
                notes.append(
                    f"{given}: skipped {len(skipped)} file(s) that are not {'/'.join(SUFFIXES)}: "
                    + ", ".join(skipped[:5])
                    + (", ..." if len(skipped) > 5 else "")
                )
            if folders:
                notes.append(
                    f"{given}: sub-folders are not read (name them as inputs): "
                    + ", ".join(folders[:5])
                    + (", ..." if len(folders) > 5 else "")
                )
        elif os.path.exists(given):
            sets += _scan_file(given, given, scale)
        else:
            raise FileNotFoundError(f"{given}: no such file or folder")
    return sets, notes


__all__ = [
    "MIN_SIZE",
    "PNG16_SCALE",
    "SUFFIXES",
    "FrameSet",
    "InputError",
    "layout_of",
    "natural_key",
    "scan",
]
