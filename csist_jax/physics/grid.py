"""The coordinate convention, stated once for the whole project (SPEC sec. 2).

``x`` is the ROW (first array axis) and ``y`` the COLUMN. Low-resolution (LR) pixel ``(r, q)`` covers
``[r - 1/2, r + 1/2] x [q - 1/2, q + 1/2]``, so pixel centres sit at the integers ``0 .. size-1``.

For an up-sampling ratio ``c`` the high-resolution (HR) grid has ``size * c`` cells per axis and HR
cell ``i`` has centre coordinate ``(i - o) / c`` with ``o = (c - 1) // 2``; a target at ``x`` lands in
cell ``round(c * x + o)``. Flattened layouts are row-major: LR index ``r * size + q``, HR index
``I * (size * c) + J``.
"""

from __future__ import annotations

import jax.numpy as jnp
from jaxtyping import Array, Float, Int

from csist_jax import _checks


def hr_offset(c: int) -> int:
    """The HR index of the cell centred on LR coordinate 0: ``(c - 1) // 2``."""
    _checks.positive_int("c", c)
    return (c - 1) // 2


def hr_cell_centres(c: int, size: int = 11) -> Float[Array, " hr"]:
    """Continuous coordinate of every HR cell centre along one axis: ``(i - (c-1)//2) / c``."""
    _checks.positive_int("c", c)
    _checks.positive_int("size", size)
    return (jnp.arange(size * c) - hr_offset(c)) / c


def hr_index(coordinate: Float[Array, "..."], c: int) -> Int[Array, "..."]:
    """HR cell index of a continuous coordinate: ``round(c * x + (c-1)//2)`` (half to even, as numpy).

    A concrete ``coordinate`` must be finite (NaN has no cell)."""
    _checks.finite("coordinate", coordinate)
    return jnp.round(c * jnp.asarray(coordinate) + hr_offset(c)).astype(jnp.int32)


def hr_label(targets: Float[Array, "... k 3"], c: int = 3, size: int = 11) -> Float[Array, "... hr hr"]:
    """The HR label map: zeros with ``s[round(c x + o), round(c y + o)] += b`` for every target.

    Padding rows (brightness 0) add nothing. Targets whose cell falls outside the grid are dropped by
    the scatter (they cannot occur for targets inside the frame). Two targets in one cell add up.
    """
    _checks.positive_int("c", c)
    _checks.positive_int("size", size)
    _checks.trailing_shape("targets", targets, (None, 3))
    _checks.finite("targets", targets)
    targets = jnp.asarray(targets, jnp.float32)
    hr = size * c
    batch = targets.shape[:-2]
    flat = targets.reshape((-1,) + targets.shape[-2:])
    i = hr_index(flat[..., 0], c)
    j = hr_index(flat[..., 1], c)
    b = flat[..., 2]
    inside = (i >= 0) & (i < hr) & (j >= 0) & (j < hr)
    cell = jnp.where(inside, i * hr + j, hr * hr)  # out-of-range rows go to a dump slot
    n = flat.shape[0]
    maps = jnp.zeros((n, hr * hr + 1), jnp.float32)
    maps = maps.at[jnp.arange(n)[:, None], cell].add(jnp.where(inside, b, 0.0))
    return maps[:, :-1].reshape(batch + (hr, hr))
