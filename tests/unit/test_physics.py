"""The physics core: PSF against numerical integration, Phi's structure, norm, adjoint and gradients."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate

from csist_jax import physics
from csist_jax.data import csist100k


def _pixel_integral(r, q, x, y, sigma):
    """Gaussian of width sigma centred at (x, y), integrated numerically over LR pixel (r, q)."""

    def density(v, u):  # dblquad integrates the inner variable first
        return np.exp(-((u - x) ** 2 + (v - y) ** 2) / (2 * sigma**2)) / (2 * np.pi * sigma**2)

    value, _ = integrate.dblquad(density, r - 0.5, r + 0.5, q - 0.5, q + 0.5, epsabs=1e-14, epsrel=1e-12)
    return value


@pytest.mark.parametrize("c", [3, 5, 7])
@pytest.mark.parametrize("sigma", [0.3, 0.5, 0.8])
def test_phi_matches_numerical_integration(c, sigma):
    rng = np.random.default_rng(100 * c + int(10 * sigma))
    hr = 11 * c
    centres = (np.arange(hr) - (c - 1) // 2) / c  # SPEC sec. 2, in float64, independent of the package
    # entries near the column's own target carry most of the mass; random ones probe the tails
    cols = rng.integers(0, hr * hr, size=6)
    rows = [
        (int(np.clip(round(centres[col // hr]), 0, 10)) + rng.integers(-1, 2)) % 11 * 11
        + (int(np.clip(round(centres[col % hr]), 0, 10)) + rng.integers(-1, 2)) % 11
        for col in cols
    ]
    rows += list(rng.integers(0, 121, size=3))
    cols = list(cols) + list(rng.integers(0, hr * hr, size=3))
    expected = np.array(
        [
            _pixel_integral(m // 11, m % 11, centres[n // hr], centres[n % hr], sigma)
            for m, n in zip(rows, cols)
        ]
    )
    with jax.enable_x64(True):
        phi64 = np.asarray(physics.sampling_matrix(c, sigma=sigma))
        assert phi64.dtype == np.float64
        np.testing.assert_allclose(phi64[rows, cols], expected, rtol=0, atol=1e-9)
    phi32 = np.asarray(physics.sampling_matrix(c, sigma=sigma))
    assert phi32.dtype == np.float32
    np.testing.assert_allclose(phi32[rows, cols], expected, rtol=0, atol=1e-6)


def test_target_at_3_7_is_brightest_at_row_3_column_7():
    image = np.asarray(physics.render(jnp.array([[3.0, 7.0, 100.0]])))
    assert np.unravel_index(np.argmax(image), image.shape) == (3, 7)
    assert image[3, 7] == pytest.approx(46.606, abs=1e-3)  # 46.6 % of the flux in the centre pixel
    # the same target through Phi: HR cell (3c + (c-1)//2, 7c + (c-1)//2) at c = 3 is (10, 22)
    label = physics.hr_label(jnp.array([[3.0, 7.0, 100.0]]), c=3)
    assert np.argwhere(np.asarray(label)).tolist() == [[10, 22]]
    op = physics.sampling_operator(3)
    np.testing.assert_allclose(op.forward(label), image, atol=1e-4)


@pytest.mark.parametrize("c", [1, 3, 5, 7])
def test_hr_grid_round_trip(c):
    centres = physics.hr_cell_centres(c)
    np.testing.assert_array_equal(physics.hr_index(centres, c), np.arange(11 * c))
    assert float(centres[(c - 1) // 2]) == 0.0


@pytest.mark.parametrize("c,expected", [(3, 8.587), (5, 23.85), (7, 46.74)])
def test_operator_norm_squared(c, expected):
    op = physics.sampling_operator(c)
    assert float(op.norm_squared()) == pytest.approx(expected, abs=0.0051 if c == 3 else 0.051)


@pytest.mark.parametrize("c", [3, 5])
def test_power_iteration_matches_svd(c):
    with jax.enable_x64(True):
        op = physics.sampling_operator(c, sigma=0.5)
        svd = np.linalg.svd(np.asarray(op.matrix()), compute_uv=False)[0] ** 2
        assert float(op.norm_squared(iterations=300)) == pytest.approx(svd, rel=1e-8)


def test_separable_and_dense_forms_agree_and_are_kron():
    with jax.enable_x64(True):
        op = physics.sampling_operator(3)
        G = np.asarray(physics.separable_factor(3))
        np.testing.assert_allclose(np.asarray(op.matrix()), np.kron(G, G), atol=1e-15)
        dense = physics.dense_operator(op)
        s = jax.random.normal(jax.random.PRNGKey(1), (4, 33, 33))
        np.testing.assert_allclose(dense.forward(s), op.forward(s), atol=1e-12)
        z = jax.random.normal(jax.random.PRNGKey(2), (4, 11, 11))
        np.testing.assert_allclose(dense.adjoint(z), op.adjoint(z), atol=1e-12)


def test_column_sums_leak_at_the_edges():
    sums = np.asarray(physics.sampling_matrix(3)).sum(axis=0)
    assert sums.min() == pytest.approx(0.398, abs=1e-3) and sums.max() == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize(
    "make", [physics.sampling_operator, lambda c: physics.dense_operator(physics.sampling_operator(c))]
)
def test_adjointness(make):
    with jax.enable_x64(True):
        op = make(3)
        for seed in range(3):
            assert op.check_adjoint(jax.random.PRNGKey(seed))
        # a transposed-by-hand adjoint agrees with JAX's linear transpose of forward
        z = jax.random.normal(jax.random.PRNGKey(7), op.out_shape)
        (auto,) = jax.linear_transpose(op.forward, jnp.zeros(op.in_shape))(z)
        np.testing.assert_allclose(op.adjoint(z), auto, atol=1e-12)


def test_adjointness_check_catches_a_wrong_adjoint():
    op = physics.sampling_operator(3)
    wrong = physics.DenseOperator(A=op.matrix() * 1.0, size=11, hr=33)
    broken = physics.DenseOperator.__new__(physics.DenseOperator)
    object.__setattr__(broken, "A", wrong.A)
    object.__setattr__(broken, "size", 11)
    object.__setattr__(broken, "hr", 33)
    broken_adjoint = lambda z: 1.01 * wrong.adjoint(z)  # noqa: E731
    object.__setattr__(broken, "adjoint", broken_adjoint)
    assert not broken.check_adjoint()


def test_every_operator_implements_the_abstract_sampling_operator_interface():
    op = physics.sampling_operator(3)
    for each in (op, physics.dense_operator(op), physics.PerSampleOperator(op)):
        assert isinstance(each, physics.SamplingOperator)
        assert (each.in_shape, each.out_shape, each.dtype) == ((33, 33), (11, 11), jnp.float32)
    with pytest.raises(TypeError, match="abstract"):
        physics.SamplingOperator()

    class ForwardOnly(physics.SamplingOperator):
        size, hr = 11, 33
        dtype = jnp.float32

        def forward(self, s):
            return s[..., :11, :11]

    with pytest.raises(TypeError, match="adjoint"):
        ForwardOnly()


def test_per_sample_operator_has_its_base_values_and_is_a_pytree():
    op = physics.sampling_operator(3)
    per = physics.PerSampleOperator(op)
    rng = np.random.default_rng(3)
    s = rng.normal(size=(2, 3, 33, 33)).astype(np.float32)
    z = rng.normal(size=(5, 11, 11)).astype(np.float32)
    np.testing.assert_allclose(per.forward(s), op.forward(s), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(jax.jit(lambda o: o.adjoint(z))(per), op.adjoint(z), rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(per.matrix(), op.matrix())
    np.testing.assert_array_equal(per.forward(s[0, 0]), op.forward(s[0, 0]))


def test_q_init_without_labels_is_the_regularised_pseudo_inverse():
    """``labels=None``: ``A^T (A A^T + ridge tr(A A^T)/m I)^-1``, the networks' default ``Q``. Equal to
    the formula written out (float32 rounding), to the pseudo-inverse in float64 (1e-10), and to
    ``q_init`` on every unit HR cell as labels (X = I, so Y = A)."""
    op = physics.sampling_operator(3)
    A = op.matrix()
    aat = A @ A.T
    reg = 1e-3 * jnp.trace(aat) / 121
    written_out = jnp.linalg.solve(aat + reg * jnp.eye(121, dtype=A.dtype), A).T
    q = physics.q_init(None, op, ridge=1e-3)
    assert q.shape == (33 * 33, 121) and q.dtype == jnp.float32
    np.testing.assert_allclose(q, written_out, rtol=1e-6, atol=1e-7 * float(jnp.max(jnp.abs(q))))
    with jax.enable_x64(True):
        op = physics.sampling_operator(3)
        A = np.asarray(op.matrix())
        aat = A @ A.T
        pinv = A.T @ np.linalg.inv(aat + 1e-3 * np.trace(aat) / 121 * np.eye(121))
        q64 = physics.q_init(None, op, ridge=1e-3)
        np.testing.assert_allclose(q64, pinv, rtol=1e-10, atol=1e-12)
        unit_cells = jnp.eye(33 * 33).reshape(-1, 33, 33)
        np.testing.assert_allclose(physics.q_init(unit_cells, op, ridge=1e-3), q64, rtol=1e-10, atol=1e-12)


def test_render_gradients_match_finite_differences():
    with jax.enable_x64(True):
        targets = jnp.array([[4.3, 5.1, 230.0], [4.7, 5.6, 221.0], [0.0, 0.0, 0.0]])
        weights = jax.random.normal(jax.random.PRNGKey(0), (11, 11))

        def loss(t, sigma):
            return jnp.sum(weights * physics.render(t, sigma=sigma))

        g_t, g_s = jax.grad(loss, argnums=(0, 1))(targets, 0.5)
        eps = np.sqrt(np.finfo(np.float64).eps)
        for idx in [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2)]:
            h = eps * max(1.0, abs(float(targets[idx])))
            up = loss(targets.at[idx].add(h), 0.5)
            down = loss(targets.at[idx].add(-h), 0.5)
            assert float(g_t[idx]) == pytest.approx(float((up - down) / (2 * h)), rel=1e-5, abs=1e-5)
        h = eps * 0.5
        fd = (loss(targets, 0.5 + h) - loss(targets, 0.5 - h)) / (2 * h)
        assert float(g_s) == pytest.approx(float(fd), rel=1e-6)
        # padding rows (brightness 0) have no influence on positions
        assert float(g_t[2, 0]) == 0.0 and float(g_t[2, 1]) == 0.0


def test_render_is_vmappable_and_matches_phi_on_grid_targets():
    data = csist100k.generate(seed=3, n=8)
    targets = jnp.asarray(data["targets"])
    batched = physics.render(targets)
    mapped = jax.vmap(physics.render)(targets)
    np.testing.assert_allclose(batched, mapped, rtol=1e-6, atol=1e-4)
    # snapping each target to its HR cell centre makes render and Phi agree exactly
    c = 3
    centres = physics.hr_cell_centres(c)
    snapped = targets.at[..., 0].set(centres[physics.hr_index(targets[..., 0], c)])
    snapped = snapped.at[..., 1].set(centres[physics.hr_index(targets[..., 1], c)])
    op = physics.sampling_operator(c)
    np.testing.assert_allclose(physics.render(snapped), op.forward(physics.hr_label(targets, c)), atol=1e-3)


def test_q_init_inverts_phi_on_the_training_distribution():
    data = csist100k.generate(seed=4, n=3000)
    op = physics.sampling_operator(3)
    labels = physics.hr_label(jnp.asarray(data["targets"]), 3)
    Q = physics.q_init(labels, op)
    assert Q.shape == (33 * 33, 121)
    images = op.forward(labels).reshape(-1, 121)
    recon = images @ Q.T
    residual = jnp.linalg.norm(recon - labels.reshape(-1, 33 * 33)) / jnp.linalg.norm(labels)
    zero = 1.0  # the all-zero estimate has relative residual 1
    assert float(residual) < 0.9 * zero


def test_sensor_rounds_and_saturates():
    image = jnp.array([-3.0, 0.4, 0.6, 254.4, 254.6, 300.0])
    np.testing.assert_array_equal(physics.quantize(image), np.array([0, 0, 1, 254, 255, 255], np.uint8))
    key = jax.random.PRNGKey(0)
    clean = jnp.full((64, 64), 100.0)
    noisy = physics.gaussian_noise(key, clean, 2.0)
    assert float(jnp.std(noisy)) == pytest.approx(2.0, rel=0.05)
    np.testing.assert_array_equal(noisy, physics.gaussian_noise(key, clean, 2.0))  # same key, same noise
    shot = physics.poisson_noise(key, clean)
    assert float(jnp.var(shot)) == pytest.approx(100.0, rel=0.1)
    assert physics.observe(key, clean, noise_std=1.0).dtype == jnp.uint8


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda: physics.sampling_matrix(3, sigma=0.0), "sigma"),
        (lambda: physics.sampling_matrix(3, sigma=-1.0), "sigma"),
        (lambda: physics.sampling_operator(0), "c"),
        (lambda: physics.sampling_matrix(2.5), "c"),
        (lambda: physics.render(jnp.zeros((3, 2))), "targets"),
        (lambda: physics.render(jnp.array([[1.0, np.nan, 3.0]])), "targets"),
        (lambda: physics.render(jnp.array([[1.0, np.inf, 3.0]])), "targets"),
        (lambda: physics.render(jnp.zeros((1, 3)), sigma=float("nan")), "sigma"),
        (lambda: physics.sampling_operator(3).forward(jnp.zeros((11, 11))), "s"),
        (lambda: physics.sampling_operator(3).adjoint(jnp.zeros((33, 33))), "z"),
        (lambda: physics.DenseOperator(A=jnp.zeros((121, 100)), size=11, hr=33), "A"),
        (lambda: physics.hr_label(jnp.zeros((4, 2)), 3), "targets"),
        (lambda: csist100k.generate(0, 4, count_range=(1, 6)), "count_range"),
        (lambda: csist100k.generate(0, -1), "n"),
        (lambda: csist100k.generate(0, 4, sigma=0.0), "sigma"),
    ],
)
def test_bad_input_names_the_argument(call, match):
    with pytest.raises((ValueError, TypeError), match=match):
        call()
