r"""Analytic sparse recovery: ISTA and FISTA for ``min_s 1/2 ||Phi s - z||^2 + lam ||s||_1``.

One iteration is the gradient step shared with every unfolding network (SPEC sec. 7),

    r = x - t Phi^T (Phi x - z),        x_next = prox_{t lam ||.||_1}(r),

with the step ``t = 1 / ||Phi||_2^2`` from the operator norm (power iteration), and the proximal map the
soft threshold (``nonneg=False``) or its non-negative version ``max(r - t lam, 0)`` (``nonneg=True``,
targets have non-negative brightness). FISTA adds Nesterov momentum (Beck and Teboulle, 2009).

The networks in ``csist_jax.models`` run the same ``gradient_step`` with the step and the proximal map
learned; here nothing is trained. Images are raw 0..255 values, maps come out on the same scale.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from csist_jax import _checks


def soft_threshold(x: Float[Array, "..."], theta) -> Float[Array, "..."]:
    """``sign(x) max(|x| - theta, 0)``: the proximal map of ``theta ||.||_1``.

    A concrete ``theta`` must be finite (``ValueError`` naming it); its sign is not checked (a learned
    threshold may cross zero during training)."""
    _checks.finite("theta", theta)
    return jnp.sign(x) * jnp.maximum(jnp.abs(x) - theta, 0.0)


def nonneg_soft_threshold(x: Float[Array, "..."], theta) -> Float[Array, "..."]:
    """``max(x - theta, 0)``: the proximal map of ``theta ||.||_1`` plus the constraint ``x >= 0``
    (a concrete ``theta`` must be finite)."""
    _checks.finite("theta", theta)
    return jnp.maximum(x - theta, 0.0)


def gradient_step(x: Float[Array, "... hr hr"], z: Float[Array, "... m m"], operator, step) -> Array:
    """``r = x - step * Phi^T (Phi x - z)``: a gradient step on the data term ``1/2 ||Phi x - z||^2``
    (a concrete ``step`` must be finite; its range is the caller's: the networks learn it)."""
    _checks.finite("step", step)
    return x - step * operator.adjoint(operator.forward(x) - z)


def default_step(operator) -> Array:
    """``1 / ||Phi||_2^2``: the largest step for which ISTA is guaranteed to converge."""
    return 1.0 / operator.norm_squared()


def _check_step(step, operator) -> None:
    """Raise ``ValueError`` naming ``step`` unless it is a scalar in ``(0, 2 / ||Phi||_2^2)``, the steps
    for which ISTA converges (the bound computed from ``operator``'s norm by power iteration; FISTA's
    guarantee needs ``step <= 1 / ||Phi||_2^2``, the default). Checked only when ``step`` and the
    operator's arrays are concrete (not inside ``jit``)."""
    _checks.scalar("step", step)
    _checks.finite_scalar("step", step)
    if not (_checks.is_concrete(step) and all(_checks.is_concrete(a) for a in jax.tree.leaves(operator))):
        return
    norm = float(operator.norm_squared())
    _checks.in_range(
        "step",
        step,
        0.0,
        2.0 / norm,
        low_open=True,
        high_open=True,
        note=f"0 < step < 2 / ||Phi||^2 for this operator, ||Phi||^2 = {norm:.6g}; the default step is "
        f"1 / ||Phi||^2 = {1.0 / norm:.6g}",
    )


def _prepare(images, operator, lam, iterations, step, x0):
    """Validate the arguments (values only when concrete); return the batch ``[N, m, m]``, its leading
    shape, the warm start ``[N, hr, hr]`` (or None), ``lam`` and ``step`` for the jitted kernel."""
    _checks.trailing_shape("images", images, operator.out_shape, min_ndim=2)
    _checks.finite("images", images)
    _checks.positive_int("iterations", iterations)
    _checks.scalar("lam", lam)
    _checks.nonnegative("lam", lam)
    if step is not None:
        _check_step(step, operator)
    images = jnp.asarray(images, operator.dtype)
    lead = images.shape[:-2]
    if x0 is not None:
        want = lead + tuple(operator.in_shape)
        if tuple(np.shape(x0)) != want:
            raise ValueError(f"x0 must have the output's shape {list(want)}, got {list(np.shape(x0))}")
        _checks.finite("x0", x0)
        x0 = jnp.asarray(x0, images.dtype).reshape((-1,) + tuple(operator.in_shape))
    step = default_step(operator) if step is None else step
    batch = images.reshape((-1,) + tuple(operator.out_shape))
    return batch, lead, x0, jnp.asarray(lam, images.dtype), step


@functools.partial(jax.jit, static_argnames=("iterations", "nonneg", "momentum"))
def _iterate(images, x0, operator, lam, step, iterations, nonneg, momentum):
    """ISTA (``momentum=False``) or FISTA on a batch ``[N, m, m]`` from ``x0`` (zeros when None)."""
    prox = nonneg_soft_threshold if nonneg else soft_threshold

    def one(z, x0):
        def body(carry, _):
            x, y, t = carry
            x_next = prox(gradient_step(y, z, operator, step), step * lam)
            if not momentum:
                return (x_next, x_next, t), None
            t_next = 0.5 * (1.0 + jnp.sqrt(1.0 + 4.0 * t * t))
            y_next = x_next + ((t - 1.0) / t_next) * (x_next - x)
            return (x_next, y_next, t_next), None

        (x, _, _), _ = jax.lax.scan(body, (x0, x0, jnp.ones((), z.dtype)), None, length=iterations)
        return x

    if x0 is None:
        x0 = jnp.zeros((images.shape[0],) + tuple(operator.in_shape), images.dtype)
    return jax.vmap(one)(images, x0)


def proximal_gradient(
    images: Float[Array, "... m m"],
    operator,
    lam: float,
    iterations: int = 100,
    *,
    step=None,
    nonneg: bool = True,
    x0: Float[Array, "... hr hr"] | None = None,
    momentum: bool = False,
) -> Float[Array, "... hr hr"]:
    """``iterations`` ISTA steps (``momentum=False``) or FISTA steps (``True``) from ``x0`` (default 0).

    ``images`` is one image ``[m, m]`` or a batch ``[..., m, m]``; each image is independent (vmapped);
    an empty batch ``[0, m, m]`` gives ``[0, hr, hr]``. ``lam`` is the l1 weight on the 0..255 scale (a
    scalar >= 0); the threshold applied per step is ``step * lam``. ``step`` (a scalar) defaults to
    ``1 / ||Phi||_2^2`` and must lie in ``(0, 2 / ||Phi||_2^2)``, the steps for which ISTA converges.
    ``x0`` is a warm start of the output's shape ``[..., hr, hr]`` (FISTA's momentum restarts there).
    Usable inside ``jax.jit``, ``jax.vmap`` and ``jax.grad`` (in the images, ``lam``, ``step``, ``x0``
    and a learned operator's arrays); ``iterations``, ``nonneg`` and ``momentum`` are static. Values are
    checked only when concrete (NaN and infinity included; a ``ValueError`` naming the argument).
    """
    batch, lead, x0, lam, step = _prepare(images, operator, lam, iterations, step, x0)
    maps = _iterate(batch, x0, operator, lam, step, iterations, bool(nonneg), bool(momentum))
    return maps.reshape(lead + tuple(operator.in_shape))


def ista(images: Float[Array, "... m m"], operator, lam: float, iterations: int = 100, **options) -> Array:
    """ISTA: :func:`proximal_gradient` without momentum (options ``step``, ``nonneg``, ``x0``).

    >>> from csist_jax import physics
    >>> op = physics.sampling_operator(3)
    >>> maps = ista(jnp.zeros((2, 11, 11)), op, lam=10.0, iterations=20)  # [2, 33, 33]
    >>> one = ista(jnp.zeros((11, 11)), op, lam=10.0, iterations=20, x0=maps[0])  # [33, 33]
    """
    return proximal_gradient(images, operator, lam, iterations, momentum=False, **options)


def fista(images: Float[Array, "... m m"], operator, lam: float, iterations: int = 100, **options) -> Array:
    """FISTA: :func:`proximal_gradient` with Nesterov momentum (options ``step``, ``nonneg``, ``x0``)."""
    return proximal_gradient(images, operator, lam, iterations, momentum=True, **options)


def objective(
    maps: Float[Array, "... hr hr"], images: Float[Array, "... m m"], operator, lam
) -> Float[Array, "..."]:
    """``1/2 ||Phi s - z||^2 + lam ||s||_1`` per image (for convergence checks; a concrete ``lam`` must
    be finite and >= 0)."""
    _checks.nonnegative("lam", lam)
    residual = operator.forward(maps) - images
    return 0.5 * jnp.sum(residual**2, axis=(-2, -1)) + lam * jnp.sum(jnp.abs(maps), axis=(-2, -1))
