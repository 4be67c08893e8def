"""The unfolding networks: published sizes, the shared ISTA loop, batch independence, gradients."""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from csist_jax import models, physics, solvers
from csist_jax.models import layers
from csist_jax.train import losses
from tests import helpers
from tests.helpers import BATCH_RTOL, assert_batch_independent

PUBLISHED_PARAMS = {"ista_net": 171_090, "ista_net_plus": 336_978, "dista_net": 2_179_104}


@pytest.fixture(scope="module")
def data(frames6):
    return frames6


@pytest.fixture(scope="module")
def images(frames6):
    return frames6["images"]


def _abstract_init(module, size=11):
    x = jax.ShapeDtypeStruct((2, size, size), jnp.float32)
    return jax.eval_shape(module.init, jax.random.PRNGKey(0), x)


@pytest.mark.parametrize("name", sorted(PUBLISHED_PARAMS))
def test_parameter_counts_match_published_at_c3(name):
    assert models.param_count(_abstract_init(models.create(name, c=3))) == PUBLISHED_PARAMS[name]


def test_lista_parameter_count_matches_toolkit_structure():
    # 16 untied layers of W [1089, 1089], B [1089, 121] and a per-cell threshold [1089]
    assert models.param_count(_abstract_init(models.create("lista", c=3))) == 16 * (
        1089**2 + 1089 * 121 + 1089
    )


@pytest.mark.parametrize("c", [3, 5, 7])
@pytest.mark.parametrize("name", models.UNFOLDING_NAMES)
def test_any_ratio_and_stage_count_gives_hr_maps(name, c):
    module = models.create(name, c=c, stages=2)
    x = jax.ShapeDtypeStruct((2, 11, 11), jnp.float32)
    variables = jax.eval_shape(module.init, jax.random.PRNGKey(0), x)
    out, aux = jax.eval_shape(lambda v, x: module.apply(v, x, return_aux=True), variables, x)
    assert out.shape == (2, 11 * c, 11 * c)
    assert len(aux) == 2
    assert variables["constants"]["q_init"].shape == ((11 * c) ** 2, 121)


def test_published_stage_counts_per_ratio():
    assert models.create("dista_net", c=3).stages == 6
    assert models.create("dista_net", c=7).stages == 4
    assert models.create("ista_net", c=5).stages == 9
    assert models.create("lista").stages == 16


def test_unrolled_loop_with_untrained_stages_is_analytic_ista(images):
    """The loop the networks run, with analytic stages and x_0 = 0, reproduces solvers.ista (tol 1e-4)."""
    op = physics.sampling_operator(3)
    step = solvers.default_step(op)
    lam, iterations = 20.0, 30
    stages = [layers.analytic_ista_stage(step, lam)] * iterations
    ours, aux = layers.unroll(stages, jnp.zeros((len(images), 33, 33)), jnp.asarray(images), op)
    reference = solvers.ista(images, op, lam=lam, iterations=iterations)
    assert len(aux) == iterations
    np.testing.assert_allclose(ours, reference, rtol=1e-4, atol=1e-4)


def _network(name: str, images, **fields):
    """``(module, variables, inputs)`` of a network with 2 stages and the published layer widths
    (DeRefNet: c = 1, 8 channels, one residual block, 5-frame windows); small enough to compile fast."""
    rng = np.random.default_rng(7)
    if name == "derefnet":
        fields = {"stages": 2, "channels": 8, "residual_blocks": 1, **fields}
        module = models.create(name, c=1, **fields)
        inputs = (rng.uniform(0, 255, (6, 5, 11, 11)).astype(np.float32), np.array([2, 9, 4, 17, 11, 6]))
    else:
        module = models.create(name, **{"stages": 2, **fields})
        inputs = (np.asarray(images),)
    variables = helpers.init(module, *(a[:1] for a in inputs), seed=1)
    return module, variables, inputs


@pytest.fixture(scope="module")
def network(images):
    """``network(name)``: :func:`_network` at its defaults, made once per module, so that the tests on
    the same network share its compiled programs."""
    made = {}

    def get(name):
        if name not in made:
            made[name] = _network(name, images)
        return made[name]

    return get


