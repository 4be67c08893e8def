"""The comparison zoo (csist_jax.models.baselines): every baseline at its small test size.

Per model: HR maps of the right shape at c = 3 and 5, one Adam step on the training loss lowers it,
a sample's output does not depend on its batch, and the parameter count at the published size (c = 3)
equals the count the model file states (PARAMS_C3; docs/baselines.md sets it beside the published one).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from csist_jax import models
from csist_jax.models import baselines
from csist_jax.train import losses
from tests import helpers
from tests.helpers import assert_adam_step_lowers, assert_batch_independent


def _small(name, c=3):
    module = models.create(name, c=c, **baselines.small_config(name))
    return module


@pytest.mark.parametrize("c", [3, 5])
@pytest.mark.parametrize("name", models.BASELINE_NAMES)
def test_hr_maps_at_c3_and_c5(name, c):
    module = _small(name, c)
    x = jax.ShapeDtypeStruct((2, 11, 11), jnp.float32)
    variables = jax.eval_shape(module.init, jax.random.PRNGKey(0), x)
    out, aux = jax.eval_shape(lambda v, x: module.apply(v, x, return_aux=True), variables, x)
    assert out.shape == (2, 11 * c, 11 * c)
    assert out.dtype == jnp.float32
    assert isinstance(aux, list)
    if module.USES_PHYSICS:  # the unfolding baselines hold Q; the super-resolution ones hold none
        assert variables["constants"]["q_init"].shape == ((11 * c) ** 2, 121)
    else:
        assert "constants" not in variables


@pytest.mark.parametrize("name", models.BASELINE_NAMES)
def test_parameter_count_at_published_size(name):
    module = models.create(name, c=3)
    x = jax.ShapeDtypeStruct((1, 11, 11), jnp.float32)
    variables = jax.eval_shape(module.init, jax.random.PRNGKey(0), x)
    assert models.param_count(variables) == baselines.params_c3(name)


@pytest.mark.parametrize("name", models.BASELINE_NAMES)
def test_one_training_step_lowers_the_loss_and_batch_independence(name, frames6):
    module = _small(name)
    x, labels = jnp.asarray(frames6["images"]), jnp.asarray(frames6["labels"])
    variables = helpers.init(module, x[:1], seed=1)  # a short compile (helpers.FAST_PRNG)
    constants = variables.get("constants", {})

    def loss(params):
        return losses.loss_fn(module, {"params": params, "constants": constants}, x, labels)[0]

    assert_adam_step_lowers(loss, variables["params"])
    # batch independence: each sample alone, and the batch reversed, match the full batch
    apply = jax.jit(module.apply)
    assert_batch_independent(lambda *a: apply(variables, *a), (x,))


def test_unknown_baseline_names_the_argument():
    with pytest.raises(ValueError, match="name must be one of"):
        models.create("no_such_net")
    with pytest.raises(ValueError, match="not a baseline"):
        baselines.small_config("no_such_net")


def test_complexity_counts_parameters_and_macs_of_a_convolution():
    """One 3x3 conv 1 -> 64 at 33x33 plus bias: MACs >= 33*33*64*9 and params = 64*9 + 64."""

    import flax.linen as nn

    class OneConv(models.MapNetwork):
        def forward(self, z, q, operator):
            y = nn.Conv(1, (3, 3), padding="SAME")(jnp.repeat(jnp.repeat(z, 3, 1), 3, 2)[..., None])
            return y[..., 0], []

    result = models.complexity(OneConv(c=3))
    assert result["params"] == 9 + 1
    assert 33 * 33 * 9 <= result["macs"] <= 33 * 33 * 9 * 1.5


def test_the_adding_a_method_guide_runs_as_written(monkeypatch):
    """docs/adding_a_method.md: its python blocks run top to bottom and its checks hold."""
    import pathlib
    import re
    import sys
    import types

    page = pathlib.Path(helpers.ROOT) / "docs" / "adding_a_method.md"
    blocks = re.findall(r"^```python\n(.*?)^```", page.read_text(), flags=re.S | re.M)
    assert len(blocks) >= 2
    page_module = types.ModuleType("adding_a_method_docs")  # dataclasses look their module up
    monkeypatch.setitem(sys.modules, page_module.__name__, page_module)
    namespace = page_module.__dict__
    for k, block in enumerate(blocks):
        exec(compile(block, f"{page.name}[block {k}]", "exec"), namespace)
    guide = namespace["SRCNN"](c=3)  # the page's class: the same parameters as the registered one
    x = jax.ShapeDtypeStruct((1, 11, 11), jnp.float32)  # a count needs the shapes, not a compile
    assert (
        models.param_count(jax.eval_shape(guide.init, jax.random.PRNGKey(0), x))
        == namespace["PARAMS_C3"]["srcnn"]
    )


@pytest.mark.parametrize("template", ["sobelx", "sobely", "laplacian"])
def test_egasr_folded_edge_convolution_equals_the_toolkits_form(template):
    """EGASR's edge convolution in the toolkit's form: a 1x1 conv, its output padded by one pixel with
    its own bias ``b0``, the fixed depthwise template, a per-channel scale and a bias. The folded 3x3
    kernel that ``EdgeConv`` returns gives the same output (float64), with ``b0`` and the scale of order 1."""
    from csist_jax.models.baselines import egasr

    with jax.enable_x64(True):
        kx, kp, kb, ks = jax.random.split(jax.random.PRNGKey(3), 4)
        x = jax.random.normal(kx, (2, 7, 9, 5), jnp.float64)
        module = egasr.EdgeConv(4, template)
        params = jax.tree.map(lambda a: a.astype(jnp.float64), module.init(kp, 5)["params"])
        params = dict(params, b0=jax.random.normal(kb, (4,), jnp.float64))
        params["scale"] = jax.random.normal(ks, (4,), jnp.float64)
        kernel, bias = module.apply({"params": params}, 5)
        ours = (
            jax.lax.conv_general_dilated(
                x, kernel, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
            )
            + bias
        )

        y0 = jnp.einsum("nhwi,io->nhwo", x, params["k0"][0, 0]) + params["b0"]
        padded = jnp.broadcast_to(params["b0"], (2, 9, 11, 4)).at[:, 1:-1, 1:-1].set(y0)
        t = egasr._TEMPLATES[template]
        y1 = sum(t[i, j] * padded[:, i : i + 7, j : j + 9] for i in range(3) for j in range(3))
        reference = y1 * params["scale"] + params["bias"]
        np.testing.assert_allclose(ours, reference, rtol=0, atol=1e-10 * float(jnp.max(jnp.abs(reference))))
