"""The shared computation of the table scripts: test splits, saved networks (a missing one is an error
naming its path), the tuned analytic rows (ISTA / FISTA), speed and FLOPs, and the rows of the refine
studies (grid maps and continuous points side by side, the oracle fit).

Every score comes from ``csist_jax.train.evaluation``; rendering, files and the timer are
:mod:`experiments.report`; published numbers :mod:`experiments.published`. No script is imported here.
"""

from __future__ import annotations

import itertools
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from tqdm.auto import tqdm

from csist_jax import physics, refine, solvers
from csist_jax.train import data as data_lib
from csist_jax.train import evaluation
from experiments import report
from experiments.published import AP_KEYS

#: the networks shipped with the repository (``experiments/checkpoints/README.md``)
SHIPPED = os.path.join(os.path.dirname(os.path.abspath(__file__)), "checkpoints")
FPS_FRAMES = 500  # frames per timed pass of a table's frames/s column


def shipped(name: str) -> str:
    """The directory of the shipped network ``name`` (e.g. ``"ista_net_plus_c3_cpu"``)."""
    return os.path.join(SHIPPED, name)


def require(paths, hint: str = "") -> None:
    """Raise ``FileNotFoundError`` naming every saved network of ``paths`` that is missing (``hint``: how
    to leave one out)."""
    missing = [p for p in paths if not os.path.isdir(p)]
    if missing:
        raise FileNotFoundError(
            f"no saved network at {', '.join(missing)} (train one with python -m experiments.train, see "
            f"docs/training.md{'; ' + hint if hint else ''})"
        )


def split_arrays(split: str, size: int, seed: int = 0) -> dict:
    """``size`` frames of the CSIST-100K generator split ``split`` (``csist_jax.train.data``'s layout)."""
    cfg = ml_collections.ConfigDict({"source": "generate", "seed": seed, f"{split}_size": size})
    return data_lib.read_all(data_lib.load_split(cfg, split))


def size_note(module, config: dict) -> str:
    """A saved network's size for a table's notes: its stages, else its non-default fields."""
    if hasattr(module, "stages"):
        return f"{module.stages} stages"
    shown = {k: v for k, v in config.items() if k not in ("q_init",)}
    return ", ".join(f"{k}={v}" for k, v in sorted(shown.items())) or "published size"


def flops_per_image(fn, size: int = 11) -> float:
    """FLOPs of ``fn`` on one image from XLA's cost analysis (0 when the backend does not report it)."""
    lowered = jax.jit(fn).lower(jax.ShapeDtypeStruct((1, size, size), np.float32))
    cost = lowered.compile().cost_analysis()
    if isinstance(cost, (list, tuple)):
        cost = cost[0] if cost else {}
    return float((cost or {}).get("flops", 0.0))


def frames_per_second(run, inputs) -> float:
    """Frames/s of ``run(inputs)``: the best of two timed passes after a warm-up pass."""
    return len(inputs) / report.timed(lambda: run(inputs), repeats=2, warmup=1)[1]


def score_maps(maps, arrays: dict, c: int, threshold: float) -> dict:
    """``evaluation.map_scores`` of HR maps ``maps`` (c x c cells per pixel of the 11 x 11 frames)."""
    return evaluation.map_scores({"maps": maps}, arrays, c=c, size=11, brightness_threshold=threshold)


def tune(solver, val: dict, op, lams, iterations, c: int, threshold: float, progress: bool = True):
    """``(lam, iterations, val_mAP)`` of the grid ``lams x iterations`` with the best CSO-mAP of
    ``solver`` (``csist_jax.solvers.ista`` / ``fista``) on the frames ``val`` (the first best wins)."""
    images = jnp.asarray(val["image"], jnp.float32)
    best = (None, None, -1.0)
    grid = list(itertools.product(lams, iterations))
    name = solver.__name__.upper()
    for lam, iters in tqdm(grid, desc=f"tune {name}", disable=not progress or len(grid) < 2, leave=False):
        score = score_maps(solver(images, op, lam, iters), val, c, threshold)["mAP"]
        if score > best[2]:
            best = (lam, iters, score)
    return best


