"""Analytic ISTA/FISTA: agreement with a plain numpy ISTA, convergence, batch independence, one image or
a batch, warm starts, composition with jit/vmap/grad, errors."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from csist_jax import physics, solvers


def _numpy_ista(z, A, lam, step, iterations, nonneg):
    x = np.zeros(A.shape[1])
    for _ in range(iterations):
        r = x - step * A.T @ (A @ x - z)
        x = (
            np.maximum(r - step * lam, 0.0)
            if nonneg
            else np.sign(r) * np.maximum(np.abs(r) - step * lam, 0.0)
        )
    return x


@pytest.fixture(scope="module")
def images(frames6):
    return jnp.asarray(frames6["images"])


@pytest.mark.parametrize("nonneg", [True, False])
def test_ista_matches_plain_numpy_ista(images, nonneg):
    with jax.enable_x64(True):
        op = physics.sampling_operator(3)
        A = np.asarray(op.matrix())
        step = 1.0 / np.linalg.norm(A, 2) ** 2
        maps = solvers.ista(images.astype(jnp.float64), op, 5.0, 30, step=step, nonneg=nonneg)
        for k in range(2):
            ref = _numpy_ista(np.asarray(images[k], np.float64).ravel(), A, 5.0, step, 30, nonneg)
            np.testing.assert_allclose(np.asarray(maps[k]).ravel(), ref, rtol=1e-9, atol=1e-9)


def test_fista_descends_faster_than_ista(images):
    op = physics.sampling_operator(3)
    lam = 5.0
    f_ista = solvers.objective(solvers.ista(images, op, lam, 50), images, op, lam)
    f_fista = solvers.objective(solvers.fista(images, op, lam, 50), images, op, lam)
    f_long = solvers.objective(solvers.fista(images, op, lam, 2000), images, op, lam)
    assert np.all(np.asarray(f_fista) <= np.asarray(f_ista) + 1e-3)
    # FISTA's gap to the optimum after 50 steps is well below ISTA's
    gap_ista = np.asarray(f_ista - f_long)
    gap_fista = np.asarray(f_fista - f_long)
    assert np.mean(gap_fista) < 0.5 * np.mean(gap_ista)


def test_ista_objective_is_monotone(images):
    op = physics.sampling_operator(3)
    values = [
        float(solvers.objective(solvers.ista(images, op, 5.0, k), images, op, 5.0).sum()) for k in (5, 10, 20)
    ]
    assert values[0] >= values[1] >= values[2]


def test_nonnegative_variant_gives_nonnegative_maps(images):
    op = physics.sampling_operator(3)
    assert float(solvers.fista(images, op, 1.0, 40, nonneg=True).min()) >= 0.0
    assert float(solvers.fista(images, op, 1.0, 40, nonneg=False).min()) < 0.0


def test_output_of_an_image_does_not_depend_on_its_batch(images):
    op = physics.sampling_operator(3)
    whole = solvers.fista(images, op, 5.0, 40)
    alone = solvers.fista(images[2:3], op, 5.0, 40)
    np.testing.assert_allclose(whole[2], alone[0], rtol=1e-5, atol=1e-4)


def test_recovers_a_target_on_the_grid():
    op = physics.sampling_operator(3)
    label = physics.hr_label(jnp.array([[[5.0, 4.0 + 1 / 3, 240.0]]]), 3)
    image = op.forward(label)
    est = solvers.fista(image, op, 0.5, 3000)
    assert np.unravel_index(int(jnp.argmax(est[0])), (33, 33)) == (16, 14)
    assert float(est[0].sum()) == pytest.approx(240.0, rel=0.05)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"images": jnp.zeros((2, 12, 11))}, "images"),
        ({"images": jnp.zeros((11,))}, "images"),
        ({"x0": jnp.zeros((2, 33, 32))}, "x0"),
        ({"x0": jnp.zeros((33, 33))}, "x0"),
        ({"images": jnp.full((1, 11, 11), jnp.nan)}, "images"),
        ({"lam": -1.0}, "lam"),
        ({"iterations": 0}, "iterations"),
    ],
)
def test_bad_input_names_the_argument(kwargs, match):
    args = {
        "images": jnp.zeros((2, 11, 11)),
        "operator": physics.sampling_operator(3),
        "lam": 1.0,
        "iterations": 5,
    }
    args.update(kwargs)
    for solver in (solvers.ista, solvers.fista):
        with pytest.raises((ValueError, TypeError), match=match):
            solver(**args)


@pytest.mark.parametrize("solver", [solvers.ista, solvers.fista])
def test_one_image_equals_its_row_of_a_batch_of_any_leading_shape(images, solver):
    op = physics.sampling_operator(3)
    batch = solver(images, op, 5.0, 30)
    one = solver(images[2], op, 5.0, 30)
    assert one.shape == (33, 33)
    np.testing.assert_allclose(one, batch[2], rtol=1e-5, atol=1e-4)
    grid = solver(images.reshape(2, 3, 11, 11), op, 5.0, 30)
    assert grid.shape == (2, 3, 33, 33)
    np.testing.assert_allclose(grid.reshape(6, 33, 33), batch, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("solver", [solvers.ista, solvers.fista])
def test_warm_start_from_a_converged_solution_stays_put(images, solver):
    with jax.enable_x64(True):
        op = physics.sampling_operator(3)
        z = images.astype(jnp.float64)
        converged = solvers.fista(z, op, 5.0, 5000)
        again = solver(z, op, 5.0, 20, x0=converged)
        cold = solver(z, op, 5.0, 20)
        # the iteration converges slowly (Phi is ill-conditioned): 5000 FISTA steps are converged to
        # ~1e-5 of the maps' scale, and 20 more steps from there move them by about that much
        scale = float(jnp.max(converged))
        drift = float(jnp.max(jnp.abs(again - converged)))
        assert drift < 3e-5 * scale, (drift, scale)
        assert float(jnp.max(jnp.abs(cold - converged))) > 1e4 * drift  # 20 cold steps are far off
        one = solver(z[0], op, 5.0, 1, x0=converged[0])
        assert float(jnp.max(jnp.abs(one - converged[0]))) < 3e-5 * scale


def test_solvers_compose_with_jit_vmap_and_grad(images):
    op = physics.sampling_operator(3)
    expected = solvers.fista(images, op, 5.0, 40)
    mapped = jax.jit(jax.vmap(lambda z: solvers.fista(z, op, 5.0, 40)))(images)
    np.testing.assert_allclose(mapped, expected, rtol=1e-5, atol=1e-4)
    jitted = jax.jit(lambda z, lam, x0: solvers.ista(z, op, lam, 40, x0=x0))(images, 5.0, expected)
    np.testing.assert_allclose(jitted, solvers.ista(images, op, 5.0, 40, x0=expected), rtol=1e-5, atol=1e-4)

    with jax.enable_x64(True):
        op = physics.sampling_operator(3)
        z = images[0].astype(jnp.float64)
        direction = jax.random.normal(jax.random.PRNGKey(1), z.shape, jnp.float64)

        def loss(z):
            return jnp.sum(solvers.fista(z, op, 5.0, 30) ** 2)

        grad = jax.grad(loss)(z)
        h = 1e-5
        fd = (loss(z + h * direction) - loss(z - h * direction)) / (2 * h)
        np.testing.assert_allclose(jnp.vdot(grad, direction), fd, rtol=1e-6)
