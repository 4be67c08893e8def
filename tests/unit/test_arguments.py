"""Every public argument is checked the same way (NaN and infinity included), with an error naming it;
empty batches give empty results of the right shape; frames above the saturation level warn, naming the
``saturation`` option (issue 23, item 4).

Cheap by design: the errors are raised before anything compiles, the shapes of the networks' empty
batches come from ``jax.eval_shape`` (tracing only), and the saturation warnings are checked with the
jitted kernels stubbed out (the warning is a host-side check made before them).
"""

from __future__ import annotations

import functools
import importlib
import re
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from csist_jax import _checks, metrics, models, physics, refine, solvers
from csist_jax.models import localizer as localizer_lib
from csist_jax.refine import fit as fit_lib
from csist_jax.refine import lm as lm_lib
from csist_jax.refine import sequence as sequence_lib

# the modules (``csist_jax.refine.localize`` and ``.polish`` are also the names of functions)
localize_lib = importlib.import_module("csist_jax.refine.localize")
polish_lib = importlib.import_module("csist_jax.refine.polish")

NAN, INF = float("nan"), float("inf")
OP = physics.sampling_operator(3)
IMAGES = np.zeros((2, 11, 11), np.float32)
IMAGES[:, 5, 5] = 100.0
KEY = jax.random.PRNGKey(0)


def _found(n: int = 1, m: int = 2, **overrides) -> dict:
    """A detector's result for ``n`` images with ``m`` slots (one point at the centre each)."""
    points = np.zeros((n, m, 3), np.float32)
    points[:, 0] = (5.0, 5.0, 0.9)
    found = {
        "points": points,
        "count": np.ones(n, np.int32),
        "brightness": np.full((n, m), 200.0, np.float32),
    }
    found.update(overrides)
    return found


def _bad_points():
    found = _found()
    found["points"][0, 0, 0] = NAN
    return found


