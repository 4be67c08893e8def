"""The examples of docs/api.md run as written (one namespace, top to bottom) and their checks hold."""

from __future__ import annotations

import pathlib
import re

from tests import helpers

API_PAGE = pathlib.Path(helpers.ROOT) / "docs" / "api.md"


def _blocks(text: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", text, flags=re.S | re.M)


def test_api_page_has_the_composition_examples():
    blocks = _blocks(API_PAGE.read_text())
    code = "\n".join(blocks)
    assert len(blocks) >= 6
    for needle in ("jax.jit(jax.vmap(one))", "jax.grad(", "solvers.fista(", "operator=", "match_detections"):
        assert needle in code, needle


def test_api_page_examples_run():
    namespace: dict = {"__name__": "api_docs"}
    for k, block in enumerate(_blocks(API_PAGE.read_text())):
        try:
            exec(compile(block, f"{API_PAGE.name}[block {k}]", "exec"), namespace)
        except Exception as err:  # name the block that failed
            raise AssertionError(f"docs/api.md block {k} failed: {err!r}\n{block}") from err
    assert float(namespace["fista_loss"](namespace["learned"])) < float(namespace["before"])
