"""The sampling operator ``Phi``: an HR sparse map ``s`` (``hr x hr``) to an LR image (``size x size``).

``z = Phi s`` with ``Phi = kron(G, G)`` in the row-major layouts of SPEC sec. 2, i.e. ``z = G s G^T``.

:class:`SamplingOperator` is the one interface: ``forward`` (``A``), ``adjoint`` (``A^T``), ``gram``
(``A^T A``), ``matrix()`` (the dense ``[size^2, hr^2]`` form), ``norm_squared()`` (``||A||_2^2`` by power
iteration), ``adjoint_residual(key)`` (jittable) and ``check_adjoint()`` (``<A s, z> = <s, A^T z>``), with
static ``size``, ``hr``, ``in_shape``, ``out_shape`` and ``dtype``. The analytic operator
(:class:`SeparableOperator`), a dense or learned one (:class:`DenseOperator`) and the per-sample wrapper
(:class:`PerSampleOperator`) implement it. Operators are immutable pytrees (their arrays are leaves, their
shapes static), so they pass through ``jit``/``vmap``/``grad``, sit inside an Optax parameter tree, and
go wherever an operator is taken: the solvers, :func:`q_init`, and the networks' ``operator=`` argument.

A learned operator is a :class:`DenseOperator` whose matrix is a parameter::

    A0 = physics.dense_operator(physics.sampling_operator(3))   # start from the analytic Phi
    params = {"operator": A0, "network": variables["params"]}   # A0.A is trained like any weight
    maps = net.apply({"params": params["network"], "constants": variables["constants"]}, images,
                     operator=params["operator"])
"""

from __future__ import annotations

import abc
import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from csist_jax import _checks
from csist_jax.physics import psf


def register_operator(*, data_fields: list[str], meta_fields: list[str]):
    """Class decorator: registers an operator dataclass as a pytree whose structure names its class.

    ``data_fields`` become leaves (arrays: traced, differentiated, trained), ``meta_fields`` static
    structure (shapes). Use it instead of ``jax.tree_util.register_dataclass``: JAX compares the
    structures of two ``register_dataclass`` types with the same fields as equal (while hashing them
    apart), so a jitted function could run a subclass with the code it compiled for its parent, e.g.
    a correct adjoint in place of the subclass's own. Here the structure is a custom node of the class
    itself, so each operator class compiles its own code::

        @physics.register_operator(data_fields=["G"], meta_fields=["size", "c"])
        @dataclasses.dataclass(frozen=True)
        class MyOperator(physics.SeparableOperator): ...
    """

    def register(cls):
        if not dataclasses.is_dataclass(cls):
            raise TypeError(f"register_operator: {cls.__name__} must be a dataclass")
        names = {f.name for f in dataclasses.fields(cls) if f.init}
        if set(data_fields) | set(meta_fields) != names or set(data_fields) & set(meta_fields):
            raise ValueError(
                f"register_operator: data_fields {data_fields} and meta_fields {meta_fields} of "
                f"{cls.__name__} must split its fields {sorted(names)}"
            )

        def flatten(op):
            return [getattr(op, n) for n in data_fields], tuple(getattr(op, n) for n in meta_fields)

        def flatten_with_keys(op):
            leaves, meta = flatten(op)
            return [(jax.tree_util.GetAttrKey(n), x) for n, x in zip(data_fields, leaves)], meta

        def unflatten(meta, leaves):
            return cls(**dict(zip(data_fields, leaves)), **dict(zip(meta_fields, meta)))

        jax.tree_util.register_pytree_with_keys(cls, flatten_with_keys, unflatten, flatten)
        return cls

    return register