ALL_NETWORKS = models.UNFOLDING_NAMES + ("derefnet",)  # the zoo has its own tests (test_baselines, test_tdan)


@pytest.mark.parametrize("name", ALL_NETWORKS)
def test_sample_output_does_not_depend_on_its_batch(name, network):
    """Alone, in a batch of 6, reversed, and beside saturated frames: equal to float32 rounding
    (BATCH_RTOL of the map's scale), with the tuned compiler options."""
    module, variables, inputs = network(name)
    apply = models.jit(module.apply, inference_of=module)
    assert_batch_independent(lambda *a: apply(variables, *a), inputs, saturated=True)


@pytest.mark.parametrize("name", ALL_NETWORKS)
def test_optimised_programs_have_no_loop_over_the_batch(name, images):
    """The compiled inference and training-gradient programs hold no ``while`` loop (the batch runs as
    one batched program); the opt-in ``batch_exact`` mode, which loops over samples, does."""
    module, variables, inputs = _network(name, images, stages=1)

    def loss(params, *x):
        out = module.apply({"params": params, "constants": variables["constants"]}, *x)
        return jnp.mean(out**2)

    def programs(module_):
        apply = models.jit(module_.apply).lower(variables, *inputs).compile().as_text()
        grad = models.jit(jax.grad(loss)).lower(variables["params"], *inputs).compile().as_text()
        return apply, grad

    def has_loop(hlo: str) -> bool:  # an HLO while instruction: "%while.3 = (...) while(%tuple.2), ..."
        return re.search(r"\swhile\(", hlo) is not None

    for text in programs(module):
        assert not has_loop(text)
    exact = module.clone(batch_exact=True)
    assert has_loop(models.jit(exact.apply).lower(variables, *inputs).compile().as_text())


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="bit-identity is promised on XLA:CPU only")
@pytest.mark.parametrize("name", models.UNFOLDING_NAMES)
def test_batch_exact_mode_is_bit_identical_alone_and_in_any_batch_on_cpu(name, images):
    """The opt-in per-sample loops, under ``jax.jit`` with XLA:CPU's default options (other compiler
    options may fuse a batch of one differently: bit-identity is not promised there)."""
    module = models.create(name, stages=1, batch_exact=True)
    variables = helpers.init(module, images[:1], seed=1)
    apply = jax.jit(module.apply)
    full = np.asarray(apply(variables, images))
    for i in range(len(images)):
        np.testing.assert_array_equal(np.asarray(apply(variables, images[i : i + 1]))[0], full[i])
    mixed = np.concatenate([images[:3], np.zeros_like(images[:2]) + 255.0])
    np.testing.assert_array_equal(np.asarray(apply(variables, mixed))[:3], full[:3])
    default = models.create(name, stages=1)
    np.testing.assert_allclose(
        full, jax.jit(default.apply)(variables, images), rtol=0, atol=BATCH_RTOL * np.abs(full).max()
    )


@pytest.mark.parametrize("name", ["ista_net", "dista_net"])
def test_bfloat16_images_and_variables_give_a_bfloat16_forward_pass(name, images, network):
    module, variables, _ = network(name)  # 2 stages, published widths
    apply = jax.jit(module.apply)  # one compile per dtype instead of op-by-op dispatch
    full = np.asarray(apply(variables, images))
    half = jax.tree.map(lambda a: a.astype(jnp.bfloat16), variables)
    out = apply(half, images.astype(jnp.bfloat16))
    assert out.dtype == jnp.bfloat16
    # bfloat16 keeps 8 significant bits: agreement to a few percent of the map's scale
    assert np.max(np.abs(np.asarray(out, np.float32) - full)) <= 0.1 * np.max(np.abs(full))


def test_dynamic_conv3_is_a_per_sample_cross_correlation():
    key1, key2 = jax.random.split(jax.random.PRNGKey(0))
    r = jax.random.normal(key1, (3, 9, 9))
    kernels = jax.random.normal(key2, (3, 3, 3))
    ours = layers.dynamic_conv3(r, kernels)
    for i in range(3):
        ref = jax.lax.conv_general_dilated(
            r[i][None, None], kernels[i][None, None], (1, 1), "SAME", precision="highest"
        )[0, 0]
        np.testing.assert_allclose(ours[i], ref, rtol=1e-5, atol=1e-5)


