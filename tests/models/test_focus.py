"""FOCUS (csist_jax.models.baselines.focus): the toolkit's loss on a hand-computed case, and the aux
outputs the loss reads."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from csist_jax import models
from csist_jax.models import baselines
from csist_jax.models.baselines.focus import ENERGY_WEIGHT, SPARSITY_WEIGHT, focus_loss
from tests import helpers
from tests.helpers import assert_adam_step_lowers


def test_focus_loss_by_hand():
    """Two 2x2 maps: squared errors 0,1,0,4 | 0,0,0,4 -> mse 9/8; map totals 2, 3 against frame totals
    5, 1 -> energy (3 + 2)/2 = 2.5; |x| sums to 7 over 8 cells -> sparsity 0.875;
    loss = 1.125 + 0.1 * 2.5 + 0.01 * 0.875 = 1.38375."""
    maps = jnp.array([[[1.0, -1.0], [0.0, 2.0]], [[0.0, 0.0], [0.0, 3.0]]])
    labels = jnp.array([[[1.0, 0.0], [0.0, 0.0]], [[0.0, 0.0], [0.0, 1.0]]])
    aux = [{"mask": jnp.ones_like(maps), "lr_energy": jnp.array([5.0, 1.0])}, {"residual": maps}]
    loss, parts = focus_loss(maps, aux, labels)
    assert ENERGY_WEIGHT == 0.1 and SPARSITY_WEIGHT == 0.01
    np.testing.assert_allclose(float(parts["mse"]), 1.125, rtol=1e-7)
    np.testing.assert_allclose(float(parts["energy"]), 2.5, rtol=1e-7)
    np.testing.assert_allclose(float(parts["sparsity"]), 0.875, rtol=1e-7)
    np.testing.assert_allclose(float(loss), 1.38375, rtol=1e-6)
    # other weights
    loss2, _ = focus_loss(maps, aux, labels, energy_weight=1.0, sparsity_weight=0.0)
    np.testing.assert_allclose(float(loss2), 1.125 + 2.5, rtol=1e-6)


def test_focus_loss_needs_the_frame_energy():
    maps = jnp.zeros((1, 2, 2))
    with pytest.raises(KeyError, match="lr_energy"):
        focus_loss(maps, [{"mask": maps}], maps)


def test_focus_aux_and_one_step_on_its_own_loss():
    module = models.create("focus", c=3, **baselines.small_config("focus"))
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.uniform(0, 255, (3, 11, 11)).astype(np.float32))
    labels = jnp.zeros((3, 33, 33)).at[:, 16, 16].set(240.0)
    variables = helpers.init(module, x[:1])
    maps, aux = jax.jit(module.apply, static_argnames="return_aux")(variables, x, return_aux=True)
    assert maps.shape == (3, 33, 33) and len(aux) == 2
    np.testing.assert_allclose(np.asarray(aux[0]["lr_energy"]), np.asarray(x).sum(axis=(1, 2)), rtol=1e-6)
    for a in aux:
        assert a["intensity"].shape == a["mask"].shape == (3, 33, 33)
        assert float(jnp.min(a["mask"])) >= 0.0 and float(jnp.max(a["mask"])) <= 1.0
        assert "sym" not in a
    # the map is the activated coarse map plus the refinement
    prelu = variables["params"]["prelu"]["alpha"]
    act = jnp.where(aux[0]["coarse"] >= 0, aux[0]["coarse"], prelu * aux[0]["coarse"])
    np.testing.assert_allclose(np.asarray(maps), np.asarray(act + aux[1]["residual"]), rtol=1e-5, atol=1e-4)

    constants = variables.get("constants", {})  # none: FOCUS holds no Q

    def loss(params):
        out, a = module.apply({"params": params, "constants": constants}, x, return_aux=True)
        return focus_loss(out, a, labels)[0]

    assert_adam_step_lowers(loss, variables["params"])