def analytic_rows(val: dict, test: dict, c: int, lams, iterations: int, threshold: float) -> list[dict]:
    """ISTA and FISTA rows (CSO-mAP and APs x100, PSNR, SSIM, FLOPs, frames/s), lambda chosen from
    ``lams`` by validation CSO-mAP."""
    op = physics.sampling_operator(c)
    rows = []
    for label, solver in (("ISTA", solvers.ista), ("FISTA", solvers.fista)):
        lam = tune(solver, val, op, lams, (iterations,), c, threshold)[0]

        def run(images, solver=solver, lam=lam):
            return solver(np.asarray(images, np.float32), op, lam, iterations)

        row = map_table_row(label, np.asarray(run(test["image"])), test, c, threshold)
        row.update(
            params=0,
            # XLA's cost analysis counts a loop body once: measure one iteration, scale by the count
            flops=iterations * flops_per_image(lambda x, solver=solver, lam=lam: solver(x, op, lam, 1)),
            fps=frames_per_second(run, test["image"][:FPS_FRAMES]),
            note=f"lambda={lam:g}, {iterations} iterations",
        )
        rows.append(row)
    return rows


def map_table_row(name: str, maps, arrays: dict, c: int, threshold: float) -> dict:
    """The accuracy columns of a comparison table's row: CSO-mAP and APs x100, PSNR and SSIM."""
    s = score_maps(maps, arrays, c, threshold)
    return {"method": name, **{k: 100 * s[k] for k in AP_KEYS}, "PSNR": s["psnr"], "SSIM": s["ssim"]}


def point_table_row(name: str, points, point_count, arrays: dict) -> dict:
    """CSO-mAP and APs x100 of continuous detections (a comparison table's row)."""
    s = evaluation.point_scores({"points": points, "count": point_count}, arrays)
    return {"method": name, **{k: 100 * s[k] for k in AP_KEYS}}


# -- the refine studies: grid maps and continuous points in one table (scores as fractions) ------------


def map_row(name, maps, data, seconds=None, note="", threshold: float = 50.0) -> dict:
    """A refine-study row of HR maps scored on their c = 3 grid."""
    s = score_maps(maps, data, 3, threshold)
    return dict(
        method=name,
        **{k: s[k] for k in AP_KEYS},
        count_accuracy=None,
        rmse=None,
        fps=(len(data["count"]) / seconds) if seconds else None,
        note=note,
    )


def point_row(name, points, point_count, data, seconds=None, note="") -> dict:
    """A refine-study row of continuous detections: CSO-mAP, count accuracy, RMSE (matches within 0.5 px)."""
    s = evaluation.point_scores({"points": points, "count": point_count}, data)
    return dict(
        method=name,
        **{k: s[k] for k in AP_KEYS},
        count_accuracy=s["count_accuracy"],
        rmse=s["rmse"],
        fps=(len(data["count"]) / seconds) if seconds else None,
        note=note,
    )


def point_table(rows: list[dict], title: str) -> str:
    """The markdown of :func:`map_row` / :func:`point_row` rows under a bold ``title``."""
    header = ["method", "CSO-mAP", *AP_KEYS[1:], "count acc.", "RMSE (px)", "frames/s", "notes"]
    body = [
        [r["method"], *(report.cell(r[k], scale=100) for k in AP_KEYS)]
        + [
            report.cell(r["count_accuracy"], ".1f", scale=100)
            + (" %" if r["count_accuracy"] is not None else ""),
            report.cell(r["rmse"], ".4f"),
            report.cell(r["fps"], ",.0f"),
            r["note"],
        ]
        for r in rows
    ]
    return f"**{title}**\n\n" + report.markdown_table(header, body)


@jax.jit
def oracle_fit(images, targets, count):
    """LM from the true positions and count; scored like ``localize`` (predicted position error)."""

    def one(z, t, k):
        active = (jnp.arange(t.shape[0]) < k).astype(z.dtype)
        theta, _, H = refine.fit_one(t, active, z, sigma=0.5, saturation=255.0, iterations=30)
        _, score = refine.position_score(H, active, refine.pixel_variance(z, 0.0))
        return jnp.concatenate([theta[:, :2] * active[:, None], score[:, None]], axis=1)

    return jax.vmap(one)(images, targets, count)