def test_depthwise3x3_and_its_hand_written_gradient_match_autodiff_of_the_convolution():
    """Forward against lax's grouped convolution; both gradients against autodiff of it (float64)."""
    with jax.enable_x64(True):
        kx, kk, kg = jax.random.split(jax.random.PRNGKey(5), 3)
        x = jax.random.normal(kx, (3, 7, 9, 4), jnp.float64)
        kernel = jax.random.normal(kk, (3, 3, 4), jnp.float64)
        g = jax.random.normal(kg, (3, 7, 9, 4), jnp.float64)

        def grouped(x, kernel):
            dn = ("NHWC", "HWIO", "NHWC")
            return jax.lax.conv_general_dilated(
                x, kernel[:, :, None, :], (1, 1), "SAME", dimension_numbers=dn, feature_group_count=4
            )

        np.testing.assert_allclose(layers.depthwise3x3(x, kernel), grouped(x, kernel), rtol=1e-12, atol=1e-12)
        ours = jax.vjp(layers.depthwise3x3, x, kernel)[1](g)
        reference = jax.vjp(grouped, x, kernel)[1](g)
        for a, b in zip(ours, reference):
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("shape", [(2, 5, 7, 3), (7, 64), (1, 1, 1, 1), (13, 5, 2)])
def test_channel_sum_is_a_sum_over_all_but_the_last_axis(shape):
    g = np.random.default_rng(0).normal(size=shape)
    np.testing.assert_allclose(layers.channel_sum(jnp.asarray(g)), g.reshape(-1, shape[-1]).sum(0), rtol=1e-5)


def test_compiler_options_are_cpu_only_and_yield_to_xla_flags(monkeypatch):
    assert models.compiler_options("gpu") == {}
    assert models.compiler_options("tpu") == {}
    monkeypatch.delenv("XLA_FLAGS", raising=False)
    assert models.compiler_options("cpu") == models.CPU_OPTIONS
    fusions = models.INFERENCE_FUSIONS["ISTANet"]
    assert models.compiler_options("cpu", inference_of=models.create("ista_net")) == {
        "xla_cpu_experimental_ynn_fusion_type": fusions
    }
    assert models.compiler_options("cpu", inference_of="DISTANet") == models.CPU_OPTIONS
    monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_experimental_ynn_fusion_type=")
    assert models.compiler_options("cpu") == {}


@pytest.mark.parametrize("name", ["ista_net", "dista_net"])
def test_models_jit_computes_what_jax_jit_computes(name, images, network):
    """The compiler options change which kernels run, not the result (float32 rounding)."""
    module, variables, _ = network(name)  # the programs of the batch and bfloat16 tests, compiled once
    ours = models.jit(module.apply, inference_of=module)(variables, images)
    reference = jax.jit(module.apply)(variables, images)
    scale = float(jnp.max(jnp.abs(reference)))
    np.testing.assert_allclose(ours, reference, rtol=0, atol=1e-5 * scale)


def _loss(module, params, constants, x, labels):
    return losses.loss_fn(module, {"params": params, "constants": constants}, x, labels)[0]


@pytest.mark.parametrize("name", models.UNFOLDING_NAMES)
def test_gradients_reach_every_parameter(name, data):
    x = jnp.asarray(data["image"][:4], jnp.float32)
    labels = physics.hr_label(data["targets"][:4], 3)
    module = models.create(name, stages=1)
    variables = helpers.init(module, x, seed=2)
    grad = jax.jit(jax.grad(_loss, argnums=1), static_argnums=0)
    grads = grad(module, variables["params"], variables["constants"], x, labels)
    flat = jax.tree_util.tree_leaves_with_path(grads)
    assert flat
    for path, g in flat:
        g = np.asarray(g)
        assert np.all(np.isfinite(g)), jax.tree_util.keystr(path)
        assert np.any(g != 0), f"no gradient reaches {jax.tree_util.keystr(path)}"


