"""The README's Python blocks run as written, in the order written, in one namespace, at tiny sizes (the
sample counts and iteration counts shrunk; every call and argument kept), and give what they say."""

from __future__ import annotations

import pathlib
import re

import numpy as np

from tests import helpers

README = pathlib.Path(helpers.ROOT) / "README.md"
#: (pattern, replacement): the README's sizes, made tiny
TINY = [(r"\bn=(100|1000)\b", "n=8"), (r"\bn=4\b", "n=1"), (r"iterations=500", "iterations=5")]


def _blocks() -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", README.read_text(), flags=re.S | re.M)


def test_readme_python_blocks_run_in_order():
    blocks = _blocks()
    assert len(blocks) >= 6
    namespace: dict = {"__name__": "readme"}
    for k, block in enumerate(blocks):
        small = block
        for pattern, repl in TINY:
            small = re.sub(pattern, repl, small)
        try:
            exec(compile(small, f"README.md[python block {k}]", "exec"), namespace)
        except Exception as err:  # name the block that failed
            raise AssertionError(f"README.md python block {k} failed: {err!r}\n{small}") from err
    # the shapes the comments promise
    assert namespace["maps"].shape == (8, 33, 33)
    assert namespace["net_maps"].shape == (8, 33, 33)
    points, count = namespace["points"], namespace["count"]
    assert points.shape[0] == 8 and points.shape[2] == 3 and np.asarray(count).shape == (8,)
