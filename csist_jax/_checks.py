"""Argument validation shared by every layer: clear errors that name the offending argument.

Checks on array *values* (NaN, infinity) only run on concrete arrays; inside ``jax.jit`` the
values are unknown and the check is skipped (shapes are always checked).
"""

from __future__ import annotations

import numbers

import jax
import numpy as np


def is_concrete(x) -> bool:
    return not isinstance(x, jax.core.Tracer)


def positive_scalar(name: str, value) -> None:
    """Raise ``ValueError`` if a concrete scalar ``value`` is not finite and > 0."""
    if not is_concrete(value):
        return
    arr = np.asarray(value)
    if arr.ndim != 0:
        return
    v = float(arr)
    if not np.isfinite(v) or v <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")


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
    if arr.dtype.kind in "fc" and not np.all(np.isfinite(arr)):
        bad = int(np.size(arr) - np.count_nonzero(np.isfinite(arr)))
        raise ValueError(f"{name} contains {bad} NaN or infinite value(s)")


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