@pytest.mark.slow
def test_dista_kernel_mlp_gradient_matches_finite_differences(data):
    """Directional derivative along the kernel-MLP parameters: reverse mode (the training path) vs
    central differences in float64.

    Step h = sqrt(eps) * scale; agreement to a relative 1e-6 (the loss is smooth in these parameters).
    """
    with jax.enable_x64(True):
        x = jnp.asarray(data["image"][:2], jnp.float64)
        labels = jnp.asarray(physics.hr_label(data["targets"][:2], 3), jnp.float64)
        module = models.create("dista_net", stages=2, channels=8, hidden=32)
        variables = helpers.init(module, x, seed=3)
        variables = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), variables)
        params, constants = variables["params"], variables["constants"]
        leaves, treedef = jax.tree_util.tree_flatten_with_path(params)
        keys = jax.random.split(jax.random.PRNGKey(4), len(leaves))
        direction = treedef.unflatten(
            [
                jax.random.normal(k, p.shape, jnp.float64)
                if "kernel_in" in jax.tree_util.keystr(path) or "kernel_out" in jax.tree_util.keystr(path)
                else jnp.zeros_like(p)
                for k, (path, p) in zip(keys, leaves)
            ]
        )

        @jax.jit
        def f(t):
            moved = jax.tree.map(lambda p, d: p + t * d, params, direction)
            return _loss(module, moved, constants, x, labels)

        analytic = jax.jit(jax.grad(f))(0.0)
        h = float(np.sqrt(np.finfo(np.float64).eps))
        numeric = (f(h) - f(-h)) / (2 * h)
        assert abs(float(analytic)) > 0
        np.testing.assert_allclose(float(numeric), float(analytic), rtol=1e-6)


def test_q_init_is_a_constant_not_a_parameter(images):
    q = np.full((1089, 121), 0.01, np.float32)
    module = models.create("ista_net", stages=1, q_init=q)
    variables = module.init(jax.random.PRNGKey(0), images)
    np.testing.assert_array_equal(variables["constants"]["q_init"], q)
    assert "q_init" not in str(jax.tree_util.tree_structure(variables["params"]))


def test_lista_first_layer_starts_as_the_q_gradient_step(images):
    """W = I - Q Phi, B = Q: before the threshold the first layer computes x - Q (Phi x - z) (tol 1e-3)."""
    module = models.create("lista", stages=1, lam=0.0)
    variables = module.init(jax.random.PRNGKey(0), images)
    q = variables["constants"]["q_init"]
    op = physics.sampling_operator(3)
    x0 = layers.linear_init(q, jnp.asarray(images), 33)
    expected = x0 - layers.linear_init(q, op.forward(x0) - images, 33)
    np.testing.assert_allclose(module.apply(variables, images), expected, rtol=1e-3, atol=1e-3)


def test_saved_network_loads_back_identically(tmp_path, images):
    module = models.create("ista_net_plus", stages=1)
    variables = module.init(jax.random.PRNGKey(0), images)
    path = models.save_model(tmp_path / "net", "ista_net_plus", 3, {"stages": 1}, variables, {"note": "test"})
    loaded, loaded_vars = models.load_checkpoint(path)
    assert models.read_meta(path)["info"] == {"note": "test"}
    np.testing.assert_array_equal(loaded.apply(loaded_vars, images), module.apply(variables, images))


def test_bad_arguments_raise_clear_errors(images, tmp_path):
    with pytest.raises(ValueError, match="name"):
        models.create("unet")
    with pytest.raises(TypeError, match="unknown config field"):
        models.create("ista_net", chanels=16)
    with pytest.raises(ValueError, match="stages"):
        models.create("ista_net", stages=0)
    module = models.create("ista_net", stages=1)
    with pytest.raises(ValueError, match="images"):
        module.init(jax.random.PRNGKey(0), images[:, :10])
    with pytest.raises(ValueError, match="q_init"):
        models.create("ista_net", stages=1, q_init=np.zeros((5, 5))).init(jax.random.PRNGKey(0), images)
    with pytest.raises(FileNotFoundError, match="model.json"):
        models.load_checkpoint(tmp_path)