# (probe, the callable, the error type, a regex the message must match: it names the argument)
BAD = [
    # solvers: lam and step, NaN / inf / out of range / arrays (issue: NaN or garbage maps, a raw traceback)
    (
        "fista lam=nan",
        lambda: solvers.fista(IMAGES, OP, NAN, 5),
        ValueError,
        r"^lam must be a finite number >= 0",
    ),
    ("fista lam=inf", lambda: solvers.fista(IMAGES, OP, INF, 5), ValueError, r"^lam must be a finite"),
    ("ista lam=nan", lambda: solvers.ista(IMAGES, OP, NAN, 5), ValueError, r"^lam must be a finite"),
    (
        "fista lam=array",
        lambda: solvers.fista(IMAGES, OP, np.array([1.0, 2.0]), 5),
        ValueError,
        r"^lam must be a scalar",
    ),
    ("fista lam=str", lambda: solvers.fista(IMAGES, OP, "1", 5), TypeError, r"^lam must be a real number"),
    (
        "fista step=-1",
        lambda: solvers.fista(IMAGES, OP, 1.0, 5, step=-1.0),
        ValueError,
        r"^step must be in \(0, 0\.23",
    ),
    (
        "fista step=10",
        lambda: solvers.fista(IMAGES, OP, 1.0, 5, step=10.0),
        ValueError,
        r"^step must be in \(0, 0\.23",
    ),
    (
        "ista step=0",
        lambda: solvers.ista(IMAGES, OP, 1.0, 5, step=0.0),
        ValueError,
        r"step < 2 / \|\|Phi\|\|\^2",
    ),
    (
        "fista step=nan",
        lambda: solvers.fista(IMAGES, OP, 1.0, 5, step=NAN),
        ValueError,
        r"^step must be a finite",
    ),
    (
        "fista step=array",
        lambda: solvers.fista(IMAGES, OP, 1.0, 5, step=np.ones(2)),
        ValueError,
        r"^step must be a scalar",
    ),
    (
        "objective lam=nan",
        lambda: solvers.objective(jnp.zeros((33, 33)), jnp.zeros((11, 11)), OP, NAN),
        ValueError,
        r"^lam ",
    ),
    ("soft_threshold theta=nan", lambda: solvers.soft_threshold(jnp.ones(3), NAN), ValueError, r"^theta "),
    (
        "nonneg_soft_threshold theta=inf",
        lambda: solvers.nonneg_soft_threshold(jnp.ones(3), INF),
        ValueError,
        r"^theta ",
    ),
    (
        "gradient_step step=nan",
        lambda: solvers.gradient_step(jnp.zeros((33, 33)), jnp.zeros((11, 11)), OP, NAN),
        ValueError,
        r"^step ",
    ),
    # physics
    (
        "gaussian_noise std=nan",
        lambda: physics.gaussian_noise(KEY, jnp.zeros(3), NAN),
        ValueError,
        r"^std must be a finite number >= 0",
    ),
    (
        "observe noise_std=nan",
        lambda: physics.observe(KEY, jnp.zeros(3), noise_std=NAN),
        ValueError,
        r"^noise_std ",
    ),
    (
        "observe background=inf",
        lambda: physics.observe(KEY, jnp.zeros(3), background=INF),
        ValueError,
        r"^background ",
    ),
    (
        "observe poisson_gain=nan",
        lambda: physics.observe(KEY, jnp.zeros(3), poisson_gain=NAN),
        ValueError,
        r"^poisson_gain ",
    ),
    (
        "observe saturation=nan",
        lambda: physics.observe(KEY, jnp.zeros(3), saturation=NAN),
        ValueError,
        r"^saturation ",
    ),
    ("observe clean=nan", lambda: physics.observe(KEY, jnp.full(3, NAN)), ValueError, r"^clean "),
    (
        "quantize saturation=-1",
        lambda: physics.quantize(jnp.ones(3), -1.0),
        ValueError,
        r"^saturation must be in \(0, 255\]",
    ),
    (
        "quantize saturation=300 (uint8 wraps)",
        lambda: physics.quantize(jnp.ones(3), 300.0),
        ValueError,
        r"^saturation must be in \(0, 255\]",
    ),
    (
        "quantize_float saturation=nan",
        lambda: physics.quantize_float(jnp.ones(3), NAN),
        ValueError,
        r"^saturation ",
    ),
    ("quantize_float image=nan", lambda: physics.quantize_float(jnp.array([NAN])), ValueError, r"^image "),
    (
        "q_init ridge=nan",
        lambda: physics.q_init(None, OP, ridge=NAN),
        ValueError,
        r"^ridge must be a finite number >= 0",
    ),
    ("q_init ridge=-1", lambda: physics.q_init(None, OP, ridge=-1.0), ValueError, r"^ridge "),
    ("hr_label targets=nan", lambda: physics.hr_label(np.full((1, 1, 3), NAN)), ValueError, r"^targets "),
    ("hr_index coordinate=nan", lambda: physics.hr_index(np.array([NAN]), 3), ValueError, r"^coordinate "),
    ("hr_offset c=0", lambda: physics.hr_offset(0), ValueError, r"^c must be an integer >= 1"),
    (
        "pixel_integrated_gaussian d=inf",
        lambda: physics.pixel_integrated_gaussian(np.array([INF])),
        ValueError,
        r"^d ",
    ),
    (
        "pixel_integrated_gaussian sigma=nan",
        lambda: physics.pixel_integrated_gaussian(0.0, NAN),
        ValueError,
        r"^sigma ",
    ),
    ("render sigma=inf", lambda: physics.render(np.zeros((1, 3)), sigma=INF), ValueError, r"^sigma "),
    ("sampling_operator sigma=nan", lambda: physics.sampling_operator(3, sigma=NAN), ValueError, r"^sigma "),
    ("norm_squared iterations=0", lambda: OP.norm_squared(0), ValueError, r"^iterations "),
    ("check_adjoint rtol=nan", lambda: OP.check_adjoint(rtol=NAN), ValueError, r"^rtol "),
    # refine: NaN options (issue: localize(penalty=nan) gave no detections at all)
    (
        "localize penalty=nan",
        lambda: refine.localize(IMAGES, penalty=NAN),
        ValueError,
        r"^penalty must be a finite number >= 0",
    ),
    ("localize penalty=-1", lambda: refine.localize(IMAGES, penalty=-1.0), ValueError, r"^penalty "),
    ("localize noise_std=nan", lambda: refine.localize(IMAGES, noise_std=NAN), ValueError, r"^noise_std "),
    ("localize saturation=nan", lambda: refine.localize(IMAGES, saturation=NAN), ValueError, r"^saturation "),
    ("localize sigma=inf", lambda: refine.localize(IMAGES, sigma=INF), ValueError, r"^sigma "),
    ("fit_sources penalty=inf", lambda: refine.fit_sources(IMAGES, penalty=INF), ValueError, r"^penalty "),
    (
        "localize_one penalty=nan",
        lambda: refine.localize_one(IMAGES[0], penalty=NAN),
        ValueError,
        r"^penalty ",
    ),
    (
        "localize_window noise_std=nan",
        lambda: refine.localize_window(np.zeros((3, 11, 11)), noise_std=NAN),
        ValueError,
        r"^noise_std ",
    ),
    (
        "localize_windows penalty=nan, n=0",
        lambda: refine.localize_windows(np.zeros((0, 3, 11, 11)), penalty=NAN),
        ValueError,
        r"^penalty ",
    ),
    (
        "localize_windows sigma=nan, n=0",
        lambda: refine.localize_windows(np.zeros((0, 3, 11, 11)), sigma=NAN),
        ValueError,
        r"^sigma ",
    ),
    ("polish sigma=nan", lambda: refine.polish(IMAGES[:1], _found(), sigma=NAN), ValueError, r"^sigma "),
    (
        "polish noise_std=nan",
        lambda: refine.polish(IMAGES[:1], _found(), noise_std=NAN),
        ValueError,
        r"^noise_std ",
    ),
    (
        "polish saturation=inf",
        lambda: refine.polish(IMAGES[:1], _found(), saturation=INF),
        ValueError,
        r"^saturation ",
    ),
    (
        "polish points=nan",
        lambda: refine.polish(IMAGES[:1], _bad_points()),
        ValueError,
        r"^found\['points'\] holds NaN",
    ),
    (
        "polish count=-1",
        lambda: refine.polish(IMAGES[:1], _found(count=np.array([-1]))),
        ValueError,
        r"^found\['count'\] must lie in",
    ),
    (
        "polish_windows max_cost=nan",
        lambda: refine.polish_windows(np.zeros((1, 3, 11, 11)), _found(), max_cost=NAN),
        ValueError,
        r"^max_cost ",
    ),
    (
        "polish_windows sigma=nan",
        lambda: refine.polish_windows(np.zeros((1, 3, 11, 11)), _found(), sigma=NAN),
        ValueError,
        r"^sigma ",
    ),
    (
        "position_crb noise_std=nan",
        lambda: refine.position_crb(np.zeros((1, 1, 3)), noise_std=NAN),
        ValueError,
        r"^noise_std ",
    ),
    (
        "position_crb saturation=nan",
        lambda: refine.position_crb(np.zeros((1, 1, 3)), saturation=NAN),
        ValueError,
        r"^saturation ",
    ),
    (
        "rmse_bound below=nan",
        lambda: refine.rmse_bound(np.ones((1, 1)), np.ones(1, int), below=NAN),
        ValueError,
        r"^below ",
    ),
    (
        "calibrate_psf background0=nan",
        lambda: refine.calibrate_psf(IMAGES, background0=NAN),
        ValueError,
        r"^background0 ",
    ),
    (
        "calibrate_psf saturation=nan",
        lambda: refine.calibrate_psf(IMAGES, saturation=NAN),
        ValueError,
        r"^saturation ",
    ),
    (
        "calibrate_psf max_sources=0",
        lambda: refine.calibrate_psf(IMAGES, max_sources=0),
        ValueError,
        r"^max_sources ",
    ),
    (
        "fit_one sigma=nan",
        lambda: refine.fit_one(jnp.zeros((1, 3)), jnp.ones(1), jnp.zeros((11, 11)), sigma=NAN),
        ValueError,
        r"^sigma ",
    ),
    (
        "fit_one damping=nan",
        lambda: refine.fit_one(jnp.zeros((1, 3)), jnp.ones(1), jnp.zeros((11, 11)), damping=NAN),
        ValueError,
        r"^damping ",
    ),
    (
        "levenberg_marquardt damping=inf",
        lambda: refine.levenberg_marquardt(None, None, jnp.zeros(1), iterations=1, damping=INF),
        ValueError,
        r"^damping ",
    ),
    (
        "position_score variance=nan",
        lambda: refine.position_score(jnp.eye(3), jnp.ones(1), NAN),
        ValueError,
        r"^variance ",
    ),
    (
        "pixel_variance noise_std=nan",
        lambda: refine.pixel_variance(jnp.zeros((11, 11)), NAN),
        ValueError,
        r"^noise_std ",
    ),
    (
        "fisher_information variance=0",
        lambda: refine.fisher_information(
            jnp.zeros((1, 3)), size=11, sigma=0.5, variance=0.0, saturation=255.0
        ),
        ValueError,
        r"^variance ",
    ),
    # metrics
    (
        "match_detections deltas=nan",
        lambda: metrics.match_detections(jnp.zeros((2, 3)), 1, jnp.zeros((1, 3)), 1, (NAN,)),
        ValueError,
        r"^deltas ",
    ),
    (
        "cso_map_from_points deltas=inf",
        lambda: metrics.cso_map_from_points(
            np.zeros((1, 1, 3)), [0], np.zeros((1, 1, 3)), [0], deltas=(INF,)
        ),
        ValueError,
        r"^deltas ",
    ),
    (
        "psnr data_range=nan",
        lambda: metrics.psnr(np.zeros((1, 4, 4)), np.ones((1, 4, 4)), NAN),
        ValueError,
        r"^data_range ",
    ),
    (
        "matched_errors max_distance=nan",
        lambda: metrics.matched_errors(np.zeros((1, 1, 3)), [0], np.zeros((1, 1, 3)), [0], max_distance=NAN),
        ValueError,
        r"^max_distance ",
    ),
    (
        "detections_from_maps threshold=nan",
        lambda: metrics.detections_from_maps(np.zeros((1, 33, 33)), 3, NAN),
        ValueError,
        r"^brightness_threshold ",
    ),
    # the localiser's decoder
    (
        "points threshold=nan",
        lambda: localizer_lib.points(_heads(1), threshold=NAN),
        ValueError,
        r"^threshold ",
    ),
    (
        "points threshold=2",
        lambda: localizer_lib.points(_heads(1), threshold=2.0),
        ValueError,
        r"^threshold must be in \[0, 1\]",
    ),
    (
        "points merge_radius=-1",
        lambda: localizer_lib.points(_heads(1), merge_radius=-1.0),
        ValueError,
        r"^merge_radius ",
    ),
]


