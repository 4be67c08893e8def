"""The library composed with user JAX code: networks run with another operator or ``Q``, an operator
learned jointly with a network, the adjointness residual under ``jit``, and clear errors."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from csist_jax import models, physics
from tests import helpers

CHECKPOINT = Path(helpers.ROOT) / "experiments" / "checkpoints" / "ista_net_plus_c3_cpu"


@pytest.fixture(scope="module")
def data():
    """Six frames of 1-3 targets on HR-cell centres (c = 3): HR labels ``[6, 33, 33]`` and their
    noise-free images ``[6, 11, 11]`` (rounded, as stored)."""
    rng = np.random.default_rng(0)
    labels = np.zeros((6, 33, 33), np.float32)
    for frame in labels:
        for _ in range(rng.integers(1, 4)):
            frame[rng.integers(6, 27), rng.integers(6, 27)] += rng.uniform(100.0, 255.0)
    images = np.round(np.asarray(physics.sampling_operator(3).forward(labels)))
    return {"labels": labels, "images": images.astype(np.float32)}


@pytest.fixture(scope="module")
def small_net(data):
    """An untrained ISTA-Net (2 stages, 8 channels) and its variables (``helpers.init``: a short
    compile)."""
    net = models.create("ista_net", stages=2, channels=8)
    return net, helpers.init(net, data["images"][:1])


def _max_rel(a, b) -> float:
    """``max |a - b| / max |b|``."""
    return float(np.max(np.abs(np.asarray(a) - np.asarray(b))) / np.max(np.abs(np.asarray(b))))


def test_a_trained_network_runs_with_another_operator_under_jit(data):
    """The shipped ISTA-Net+ run under ``jax.jit`` with the analytic Phi in dense form gives its default
    output; with a mis-specified PSF (sigma 0.6 instead of 0.5) the output moves by a good part of its
    scale.

    Equality is checked in float64 (1e-9 of the map's scale; measured ~1e-15). In float32 the nine
    trained stages amplify rounding: on CSIST-100K frames the default float32 output is 4e-4 of its
    scale from the float64 one and the dense form 1.3e-4 from the separable one, so float32 is held to
    1e-3.
    """
    module, variables = models.load_checkpoint(CHECKPOINT)
    images = data["images"]
    with_operator = jax.jit(lambda v, x, op: module.apply(v, x, operator=op))
    mis_specified = physics.dense_operator(physics.sampling_operator(3, sigma=0.6))
    default32 = np.asarray(jax.jit(module.apply)(variables, images))
    dense32 = with_operator(variables, images, physics.dense_operator(physics.sampling_operator(3)))
    assert _max_rel(dense32, default32) <= 1e-3
    assert _max_rel(with_operator(variables, images, mis_specified), default32) > 0.1
    with jax.enable_x64(True):
        variables = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), variables)
        images = images.astype(np.float64)
        default = np.asarray(jax.jit(module.apply)(variables, images))
        assert default.dtype == np.float64
        dense = with_operator(variables, images, physics.dense_operator(physics.sampling_operator(3)))
        assert _max_rel(dense, default) <= 1e-9


def test_an_operator_learned_jointly_with_ista_net(data, small_net):
    """Adam on {network params, DenseOperator}: finite gradients, the loss falls, A and every network
    parameter move, and the operator stays a DenseOperator."""
    net, variables = small_net
    images, labels = jnp.asarray(data["images"]), jnp.asarray(data["labels"])
    learned = physics.dense_operator(physics.sampling_operator(3))  # starts at the analytic Phi
    params = {"network": variables["params"], "operator": learned}

    def loss(params):
        state = {"params": params["network"], "constants": variables["constants"]}
        return jnp.mean((net.apply(state, images, operator=params["operator"]) - labels) ** 2)

    tx = optax.adam(1e-3)

    @jax.jit
    def step(params, opt_state):
        value, grads = jax.value_and_grad(loss)(params)
        updates, opt_state = tx.update(grads, opt_state)
        return optax.apply_updates(params, updates), opt_state, value, grads

    opt_state = tx.init(params)
    start, losses = params, []
    for _ in range(6):
        params, opt_state, value, grads = step(params, opt_state)
        losses.append(float(value))
        assert all(np.all(np.isfinite(g)) for g in jax.tree.leaves(grads))
    assert float(jnp.max(jnp.abs(grads["operator"].A))) > 0
    assert isinstance(params["operator"], physics.DenseOperator)
    assert losses[-1] < losses[0]
    assert float(jnp.max(jnp.abs(params["operator"].A - start["operator"].A))) > 0
    moved = jax.tree.map(lambda a, b: bool(jnp.any(a != b)), params["network"], start["network"])
    assert all(jax.tree.leaves(moved)), moved


@physics.register_operator(data_fields=["G"], meta_fields=["size", "c"])
@dataclasses.dataclass(frozen=True)
class _TransposedAdjoint(physics.SeparableOperator):
    """The analytic operator with a layout bug: its adjoint returns the transposed HR map."""

    def adjoint(self, z):
        return jnp.swapaxes(super().adjoint(z), -1, -2)


def test_adjoint_residual_is_jittable_and_catches_a_wrong_adjoint():
    """Under ``jax.jit`` with the operator as an argument: about float32 rounding for the analytic,
    dense and per-sample operators (at most 1e-5 over four keys), above 1e-2 for a transposed adjoint."""
    analytic = physics.sampling_operator(3)
    operators = [analytic, physics.dense_operator(analytic), physics.PerSampleOperator(analytic)]
    keys = jax.random.split(jax.random.key(0, impl="rbg"), 4)  # rbg: compiles faster than threefry
    residual = jax.jit(lambda op, key: op.adjoint_residual(key))
    for op in operators:
        assert isinstance(op, physics.SamplingOperator)
        assert max(float(residual(op, key)) for key in keys) <= 1e-5
    wrong = _TransposedAdjoint(G=analytic.G, size=11, c=3)
    assert isinstance(wrong, physics.SamplingOperator)
    # its own pytree structure, so the jitted function cannot reuse the code compiled for its parent
    assert jax.tree_util.tree_structure(wrong) != jax.tree_util.tree_structure(analytic)
    assert min(float(residual(wrong, key)) for key in keys) > 1e-2
    assert not wrong.check_adjoint(keys[0])


def test_q_and_operator_inputs_of_a_network(data, small_net):
    """``q`` equal to the stored ``Q`` changes nothing, another ``q`` changes the output; the
    ``batch_exact`` mode wraps a given operator per sample and agrees with the batched mode."""
    net, variables = small_net
    images = data["images"]
    default = np.asarray(net.apply(variables, images))
    stored = variables["constants"]["q_init"]
    np.testing.assert_array_equal(net.apply(variables, images, q=stored), default)
    assert _max_rel(net.apply(variables, images, q=0.5 * stored), default) > 1e-2
    dense = physics.dense_operator(physics.sampling_operator(3))
    exact = net.clone(batch_exact=True)
    assert _max_rel(exact.apply(variables, images, operator=dense), default) <= 1e-5


def test_network_default_q_is_the_operator_pseudo_inverse(small_net):
    """The "constants" ``Q`` of a network created without ``q_init`` is physics.q_init with no labels
    and ridge 1e-3, to float32 rounding (1e-5 of its scale; the same program under ``jit`` measured
    bit-identical, and ridge 1e-6 would be 1e-2 away)."""
    _, variables = small_net
    ridge = models.layers.DEFAULT_Q_RIDGE
    assert ridge == 1e-3
    expected = jax.jit(lambda: physics.q_init(None, physics.sampling_operator(3), ridge=ridge))()
    scale = float(jnp.max(jnp.abs(expected)))
    np.testing.assert_allclose(variables["constants"]["q_init"], expected, rtol=0, atol=1e-5 * scale)


def test_derefnet_takes_the_operator_and_q():
    """Random parameters in DeRefNet's variable tree (its ``init`` compiles for ~20 s on a CPU)."""
    net = models.create("derefnet", c=1, stages=1, channels=4, residual_blocks=1)
    rng = np.random.default_rng(0)
    windows = rng.uniform(0, 255, (2, 3, 11, 11)).astype(np.float32)
    index = np.array([3, 8])
    shapes = jax.eval_shape(net.init, jax.random.PRNGKey(0), windows, index)
    params = jax.tree.map(lambda s: (0.1 * rng.normal(size=s.shape)).astype(s.dtype), shapes["params"])
    q = physics.q_init(None, physics.sampling_operator(1), ridge=models.layers.DEFAULT_Q_RIDGE)
    variables = {"params": params, "constants": {"q_init": q}}
    default = np.asarray(jax.jit(net.apply)(variables, windows, index))
    with_operator = jax.jit(lambda op: net.apply(variables, windows, index, operator=op))
    dense = physics.dense_operator(physics.sampling_operator(1))
    assert _max_rel(with_operator(dense), default) <= 1e-5
    wrong = physics.dense_operator(physics.sampling_operator(1, sigma=0.7))
    assert _max_rel(with_operator(wrong), default) > 1e-3
    with pytest.raises(ValueError, match="operator"):
        net.apply(variables, windows, index, operator=physics.sampling_operator(3))
    with pytest.raises(ValueError, match="q must have shape"):
        net.apply(variables, windows, index, q=jnp.zeros((121, 100)))


def test_a_wrong_operator_or_q_raises_a_clear_error(data, small_net):
    net, variables = small_net
    images = data["images"]
    with pytest.raises(ValueError, match=r"operator must map \[33, 33\] HR maps to \[11, 11\]"):
        net.apply(variables, images, operator=physics.sampling_operator(2))
    with pytest.raises(ValueError, match="operator"):
        net.init(jax.random.PRNGKey(0), images[:1], operator=physics.sampling_operator(3, size=9))
    with pytest.raises(TypeError, match="operator must be a csist_jax.physics.SamplingOperator"):
        net.apply(variables, images, operator=physics.sampling_matrix(3))
    with pytest.raises(ValueError, match="q must have shape"):
        net.apply(variables, images, q=jnp.zeros((33 * 33, 100)))


def test_register_operator_names_the_class_and_fields_it_cannot_register():
    class NotADataclass(physics.SamplingOperator):
        pass

    with pytest.raises(TypeError, match="NotADataclass must be a dataclass"):
        physics.register_operator(data_fields=[], meta_fields=[])(NotADataclass)

    @dataclasses.dataclass(frozen=True)
    class Partial(physics.SeparableOperator):
        pass

    with pytest.raises(ValueError, match=r"Partial must split its fields \['G', 'c', 'size'\]"):
        physics.register_operator(data_fields=["G"], meta_fields=["size"])(Partial)
    with pytest.raises(ValueError, match="must split its fields"):
        physics.register_operator(data_fields=["G", "size"], meta_fields=["size", "c"])(Partial)