class SamplingOperator(abc.ABC):
    r"""The interface every sampling operator implements: a linear map ``A`` from HR maps to LR images.

    ``A`` takes an HR map ``s`` ``[..., hr, hr]`` to an image ``z = A s`` ``[..., size, size]`` (any
    leading batch axes). A subclass provides

    - ``size`` and ``hr`` (ints: the image and HR-map side lengths; static, not pytree leaves),
    - ``dtype`` (the dtype of its arrays),
    - ``forward(s) -> A s`` and ``adjoint(z) -> A^T z``,

    and is registered as a pytree through :func:`register_operator` (a frozen dataclass with its arrays
    as leaves and its shapes static) so that it passes through ``jit``/``vmap``/``grad`` as an argument.
    Everything else is derived: ``in_shape`` ``(hr, hr)``, ``out_shape`` ``(size, size)``, ``gram``
    (``A^T A``), ``matrix()`` (dense ``[size^2, hr^2]``), ``norm_squared()`` (``||A||_2^2``),
    ``adjoint_residual(key)`` (jittable) and ``check_adjoint()`` (its host-side verdict).

    Implementations: :class:`SeparableOperator` (the analytic ``Phi``), :class:`DenseOperator` (any
    matrix; a learned operator is a ``DenseOperator`` whose ``A`` is a trained parameter) and
    :class:`PerSampleOperator` (any operator applied one sample at a time).
    """

    size: int
    hr: int

    @property
    @abc.abstractmethod
    def dtype(self):
        """The dtype of the operator's arrays (and of ``matrix()``)."""

    @abc.abstractmethod
    def forward(self, s: Float[Array, "... hr hr"]) -> Float[Array, "... size size"]:
        """``A s``."""

    @abc.abstractmethod
    def adjoint(self, z: Float[Array, "... size size"]) -> Float[Array, "... hr hr"]:
        """``A^T z``."""

    @property
    def in_shape(self) -> tuple[int, int]:
        return (self.hr, self.hr)

    @property
    def out_shape(self) -> tuple[int, int]:
        return (self.size, self.size)

    def _check_input(self, name, x, shape):
        _checks.trailing_shape(name, x, shape)

    def gram(self, s: Float[Array, "... hr hr"]) -> Float[Array, "... hr hr"]:
        """``A^T A s``."""
        return self.adjoint(self.forward(s))

    def matrix(self) -> Float[Array, "m n"]:
        """The dense matrix ``[size^2, hr^2]``: column ``I*hr + J`` is the image of HR cell ``(I, J)``."""
        eye = jnp.eye(self.hr * self.hr, dtype=self.dtype).reshape(-1, self.hr, self.hr)
        return self.forward(eye).reshape(-1, self.size * self.size).T

    def norm_squared(self, iterations: int = 100, key=None) -> Array:
        """``||A||_2^2``, the largest eigenvalue of ``A^T A``, by power iteration (``iterations >= 1``)."""
        _checks.positive_int("iterations", iterations)
        key = jax.random.PRNGKey(0) if key is None else key
        return _power_iteration(self, key, iterations)

    def adjoint_residual(self, key: Array) -> Float[Array, ""]:
        r"""``|<A s, z> - <s, A^T z>| / (|<A s, z>| + |<s, A^T z>|)`` for random normal ``s``, ``z``.

        A pure function of the operator and ``key`` (works under ``jax.jit``, ``vmap`` over keys):
        about the dtype's rounding (``~1e-7`` in float32) when ``adjoint`` is the transpose of
        ``forward``, of order 1 when it is not.
        """
        ks, kz = jax.random.split(key)
        s = jax.random.normal(ks, self.in_shape, self.dtype)
        z = jax.random.normal(kz, self.out_shape, self.dtype)
        lhs = jnp.vdot(self.forward(s), z)
        rhs = jnp.vdot(s, self.adjoint(z))
        return jnp.abs(lhs - rhs) / (jnp.abs(lhs) + jnp.abs(rhs) + 1e-30)

    def check_adjoint(self, key=None, rtol: float | None = None) -> bool:
        """True when :meth:`adjoint_residual` is at most ``rtol`` (default 1e-5, 1e-12 in float64).

        The host-side convenience (returns a Python bool, so not under ``jit``).
        """
        key = jax.random.PRNGKey(0) if key is None else key
        rtol = (1e-12 if self.dtype == jnp.float64 else 1e-5) if rtol is None else rtol
        _checks.nonnegative("rtol", rtol)
        return bool(self.adjoint_residual(key) <= rtol)