def _heads(n: int) -> dict:
    return {
        "logit": jnp.zeros((n, 33, 33)),
        "position": jnp.zeros((n, 33, 33, 2)),
        "brightness": jnp.zeros((n, 33, 33)),
        "log_std": jnp.zeros((n, 33, 33, 3)),
    }


@pytest.mark.parametrize("call,error,match", [pytest.param(*case[1:], id=case[0]) for case in BAD])
def test_a_bad_argument_is_named(call, error, match):
    with pytest.raises(error, match=match):
        call()


# ---- the checks are value checks on concrete arguments: valid input passes, traced input is not checked


def test_a_valid_step_inside_the_bound_is_accepted_and_changes_nothing():
    norm = float(OP.norm_squared())
    step = 1.9 / norm  # inside (0, 2 / ||Phi||^2)
    solvers.fista(IMAGES, OP, 1.0, 3, step=step)  # accepted
    default = solvers.ista(IMAGES, OP, 1.0, 3)
    explicit = solvers.ista(IMAGES, OP, 1.0, 3, step=solvers.default_step(OP))
    np.testing.assert_array_equal(np.asarray(default), np.asarray(explicit))


def test_traced_values_are_not_checked():
    # under jit the values are unknown: a NaN flows through instead of raising (the host entry points check)
    out = jax.jit(lambda lam: solvers.objective(jnp.zeros((33, 33)), jnp.zeros((11, 11)), OP, lam))(NAN)
    assert np.isnan(float(out))
    assert bool(jax.jit(lambda x: (_checks.finite("x", x), jnp.isnan(x))[1])(jnp.float32(NAN)))


