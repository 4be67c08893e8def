"""Models that do not use the operator or ``Q`` neither hold nor train them (``USES_PHYSICS``).

The super-resolution baselines (every baseline that is not an unfolding network, and TDAN) declare
``USES_PHYSICS = False``: ``init`` creates no ``"constants"`` ``q_init`` and no ``Q``-shaped parameter,
their ``forward`` takes the frames alone, and the training route's ``fit_constants`` leaves them
unchanged without calling ``physics.q_init``, while the unfolding networks, DeRefNet and the localisers
still get ``Q`` fitted. A network saved while the baselines still held a ``Q`` loads without it.
"""

from __future__ import annotations

import inspect

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from csist_jax import models, physics, train
from csist_jax.train import train as train_module

#: the super-resolution baselines: every baseline of the registry that is not an unfolding network
SR_NAMES = tuple(
    name
    for name, entry in models.REGISTRY.items()
    if entry.family == "baseline" and not issubclass(entry.cls, models.UnfoldingNetwork)
)
#: models that use Q (a few of each family; all of them are checked by the declaration test)
Q_NAMES = ("ista_net", "fista_net", "derefnet", "localizer", "window_localizer")


def _small(name: str):
    return models.create(name, c=3, **dict(models.REGISTRY[name].small))


def test_exactly_the_super_resolution_baselines_declare_no_physics():
    assert "srcnn" in SR_NAMES and "tdan" in SR_NAMES and "focus" in SR_NAMES and len(SR_NAMES) == 21
    uses = {name: entry.cls.USES_PHYSICS for name, entry in models.REGISTRY.items()}
    assert {name for name, used in uses.items() if not used} == set(SR_NAMES)
    for name in SR_NAMES:  # declared once on the shared base (TDAN, a window network, declares it itself)
        cls = models.REGISTRY[name].cls
        assert issubclass(cls, models.SuperResolutionNetwork) or name == "tdan", name


@pytest.mark.parametrize("name", SR_NAMES)
def test_a_super_resolution_baseline_holds_no_q(name):
    net = _small(name)
    inputs = models.example_inputs(net, 1, 3)
    variables = jax.eval_shape(net.init, jax.random.PRNGKey(0), *inputs)
    assert set(variables) == {"params"}, name
    q_shapes = {(net.hr**2, net.size**2), (net.size**2, net.hr**2)}
    assert not [p for p in jax.tree.leaves(variables["params"]) if tuple(p.shape) in q_shapes]
    forward = net.forward_windows if models.kinds.of(net).windows else net.forward
    assert not {"q", "operator", "op"} & set(inspect.signature(forward).parameters), name


def test_q_or_an_operator_given_to_a_super_resolution_baseline_is_an_error():
    net = _small("srcnn")
    images = jnp.zeros((1, 11, 11))
    variables = jax.eval_shape(net.init, jax.random.PRNGKey(0), images)
    q = np.zeros((33 * 33, 121), np.float32)
    with pytest.raises(TypeError, match=r"SRCNN uses neither Q nor the operator .*: q must be None"):
        jax.eval_shape(lambda v: net.apply(v, images, q=q), variables)
    with pytest.raises(TypeError, match="operator must be None"):
        jax.eval_shape(lambda v: net.apply(v, images, operator=physics.sampling_operator(3)), variables)
    with pytest.raises(TypeError, match="q_init must be None"):
        jax.eval_shape(net.clone(q_init=q).init, jax.random.PRNGKey(0), images)


def _config(name: str):
    cfg = train.default_config()
    cfg.model.name = name
    for key, value in models.REGISTRY[name].small.items():
        cfg.model[key] = value
    if models.REGISTRY[name].kind.windows:
        cfg.data.dataset, cfg.data.window = "seqcsist", 3
    return train.config.resolve(cfg)


def _training_arrays(windows: bool) -> dict:
    """Targets as the training route holds them: 8 frames, or 2 trajectories of 20 frames."""
    rng = np.random.default_rng(0)
    shape = (2, 20) if windows else (8,)
    targets = np.zeros(shape + (4, 3), np.float32)
    targets[..., 0, :2] = rng.uniform(1, 10, shape + (2,))
    targets[..., 0, 2] = 200.0
    return {"image": np.zeros(shape + (11, 11), np.uint8), "targets": targets}


def test_training_fits_no_q_for_a_super_resolution_baseline(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("physics.q_init called for a model that uses no Q")

    monkeypatch.setattr(physics, "q_init", refuse)
    for name in SR_NAMES:
        config = _config(name)
        module, _ = train_module._build_network(config, _training_arrays(config.data.window > 0))
        assert module.q_init is None and module == _small(name).clone(**_n_frames(module)), name


def _n_frames(module) -> dict:
    return {"n_frames": module.n_frames} if hasattr(module, "n_frames") else {}


@pytest.mark.parametrize("name", Q_NAMES)
def test_training_still_fits_q_for_the_models_that_use_it(name, monkeypatch):
    calls = []
    q_init = physics.q_init
    monkeypatch.setattr(physics, "q_init", lambda *a, **k: calls.append(1) or q_init(*a, **k))
    config = _config(name)
    arrays = _training_arrays(config.data.window > 0)
    module, _ = train_module._build_network(config, arrays)
    assert calls == [1]
    labels = physics.hr_label(arrays["targets"].reshape(-1, 4, 3), 3, 11)
    expected = np.asarray(q_init(labels, module.operator()))
    np.testing.assert_array_equal(module.q_init, expected)


def test_a_network_saved_with_an_unused_q_loads_without_it(tmp_path):
    """A super-resolution baseline saved when the baselines still held ``constants/q_init``: the
    constant is dropped on load, the parameters and outputs are those saved."""
    net = _small("srcnn")
    images = jnp.asarray(np.random.default_rng(1).uniform(0, 255, (2, 11, 11)), jnp.float32)
    variables = jax.jit(net.init)(jax.random.PRNGKey(3), images)
    old = {"params": variables["params"], "constants": {"q_init": np.ones((33 * 33, 121), np.float32)}}
    models.save_model(tmp_path / "old", "srcnn", 3, dict(models.REGISTRY["srcnn"].small), old)
    loaded, restored = models.load_checkpoint(tmp_path / "old")
    assert restored["constants"] == {}
    jax.tree.map(np.testing.assert_array_equal, restored["params"], variables["params"])
    apply = jax.jit(lambda module, v: module.apply(v, images), static_argnums=0)
    np.testing.assert_array_equal(apply(loaded, restored), apply(net, variables))


def test_a_training_state_saved_with_an_unused_q_resumes_without_it(tmp_path):
    """A training checkpoint of a super-resolution baseline written while it held ``constants/q_init``
    restores into the state it has now (no constants): the run resumes."""
    from csist_jax.train.checkpoints import Checkpoints

    one = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    state = {
        "step": jnp.int32(2),
        "params": {"w": jnp.arange(3.0)},
        "constants": {"q_init": jnp.ones((33 * 33, 121))},
    }
    old = Checkpoints(str(tmp_path / "checkpoints"), keep=2)
    old.save(2, state)
    old.wait()
    old.close()
    abstract = {
        "step": jax.ShapeDtypeStruct((), jnp.int32, sharding=one),
        "params": {"w": jax.ShapeDtypeStruct((3,), jnp.float32, sharding=one)},
        "constants": {},
    }
    restored, step = Checkpoints(str(tmp_path / "checkpoints"), keep=2).restore_latest(abstract)
    assert step == 2 and restored["constants"] == {}
    np.testing.assert_array_equal(restored["params"]["w"], state["params"]["w"])