@functools.partial(jax.jit, static_argnums=2)
def _power_iteration(op, key, iterations):
    v = jax.random.normal(key, op.in_shape, op.dtype)

    def body(_, v):
        w = op.gram(v)
        return w / jnp.linalg.norm(w)

    v = jax.lax.fori_loop(0, iterations, body, v / jnp.linalg.norm(v))
    return jnp.vdot(v, op.gram(v)) / jnp.vdot(v, v)


@register_operator(data_fields=["G"], meta_fields=["size", "c"])
@dataclasses.dataclass(frozen=True)
class SeparableOperator(SamplingOperator):
    """The analytic ``Phi = kron(G, G)``: forward ``G s G^T``, adjoint ``G^T z G`` (O(size hr^2))."""

    G: Float[Array, "size hr"]
    size: int
    c: int

    @property
    def hr(self) -> int:
        return self.size * self.c

    @property
    def dtype(self):
        return self.G.dtype

    def forward(self, s: Float[Array, "... hr hr"]) -> Float[Array, "... size size"]:
        self._check_input("s", s, self.in_shape)
        # (s G^T)^T G^T = (G s G^T)^T: keeping G on the right makes both products one large matmul
        # over the batch, ~2.5x faster on XLA:CPU than a three-operand einsum
        return jnp.swapaxes(jnp.swapaxes(s @ self.G.T, -1, -2) @ self.G.T, -1, -2)

    def adjoint(self, z: Float[Array, "... size size"]) -> Float[Array, "... hr hr"]:
        self._check_input("z", z, self.out_shape)
        return jnp.swapaxes(jnp.swapaxes(z @ self.G, -1, -2) @ self.G, -1, -2)


@register_operator(data_fields=["A"], meta_fields=["size", "hr"])
@dataclasses.dataclass(frozen=True)
class DenseOperator(SamplingOperator):
    """An operator held as its dense ``[size^2, hr^2]`` matrix ``A``: forward ``A s``, adjoint ``A^T z``.

    This is the form a learned operator takes: ``A`` is a pytree leaf, so a ``DenseOperator`` can sit in
    a parameter tree and be trained with Optax (its gradient is a ``DenseOperator`` holding ``dL/dA``).
    :func:`dense_operator` builds one from any operator, e.g. the analytic ``Phi`` as an initialisation;
    ``DenseOperator(A=params["A"], size=11, hr=33)`` wraps a raw parameter array.
    """

    A: Float[Array, "m n"]
    size: int
    hr: int

    def __post_init__(self):
        if _checks.is_concrete(self.A) and hasattr(self.A, "shape"):
            want = (self.size * self.size, self.hr * self.hr)
            if tuple(self.A.shape) != want:
                raise ValueError(f"A must have shape {want}, got {tuple(self.A.shape)}")

    @property
    def dtype(self):
        return self.A.dtype

    def forward(self, s: Float[Array, "... hr hr"]) -> Float[Array, "... size size"]:
        self._check_input("s", s, self.in_shape)
        flat = s.reshape(s.shape[:-2] + (self.hr * self.hr,))
        return (flat @ self.A.T).reshape(s.shape[:-2] + self.out_shape)

    def adjoint(self, z: Float[Array, "... size size"]) -> Float[Array, "... hr hr"]:
        self._check_input("z", z, self.out_shape)
        flat = z.reshape(z.shape[:-2] + (self.size * self.size,))
        return (flat @ self.A).reshape(z.shape[:-2] + self.in_shape)