def test_check_helpers_name_the_argument_for_arrays_and_non_numbers():
    with pytest.raises(
        ValueError, match=r"^sigma must be a finite number > 0; 1 of its 3 values are not, e\.g\. -1\.0"
    ):
        _checks.positive_scalar("sigma", np.array([1.0, -1.0, 2.0]))
    with pytest.raises(TypeError, match=r"^noise_std must be a real number, got None"):
        _checks.nonnegative("noise_std", None)
    with pytest.raises(TypeError, match=r"^penalty must be a real number"):
        _checks.nonnegative("penalty", True)
    _checks.nonnegative("noise_std", 0.0)
    _checks.positive_scalar("sigma", jnp.bfloat16(0.5))
    with pytest.raises(ValueError, match=r"^images contains 1 NaN"):
        _checks.finite("images", jnp.array([1.0, NAN], jnp.bfloat16))


# ---- the networks' host entry points (issue: NaN/inf images gave all-NaN outputs)

NETWORKS = ["ista_net", "lista", "derefnet", "localizer", "window_localizer"]


@functools.cache
def _abstract_variables(name: str):
    """The network and zero variables of its shapes (``jax.eval_shape``: no compile, no forward pass)."""
    net = models.create(name, c=3, **models.REGISTRY[name].small)
    shapes = jax.eval_shape(net.init, KEY, *models.example_inputs(net, 1, 3))
    return net, jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)


