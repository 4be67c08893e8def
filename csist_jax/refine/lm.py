r"""One Levenberg-Marquardt solver, shared by every fit of ``csist_jax.refine``.

For a least-squares cost ``f(p) = sum_i r_i(p)^2`` with Gauss-Newton matrix ``H = J^T W J`` and gradient
``g = J^T W r`` at ``p``, one iteration solves Marquardt's scaled damped system on the free parameters

    (H + lam diag(H) + eps (1 + diag(H))) step = -g,        eps = 1e-9,

(a fixed parameter has the row ``step = 0``), clips ``p + step`` to the box ``[lower, upper]`` and keeps
it only if it lowers the cost: then ``lam <- DECREASE * lam``, otherwise ``lam <- INCREASE * lam``. (A
clipped step is not solved again on the box's face, so at an active bound convergence is slower.) The
number of iterations is fixed, so the solver jits, vmaps and is differentiable (reverse mode runs
through the unrolled iterations; at a converged fit that is the implicit-function derivative).

A problem enters through two functions, so that each fit keeps its own fast linearisation:

* ``evaluate(p) -> (cost, aux)``: the cost at ``p`` and whatever the normal equations reuse (the
  residual, the model, profiles); evaluated once per trial point.
* ``normal(p, aux) -> system``: the normal equations at an accepted point, by default ``(H, g)`` with
  ``H`` ``[P, P]`` and ``g`` ``[P]`` over the flattened parameters.

``solve(system, lam, free) -> step`` solves the damped system; the default, :func:`dense_step`, by a
Cholesky factorisation. A structured problem brings its own solve of the same damped system
(``csist_jax.refine.calibrate`` eliminates each image's block by its Schur complement).

>>> import jax.numpy as jnp
>>> def evaluate(p):  # Rosenbrock as least squares: r = (10 (p1 - p0^2), 1 - p0)
...     r = jnp.stack([10 * (p[1] - p[0] ** 2), 1 - p[0]])
...     return jnp.sum(r * r), r
>>> def normal(p, r):
...     J = jnp.array([[-20 * p[0], 10.0], [-1.0, 0.0]])
...     return J.T @ J, J.T @ r
>>> p, cost, _ = levenberg_marquardt(evaluate, normal, jnp.array([-1.2, 1.0]), iterations=100)
>>> p.round(4)  # the minimum (1, 1)
Array([1., 1.], dtype=float32)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float

from csist_jax import _checks

DECREASE, INCREASE = 0.2, 5.0  # the damping after an accepted / a rejected step
EPS = 1e-9  # keeps a free parameter with a zero column (an inactive direction) solvable


def damped(H: Float[Array, "p p"], lam, free: Bool[Array, " p"] | None = None) -> Float[Array, "p p"]:
    """``H + diag(lam diag(H) + eps (1 + diag(H)))`` on the free parameters; a fixed parameter's row and
    column are those of the identity (so its step is 0 for a zero gradient entry)."""
    d = jnp.diagonal(H)
    extra = lam * d + EPS * (1.0 + d)
    if free is not None:
        H = jnp.where(free[:, None] & free[None, :], H, 0.0)
        extra = jnp.where(free, extra, 1.0)
    return H + jnp.diag(extra)


@jax.custom_jvp
def spd_solve(A: Float[Array, "p p"], b: Float[Array, " p"]) -> Float[Array, " p"]:
    """``A^{-1} b`` for a symmetric positive definite ``A`` (Cholesky); ``0`` where the factorisation fails.

    A failed factorisation (``A`` not positive definite in floating point: a degenerate fit at tiny
    damping) gives a zero step, which the solver rejects like the non-finite one it replaces, and a zero
    derivative: a rejected trial never turns a gradient through the solver into NaN.
    """
    return _factor_solve(A, b)[0]


def _factor_solve(A, b):
    factor = jax.scipy.linalg.cho_factor(A)[0]
    x = jax.scipy.linalg.cho_solve((factor, False), b)
    ok = jnp.all(jnp.isfinite(x))
    # a finite stand-in factor keeps the derivative's solves (and their transposes) free of NaN
    factor = jnp.where(ok, factor, jnp.eye(A.shape[-1], dtype=factor.dtype))
    return jnp.where(ok, x, 0.0), factor, ok


@spd_solve.defjvp
def _spd_solve_jvp(primals, tangents):
    (A, b), (dA, db) = primals, tangents
    x, factor, ok = _factor_solve(A, b)
    dx = jax.scipy.linalg.cho_solve((factor, False), db - dA @ x)  # d(A^{-1} b) = A^{-1} (db - dA x)
    return x, jnp.where(ok, dx, 0.0)


def dense_step(system, lam, free: Bool[Array, " p"] | None = None) -> Float[Array, " p"]:
    """The damped step ``-(damped(H))^{-1} g`` of ``system = (H [P, P], g [P])``, zero where not ``free``."""
    H, g = system
    if free is not None:
        g = jnp.where(free, g, 0.0)
    return -spd_solve(damped(H, lam, free), g)


def levenberg_marquardt(
    evaluate: Callable[[Any], tuple[Array, Any]],
    normal: Callable[[Any, Any], Any],
    params,
    *,
    iterations: int,
    damping: float = 1e-3,
    free=None,
    lower=None,
    upper=None,
    solve: Callable[[Any, Array, Any], Any] = dense_step,
):
    """``iterations`` Levenberg-Marquardt steps from ``params``; returns ``(params, cost, aux)``.

    Args:
      evaluate: ``p -> (cost, aux)``, the cost (a scalar) at ``p`` and what ``normal`` reuses.
      normal: ``(p, aux) -> system``, the normal equations at ``p`` (``(H, g)`` for :func:`dense_step`).
      params: the start, an array or a pytree of arrays; a step from ``solve`` is reshaped leaf by leaf
        to it (a flat step fits an array of any shape).
      iterations: the number of steps (static).
      damping: the initial ``lam``.
      free: passed to ``solve``: for :func:`dense_step` a bool ``[P]`` mask of the parameters that
        move (None: all).
      lower, upper: the box (pytrees like ``params``, or broadcastable leaves; None: unbounded).
      solve: ``(system, lam, free) -> step``.

    Returns:
      The last accepted ``params``, its ``cost`` and ``aux``. The cost never increases.

    ``iterations`` must be an int >= 0 and a concrete ``damping`` a finite number >= 0 (a ``ValueError``
    naming it).
    """
    _checks.positive_int("iterations", iterations, minimum=0)
    _checks.nonnegative("damping", damping)

    def clip(p):
        if lower is not None:
            p = jax.tree.map(jnp.maximum, p, lower)
        if upper is not None:
            p = jax.tree.map(jnp.minimum, p, upper)
        return p

    def body(_, carry):
        p, cost, aux, lam = carry
        step = solve(normal(p, aux), lam, free)
        trial = clip(jax.tree.map(lambda x, s: x + s.reshape(x.shape), p, step))
        trial_cost, trial_aux = evaluate(trial)
        better = trial_cost < cost
        p, cost, aux = jax.tree.map(
            lambda new, old: jnp.where(better, new, old), (trial, trial_cost, trial_aux), (p, cost, aux)
        )
        return p, cost, aux, jnp.where(better, lam * DECREASE, lam * INCREASE)

    cost, aux = evaluate(params)
    lam = jnp.asarray(damping, jnp.result_type(cost))
    p, cost, aux, _ = jax.lax.fori_loop(0, iterations, body, (params, cost, aux, lam))
    return p, cost, aux