@register_operator(data_fields=["base"], meta_fields=[])
@dataclasses.dataclass(frozen=True)
class PerSampleOperator(SamplingOperator):
    """Any operator ``base`` whose ``forward``/``adjoint`` run one sample at a time (a ``lax.map``).

    Same values as ``base`` (it calls ``base.forward``/``base.adjoint`` on one map at a time). XLA picks
    product kernels by operand shape, so a batched product can round differently for a batch of 1 or
    64; one map at a time, a sample's result is bit-identical alone and in any batch on XLA:CPU. Only the
    networks' opt-in ``batch_exact`` mode uses it: it serialises the batch (slow on accelerators).
    """

    base: SamplingOperator

    size = property(lambda self: self.base.size)
    hr = property(lambda self: self.base.hr)
    dtype = property(lambda self: self.base.dtype)

    def _map(self, fn, x, shape):
        lead = x.shape[: x.ndim - 2]
        if not lead:
            return fn(x)
        out = jax.lax.map(fn, x.reshape((-1,) + x.shape[-2:]))
        return out.reshape(lead + shape)

    def forward(self, s: Float[Array, "... hr hr"]) -> Float[Array, "... size size"]:
        return self._map(self.base.forward, s, self.out_shape)

    def adjoint(self, z: Float[Array, "... size size"]) -> Float[Array, "... hr hr"]:
        return self._map(self.base.adjoint, z, self.in_shape)

    def matrix(self) -> Float[Array, "m n"]:
        return self.base.matrix()

    def norm_squared(self, iterations: int = 100, key=None) -> Array:
        return self.base.norm_squared(iterations, key)


def sampling_operator(c: int = 3, size: int = 11, sigma=psf.DEFAULT_SIGMA) -> SeparableOperator:
    """The analytic sampling operator for ratio ``c``, image ``size`` and PSF width ``sigma``."""
    return SeparableOperator(G=psf.separable_factor(c, size, sigma), size=size, c=c)


def dense_operator(op: SamplingOperator) -> DenseOperator:
    """The same operator in dense form, ``A = op.matrix()``: the initialisation of a learned operator."""
    return DenseOperator(A=op.matrix(), size=op.size, hr=op.hr)


def sampling_matrix(c: int = 3, size: int = 11, sigma=psf.DEFAULT_SIGMA) -> Float[Array, "m n"]:
    """``Phi`` as a dense ``[size^2, (size c)^2]`` matrix, ``kron(G, G)``, row-major layouts."""
    G = psf.separable_factor(c, size, sigma)
    return jnp.kron(G, G)


def q_init(
    labels: Float[Array, "n hr hr"] | None, operator: SamplingOperator, ridge: float = 1e-6
) -> Float[Array, "hr2 m"]:
    """Least-squares linear initialisation ``Q = argmin_Q ||Q Y - X||_F`` with ``Y = A X``.

    ``X`` holds the flattened HR labels as columns; ``Y`` their noise-free images (not the stored
    8-bit ones). ``Y Y^T`` is often ill-conditioned, so a ridge relative to its trace is added:
    ``Q = X Y^T (Y Y^T + ridge * tr(Y Y^T) / m * I)^-1``, ``[hr^2, size^2]``.

    ``labels=None`` means every unit HR cell once (``X = I``, ``Y = A``): the regularised pseudo-inverse
    ``Q = A^T (A A^T + ridge tr(A A^T) / m I)^-1`` of the operator, with no training data. The networks
    start from it (``ridge=1e-3``) when no ``q_init`` is given.

    ``ridge`` must be a finite number >= 0; ``labels`` at least one finite map (``ValueError`` for an
    empty ``[0, hr, hr]``: no data determines ``Q``).
    """
    _checks.nonnegative("ridge", ridge)
    if labels is None:
        Y = operator.matrix()  # [m, hr2]
        YXt = Y
    else:
        _checks.trailing_shape("labels", labels, operator.in_shape)
        _checks.finite("labels", labels)
        if int(np.prod(np.shape(labels)[:-2])) == 0:
            raise ValueError(
                f"labels must hold at least one map (or be None: the operator's pseudo-inverse), got shape "
                f"{tuple(np.shape(labels))}"
            )
        X = jnp.asarray(labels).reshape(-1, operator.hr * operator.hr).T  # [hr2, n]
        Y = operator.forward(jnp.asarray(labels)).reshape(-1, operator.size * operator.size).T  # [m, n]
        YXt = Y @ X.T
    yyT = Y @ Y.T
    m = yyT.shape[0]
    reg = ridge * jnp.trace(yyT) / m
    return jnp.linalg.solve(yyT + reg * jnp.eye(m, dtype=yyT.dtype), YXt).T


__all__ = [
    "DenseOperator",
    "PerSampleOperator",
    "SamplingOperator",
    "SeparableOperator",
    "dense_operator",
    "q_init",
    "sampling_matrix",
    "sampling_operator",
]