@pytest.mark.parametrize("bad", [NAN, INF])
@pytest.mark.parametrize("name", NETWORKS)
def test_a_network_refuses_non_finite_frames_naming_them(name, bad):
    net, variables = _abstract_variables(name)
    inputs = models.example_inputs(net, 2, 3)
    frames = jnp.asarray(inputs[0]).at[1, ..., 3, 4].set(bad)
    what = "windows" if models.is_sequence_model(net) else "images"
    with pytest.raises(ValueError, match=rf"^{what} contains \d+ NaN or infinite"):
        net.apply(variables, frames, *inputs[1:])


def test_a_network_refuses_a_non_finite_q_naming_it():
    net, variables = _abstract_variables("ista_net")
    q = jnp.full((33 * 33, 121), NAN)
    with pytest.raises(ValueError, match=r"^q contains"):
        net.apply(variables, *models.example_inputs(net, 1), q=q)


def test_a_network_under_jit_does_not_check_values():
    net, variables = _abstract_variables("ista_net")
    frames = jnp.full((1, 11, 11), NAN)
    out = jax.eval_shape(jax.jit(net.apply), variables, frames)  # traced: no check, no error
    assert out.shape == (1, 33, 33)


# ---- empty batches: an empty result of the right shape (issue: ZeroDivisionError in layers.py)

EMPTY_NETWORKS = [
    "ista_net",
    "lista",
    "lamp",
    "tilista",
    "usrnet",
    "han",
    "derefnet",
    "localizer",
    "window_localizer",
]


@pytest.mark.parametrize("name", EMPTY_NETWORKS)
def test_a_network_maps_an_empty_batch_to_an_empty_result(name):
    net = models.create(name, c=3, **models.REGISTRY[name].small)
    variables = jax.eval_shape(net.init, KEY, *models.example_inputs(net, 1, 3))
    empty = jax.eval_shape(net.apply, variables, *models.example_inputs(net, 0, 3))
    if models.is_localizer(net):
        heads = {"logit": (), "position": (2,), "brightness": (), "log_std": (3,)}
        assert {k: v.shape for k, v in empty.items()} == {k: (0, 33, 33) + t for k, t in heads.items()}
    else:
        assert empty.shape == (0, 33, 33)


