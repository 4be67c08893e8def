"""The shape of the code base: one registry whose kinds the classes declare, no branching on the model
kind in the training route, imports only downward through the layers, and only ``csist_jax`` installed."""

from __future__ import annotations

import ast
import importlib.metadata
import pathlib
import re

import pytest

from csist_jax import models
from csist_jax.models import kinds
from tests import helpers

PACKAGE = pathlib.Path(helpers.ROOT) / "csist_jax"
#: the layers, bottom (0) to top; a package imports only from lower ranks (``_checks`` and ``_cli`` are
#: helpers below every layer; ``_cli`` reaches the training errors through ``sys.modules``, no import)
RANKS = {
    "_checks": -1,
    "_cli": -1,
    "physics": 0,
    "solvers": 1,
    "data": 1,
    "metrics": 1,
    "refine": 1,
    "models": 2,
    "train": 3,
    "unmixing": 4,
    "frames": 5,
    "__init__": 6,
    "cli": 7,
    "__main__": 8,
}


def test_every_registry_entry_declares_the_kind_of_its_class():
    for name, entry in models.REGISTRY.items():
        assert entry.kind == kinds.of(entry.cls), name
    # every name list is derived from the registry
    assert set(models.MODEL_NAMES) == set(models.names(kind=kinds.FRAME_MAPS))
    assert set(models.SEQUENCE_MODEL_NAMES) == set(models.names(kind=kinds.WINDOW_MAPS))
    assert set(models.LOCALIZER_NAMES) == {"localizer", "window_localizer"}
    assert set(models.ALL_NAMES) == set(models.REGISTRY)


def test_the_training_route_never_branches_on_the_model_kind():
    pattern = re.compile(
        r"is_localizer|is_sequence_model|LOCALIZER_NAMES|SEQUENCE_MODEL_NAMES|\.produces\b|\.consumes\b"
        r"|kind\.windows\b|isinstance\([^)]*(Network|Localizer|DeRefNet)|\.KIND\b"
        r"|getattr\(module, \"objective\""
    )
    hits = [
        f"{path.name}:{i + 1}: {line.strip()}"
        for path in sorted((PACKAGE / "train").glob("*.py"))
        for i, line in enumerate(path.read_text().splitlines())
        if pattern.search(line)
    ]
    assert not hits, hits


def _imports(path: pathlib.Path) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("csist_jax"):
            parts = node.module.split(".")
            out |= {parts[1]} if len(parts) > 1 else {a.name for a in node.names}
        elif isinstance(node, ast.Import):
            out |= {a.name.split(".")[1] for a in node.names if a.name.startswith("csist_jax.")}
    return out


def test_imports_only_run_down_the_layers():
    wrong = []
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE).parts
        layer = parts[0].removesuffix(".py")
        assert layer in RANKS, f"{path}: a new top-level module needs a layer in RANKS"
        for target in _imports(path) - {layer}:
            if RANKS.get(target, 99) >= RANKS[layer]:
                wrong.append(f"{path.relative_to(PACKAGE)} imports csist_jax.{target}")
    assert not wrong, wrong


def test_only_csist_jax_is_installed_as_a_top_level_package():
    try:
        dist = importlib.metadata.distribution("csist-jax")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("csist-jax is not installed (pip install -e .)")
    assert (dist.read_text("top_level.txt") or "").split() == ["csist_jax"]


EXPERIMENTS = PACKAGE.parent / "experiments"


def _experiment_modules() -> dict[pathlib.Path, str]:
    """Every module under ``experiments/`` and its dotted name."""
    return {
        path: ".".join(("experiments", *path.relative_to(EXPERIMENTS).with_suffix("").parts))
        for path in EXPERIMENTS.rglob("*.py")
    }


def _is_script(path: pathlib.Path) -> bool:
    """A runnable script: a module with a ``main`` function or an ``if __name__ == "__main__"`` block."""
    body = ast.parse(path.read_text()).body
    return any(isinstance(node, ast.FunctionDef) and node.name == "main" for node in body) or any(
        isinstance(node, ast.If) and "__main__" in ast.unparse(node.test) for node in body
    )


def test_no_experiment_script_imports_another_script():
    """Scripts share code only through the shared layer (``experiments.report`` / ``published`` /
    ``tables``, ``experiments.configs``, ``experiments.benchmarks``), never by importing a script."""
    modules = _experiment_modules()
    scripts = {name for path, name in modules.items() if _is_script(path)}
    assert {"experiments.quickstart", "experiments.csist100k_table", "experiments.train"} <= scripts
    assert {"experiments.report", "experiments.published", "experiments.tables"}.isdisjoint(scripts)
    wrong = []
    for path, name in modules.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                targets = {node.module} | {f"{node.module}.{a.name}" for a in node.names}
            elif isinstance(node, ast.Import):
                targets = {a.name for a in node.names}
            else:
                continue
            wrong += [f"{name} imports {t}" for t in sorted((targets & scripts) - {name})]
    assert not wrong, wrong


def test_experiments_score_only_through_train_evaluation():
    """No experiment re-implements scoring: CSO-mAP, PSNR / SSIM, count accuracy and RMSE come from
    ``csist_jax.train.evaluation`` (the benchmark of the metrics themselves aside)."""
    pattern = re.compile(
        r"cso_map_from_(maps|points)\(|metrics\.(psnr|ssim|count_accuracy|localization_rmse|by_count)\("
    )
    hits = [
        f"{name}:{i + 1}: {line.strip()}"
        for path, name in _experiment_modules().items()
        if name != "experiments.benchmarks.metrics"
        for i, line in enumerate(path.read_text().splitlines())
        if pattern.search(line)
    ]
    assert not hits, hits
