"""A few training steps lower the loss and move every parameter, for every network.

Every network, DeRefNet included, goes through the project's one update
(``csist_jax.train.make_train_step``), which optimises the objectives of ``csist_jax.train.losses``.
A no-op or partial update (a parameter group the gradient never reaches, an optimiser that is not
applied) fails here.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from csist_jax import models, physics, train
from csist_jax.data import seqcsist
from csist_jax.train import losses
from tests import helpers

C = 1  # the properties hold at any c; c = 1 keeps each case to a few seconds on a CPU
STEPS = 5
LEARNING_RATE = 1e-3
#: small versions of each single-frame network (one stage holds every parameter group; fewer channels)
SMALL = {
    "ista_net": {"stages": 1, "channels": 4},
    "ista_net_plus": {"stages": 1, "channels": 4},
    "dista_net": {"stages": 1, "channels": 4, "hidden": 16},
    "lista": {"stages": 1},
}


def _unchanged_leaves(before, after) -> list[str]:
    """Paths of the parameter leaves of ``after`` equal to their value in ``before``."""
    flat_before = dict(jax.tree_util.tree_flatten_with_path(before)[0])
    return [
        jax.tree_util.keystr(path)
        for path, leaf in jax.tree_util.tree_flatten_with_path(after)[0]
        if np.array_equal(np.asarray(leaf), np.asarray(flat_before[path]))
    ]


@pytest.fixture(scope="module")
def batch():
    """8 stored images of random CSIST-100K-like scenes (5 targets each), their targets and HR labels."""
    rng = np.random.default_rng(0)
    targets = np.concatenate([rng.uniform(2, 8, (8, 5, 2)), rng.uniform(220, 250, (8, 5, 1))], -1)
    targets = targets.astype(np.float32)
    images = np.asarray(physics.quantize(physics.render(targets)), np.float32)
    return images, targets, np.asarray(physics.hr_label(targets, C))


def test_every_single_frame_network_is_covered():
    assert set(SMALL) == set(models.UNFOLDING_NAMES)


@pytest.mark.parametrize("name", sorted(SMALL))
def test_training_steps_lower_the_loss_and_move_every_parameter(name, batch):
    images, targets, labels = batch
    module = models.create(name, c=C, **SMALL[name])
    variables = helpers.init(module, images[:1])
    before = jax.tree.map(np.array, variables["params"])
    optimizer = optax.adam(LEARNING_RATE)
    mesh = train.make_mesh()
    step = train.make_train_step(module, optimizer, train.default_config(), mesh)
    # on the mesh as the step returns them (one compile); copied, since the step donates its state
    state = jax.device_put(
        jax.tree.map(jnp.copy, train.init_state(variables, optimizer)), NamedSharding(mesh, P())
    )
    sharded = NamedSharding(mesh, P("data"))
    images_on, targets_on = jax.device_put(images, sharded), jax.device_put(targets, sharded)
    reported = []
    for _ in range(STEPS):
        state, measured = step(state, images_on, targets_on)
        reported.append(float(measured["loss"]))

    loss = jax.jit(lambda params: losses.loss_fn(module, {**variables, "params": params}, images, labels)[0])
    initial, final = float(loss(before)), float(loss(state["params"]))
    # the step optimises the loss module's objective: its first report is that loss at the start
    np.testing.assert_allclose(reported[0], initial, rtol=1e-5)
    assert np.all(np.isfinite(reported)), reported
    assert final < 0.99 * initial, (initial, final, reported)
    assert int(state["step"]) == STEPS
    assert _unchanged_leaves(before, state["params"]) == []


def test_derefnet_training_steps_lower_the_loss_and_move_every_parameter():
    cut = seqcsist.windows(seqcsist.generate(seed=0, n_trajectories=1))
    pick = np.arange(0, 16, 4)  # 4 windows spread along the trajectory
    windows = np.asarray(cut["image"][pick], np.float32)
    index = np.asarray(cut["frame"][pick])
    targets = np.asarray(cut["targets"][pick])
    labels = physics.hr_label(targets, C)
    net = models.create("derefnet", c=C, stages=1, channels=4, residual_blocks=1)
    variables = helpers.init(net, windows, index)
    before = jax.tree.map(np.array, variables["params"])
    optimizer = optax.adam(LEARNING_RATE)
    mesh = train.make_mesh()
    config = train.default_config()
    config.model.name, config.data.window, config.data.dataset = "derefnet", 5, "seqcsist"
    step = train.make_train_step(net, optimizer, config, mesh)
    state = jax.device_put(
        jax.tree.map(jnp.copy, train.init_state(variables, optimizer)), NamedSharding(mesh, P())
    )
    sharded = NamedSharding(mesh, P("data"))
    inputs = [jax.device_put(x, sharded) for x in (windows, targets, index)]
    reported = []
    for _ in range(STEPS):
        state, measured = step(state, *inputs)
        reported.append(float(measured["loss"]))

    @jax.jit
    def loss(p):
        out, aux = net.apply({**variables, "params": p}, windows, index, return_aux=True)
        return losses.derefnet_loss(out, aux, labels)[0]

    initial, final = float(loss(before)), float(loss(state["params"]))
    np.testing.assert_allclose(reported[0], initial, rtol=1e-5)
    assert np.all(np.isfinite(reported)), reported
    assert final < 0.99 * initial, (initial, final, reported)
    assert _unchanged_leaves(before, state["params"]) == []