def test_an_eager_network_call_on_an_empty_batch_runs():
    net, variables = _abstract_variables("ista_net")
    assert net.apply(variables, jnp.zeros((0, 11, 11))).shape == (0, 33, 33)


EMPTY, EMPTY_WINDOWS = np.zeros((0, 11, 11), np.float32), np.zeros((0, 3, 11, 11), np.float32)
NO_ROWS, NO_COUNT = np.zeros((0, 4, 3)), np.zeros(0, np.int64)


def _shapes(out) -> list:
    return [tuple(np.shape(a)) for a in (out if isinstance(out, tuple) else [out])]


# (probe, the call on an empty batch, what it must give)
EMPTY_RESULTS = [
    ("ista", lambda: _shapes(solvers.ista(EMPTY, OP, 1.0, 3)), [(0, 33, 33)]),
    ("fista", lambda: _shapes(solvers.fista(EMPTY, OP, 1.0, 3)), [(0, 33, 33)]),
    ("localize", lambda: _shapes(refine.localize(EMPTY, max_sources=4)), [(0, 4, 3), (0,)]),
    (
        "localize_windows",
        lambda: _shapes(refine.localize_windows(EMPTY_WINDOWS, max_sources=4)),
        [(0, 4, 3), (0,), (0, 2)],
    ),
    (
        "polish",
        lambda: {k: np.shape(v) for k, v in refine.polish(EMPTY, _found(0, 4)).items()},
        {
            "points": (0, 4, 3),
            "count": (0,),
            "brightness": (0, 4),
            "position_std": (0, 4),
            "cost": (0,),
            "accepted": (0,),
        },
    ),
    (
        "polish_windows",
        lambda: _shapes(refine.polish_windows(EMPTY_WINDOWS, _found(0, 4))),
        [(0, 4, 3), (0,)],
    ),
    ("position_crb", lambda: _shapes(refine.position_crb(np.zeros((0, 2, 3)))), [(0, 2)]),
    (
        "detections_from_maps",
        lambda: _shapes(metrics.detections_from_maps(np.zeros((0, 33, 33)), 3, 50.0)),
        [(0, 8, 3), (0,)],
    ),
    ("psnr", lambda: _shapes(metrics.psnr(np.zeros((0, 8, 8)), np.zeros((0, 8, 8)))), [(0,)]),
    ("ssim", lambda: _shapes(metrics.ssim(np.zeros((0, 11, 11)), np.zeros((0, 11, 11)))), [(0,)]),
    # CSO-mAP of nothing is 0 (documented: a dataset without a real target scores 0)
    (
        "cso_map_from_points",
        lambda: metrics.cso_map_from_points(NO_ROWS, NO_COUNT, NO_ROWS, NO_COUNT)["mAP"],
        0.0,
    ),
    (
        "cso_map_from_maps",
        lambda: metrics.cso_map_from_maps(np.zeros((0, 33, 33)), NO_ROWS, NO_COUNT, 3, 50.0)["mAP"],
        0.0,
    ),
    ("by_count", lambda: metrics.by_count(NO_ROWS, NO_COUNT, NO_ROWS, NO_COUNT), {}),
    # the ratios without a denominator are NaN (documented), not an error
    ("count_accuracy", lambda: np.isnan(metrics.count_accuracy(NO_COUNT, NO_COUNT)), True),
    (
        "localization_rmse",
        lambda: str(metrics.localization_rmse(NO_ROWS, NO_COUNT, NO_ROWS, NO_COUNT)),
        str({"rmse": float("nan"), "matched": 0, "detections": 0, "targets": 0}),
    ),
]


@pytest.mark.parametrize("call,expected", [pytest.param(*case[1:], id=case[0]) for case in EMPTY_RESULTS])
def test_an_empty_batch_gives_an_empty_result(call, expected):
    assert call() == expected


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda: physics.q_init(np.zeros((0, 33, 33)), OP), r"^labels must hold at least one map"),
        (
            lambda: refine.calibrate_psf(np.zeros((0, 11, 11))),
            r"^images must have shape \[n, size, size\] with n >= 1",
        ),
    ],
    ids=["q_init", "calibrate_psf"],
)
def test_an_empty_batch_that_determines_nothing_is_an_error(call, match):
    with pytest.raises(ValueError, match=match):
        call()


