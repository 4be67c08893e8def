"""Argument validation shared by every layer: clear errors that name the offending argument.

Checks on array *values* (NaN, infinity) only run on concrete arrays; inside ``jax.jit`` the
values are unknown and the check is skipped (shapes are always checked).
"""

from __future__ import annotations

import contextlib
import numbers
import sys
import warnings

import jax
import numpy as np


def is_concrete(x) -> bool:
    return not isinstance(x, jax.core.Tracer)


def _concrete_numbers(name: str, value) -> np.ndarray | None:
    """``value`` as a host array of real numbers, or None when it is traced (its values unknown)."""
    if not is_concrete(value):
        return None
    try:
        arr = np.asarray(value)
    except (TypeError, ValueError):
        arr = np.asarray(None)
    if arr.dtype.kind not in "iuf" and not _is_float(arr.dtype):  # bool, complex, str, object (None, ...)
        raise TypeError(f"{name} must be a real number, got {value!r}")
    return arr


def _is_float(dtype) -> bool:
    """Floating, the extension types numpy lists as kind ``V`` (bfloat16, float8) included."""
    return dtype.kind == "f" or (dtype.kind == "V" and jax.numpy.issubdtype(dtype, jax.numpy.floating))


def _require(name: str, value, ok, requirement: str) -> None:
    """Raise ``ValueError`` naming ``name`` unless ``ok(arr)`` holds for every value of a concrete
    ``value`` (a scalar, or an array checked element-wise); traced values pass unchecked."""
    arr = _concrete_numbers(name, value)
    if arr is None:
        return
    with np.errstate(invalid="ignore"):
        good = np.asarray(ok(arr.astype(np.float64)), bool)
    if not np.all(good):
        if arr.ndim == 0:
            raise ValueError(f"{name} must be {requirement}, got {value!r}")
        bad = int(good.size - np.count_nonzero(good))
        first = float(arr.reshape(-1)[int(np.argmin(good.reshape(-1)))])
        raise ValueError(
            f"{name} must be {requirement}; {bad} of its {arr.size} values are not, e.g. {first!r}"
        )


def positive_scalar(name: str, value) -> None:
    """Raise ``ValueError`` if a concrete ``value`` is not finite and > 0 (an array: element-wise;
    ``TypeError`` if it is not a real number)."""
    _require(name, value, lambda v: np.isfinite(v) & (v > 0), "a finite number > 0")


def nonnegative(name: str, value) -> None:
    """Raise ``ValueError`` if a concrete ``value`` is not finite and >= 0 (NaN fails: the check is
    ``v >= 0``, not ``not v < 0``); traced values pass. Arrays are checked element-wise."""
    _require(name, value, lambda v: np.isfinite(v) & (v >= 0), "a finite number >= 0")


def finite_scalar(name: str, value) -> None:
    """Raise ``ValueError`` if a concrete ``value`` is NaN or infinite (any sign allowed); traced pass."""
    _require(name, value, np.isfinite, "a finite number")


def in_range(
    name: str,
    value,
    low: float,
    high: float,
    *,
    low_open: bool = False,
    high_open: bool = False,
    note: str = "",
) -> None:
    """Raise ``ValueError`` unless a concrete ``value`` lies in the interval from ``low`` to ``high``
    (closed ends unless ``*_open``); NaN always fails. ``note`` is appended to the message."""
    left, right = "(" if low_open else "[", ")" if high_open else "]"

    def ok(v):
        above = v > low if low_open else v >= low
        below = v < high if high_open else v <= high
        return above & below

    requirement = f"in {left}{low:g}, {high:g}{right}" + (f" ({note})" if note else "")
    _require(name, value, ok, requirement)


def scalar(name: str, value) -> None:
    """Raise ``ValueError`` unless ``value`` is a scalar (shape ``()``; checked on traced values too)."""
    shape = np.shape(value)
    if shape != ():
        raise ValueError(f"{name} must be a scalar (one number), got an array of shape {tuple(shape)}")


def nonnegative_scalar(name: str, value) -> float:
    """``float(value)``; raise ``ValueError`` naming ``name`` unless it is a finite number >= 0."""
    arr = np.asarray(value)
    if arr.ndim != 0 or not np.issubdtype(arr.dtype, np.number) or not np.isfinite(arr) or arr < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return float(arr)


def positive_int(name: str, value, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer >= {minimum}, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def finite(name: str, x) -> None:
    """Raise ``ValueError`` if a concrete array holds NaN or infinite values."""
    if not is_concrete(x):
        return
    arr = np.asarray(x)
    if _is_float(arr.dtype):
        arr = arr.astype(np.float32) if arr.dtype.kind == "V" else arr
    if arr.dtype.kind in "fc" and not np.all(np.isfinite(arr)):
        bad = int(np.size(arr) - np.count_nonzero(np.isfinite(arr)))
        raise ValueError(f"{name} contains {bad} NaN or infinite value(s)")


class SaturationWarning(UserWarning):
    """Frames hold values above the saturation level the fit assumes (not stored on the 0..255 scale)."""


def _caller_stacklevel() -> int:
    """The ``stacklevel`` of ``warnings.warn`` (called from this module) that names the first frame outside
    ``csist_jax``: the user's call, however deep the library's own calls are nested."""
    frame, level = sys._getframe(1), 1
    while frame is not None and frame.f_globals.get("__name__", "").startswith("csist_jax"):
        frame, level = frame.f_back, level + 1
    return level


def saturation_warning(name: str, frames, saturation) -> None:
    """Warn (one ``SaturationWarning`` per call, naming the ``saturation`` option) when concrete
    ``frames`` hold values above ``saturation``.

    A pixel at or above ``saturation`` is fitted as clipped storage (it only bounds the model from
    below), so frames on another scale (noise-free renderings of bright targets, 12/16-bit data) lose
    their brightest pixels silently. Traced frames (under ``jit``) are not checked and never warn.
    """
    if not (is_concrete(frames) and is_concrete(saturation)):
        return
    arr = np.asarray(frames)
    if arr.size == 0 or arr.dtype.kind not in "iuf":
        return
    top = float(np.max(arr))
    level = float(saturation)
    if top > level:
        above = int(np.count_nonzero(arr > level))
        warnings.warn(
            f"{name} has {above} pixel(s) above saturation={level:g} (largest {top:g}): pixels at or above "
            f"the saturation level are fitted as clipped 8-bit storage, so frames that are not on the "
            f"stored 0..{level:g} scale lose their peaks; pass saturation= at least their largest value "
            f"(e.g. saturation={np.ceil(top):g}) or rescale the frames to 0..{level:g}",
            SaturationWarning,
            stacklevel=_caller_stacklevel(),
        )


@contextlib.contextmanager
def no_saturation_warning():
    """Silence :class:`SaturationWarning` inside (a caller that has already checked its own frames)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SaturationWarning)
        yield


def trailing_shape(name: str, x, expected: tuple, min_ndim: int | None = None) -> None:
    """Raise ``ValueError`` unless ``x.shape`` ends with ``expected`` (``None`` = any size)."""
    shape = tuple(np.shape(x))
    n = len(expected)
    ok = len(shape) >= n and all(e is None or s == e for s, e in zip(shape[len(shape) - n :], expected))
    if min_ndim is not None and len(shape) < min_ndim:
        ok = False
    if not ok:
        want = ", ".join("*" if e is None else str(e) for e in expected)
        raise ValueError(f"{name} must have shape [..., {want}], got {shape}")