# ---- frames above the saturation level (issue: localize silently degrades on frames brighter than 255)

BRIGHT = np.zeros((1, 11, 11), np.float32)
BRIGHT[0, 5, 5] = 900.0


@pytest.fixture
def no_fits(monkeypatch):
    """The jitted fits stubbed out: the host-side checks run, nothing compiles."""

    def fake_localize(images, hr_maps, sigma, noise_std, penalty, *, max_sources, **_):
        n = images.shape[0]
        zeros = jnp.zeros((n, max_sources), jnp.float32)
        return {
            "points": jnp.zeros((n, max_sources, 3)),
            "count": jnp.zeros(n, jnp.int32),
            "brightness": zeros,
            "position_std": zeros,
            "cost": jnp.zeros(n),
        }

    def fake_polish(images, sources, count, probability, sigma, noise_std, iterations, saturation):
        n, m = sources.shape[:2]
        return {
            "points": jnp.zeros((n, m, 3)),
            "count": count,
            "brightness": jnp.zeros((n, m)),
            "position_std": jnp.zeros((n, m)),
            "cost": jnp.zeros(n),
        }

    def fake_windows(windows, thetas, counts, *args):
        n, m = thetas.shape[0], thetas.shape[2]
        return jnp.zeros((n, m, 3)), counts[:, 0], jnp.zeros((n, 2)), jnp.zeros(n)

    monkeypatch.setattr(localize_lib, "_localize", fake_localize)
    monkeypatch.setattr(polish_lib, "_polish", fake_polish)
    monkeypatch.setattr(sequence_lib, "_localize_windows", fake_windows)


def _saturation_warnings(call) -> list:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        call()
    return [w for w in caught if issubclass(w.category, _checks.SaturationWarning)]


@pytest.mark.parametrize(
    "call,name",
    [
        pytest.param(lambda: refine.localize(BRIGHT), "images", id="localize"),
        pytest.param(lambda: refine.fit_sources(BRIGHT), "images", id="fit_sources"),
        pytest.param(
            lambda: refine.localize_windows(np.repeat(BRIGHT[:, None], 3, axis=1)),
            "windows",
            id="localize_windows",
        ),
        pytest.param(lambda: refine.polish(BRIGHT, _found()), "images", id="polish"),
    ],
)
def test_frames_above_saturation_warn_once_naming_the_option(no_fits, call, name):
    caught = _saturation_warnings(call)
    assert len(caught) == 1, [str(w.message) for w in caught]
    message = str(caught[0].message)
    assert re.match(rf"{name} has \d+ pixel\(s\) above saturation=255 \(largest 900\)", message), message
    assert "pass saturation= at least their largest value (e.g. saturation=900)" in message
    assert caught[0].filename == __file__  # the warning points at the caller's line, not the library's


def test_frames_within_the_given_saturation_do_not_warn(no_fits):
    assert _saturation_warnings(lambda: refine.localize(BRIGHT, saturation=900.0)) == []
    assert _saturation_warnings(lambda: refine.localize(np.clip(BRIGHT, 0, 255))) == []


def test_no_saturation_warning_under_jit():
    caught = _saturation_warnings(
        lambda: jax.eval_shape(lambda z: (_checks.saturation_warning("images", z, 255.0), z)[1], BRIGHT)
    )
    assert caught == []


def test_the_pure_cores_check_concrete_options_and_trace_the_rest():
    # traced values (here the image and the start) pass; concrete options are checked before tracing
    cost = jax.eval_shape(
        lambda p, z: fit_lib.fit_one(p, jnp.ones(1), z, iterations=1)[1], jnp.zeros((1, 3)), BRIGHT[0]
    )
    assert cost.shape == ()
    with pytest.raises(ValueError, match=r"^iterations must be an integer >= 0"):
        lm_lib.levenberg_marquardt(None, None, jnp.zeros(1), iterations=-1)
