"""Every ``python -m <module>`` of the docs' shell blocks names a module that runs: ``--help`` exits 0.

The commands are read from the fenced ``bash`` / ``sh`` / ``shell`` / ``console`` blocks of README.md
and docs/*.md (continuation lines joined, comments dropped, ``&&`` / ``;`` / ``|`` chains split), so a
renamed or deleted entry point, or one that no longer imports, fails here by name. Each distinct module
is run once, from the repository root, as ``python -m <module> --help`` (``helpers.run_module``: a process
of its own, forked from one that has imported the libraries already, instead of one start-up each).
"""

from __future__ import annotations

import os
import pathlib
import re
import shlex
import subprocess

import pytest

from tests import helpers

REPO = pathlib.Path(helpers.ROOT)
DOC_FILES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
SHELL_FENCES = {"bash", "sh", "shell", "console"}
HELP_TIMEOUT_S = 120
_MODULE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")


def shell_blocks(text: str) -> list[str]:
    """The bodies of the fenced blocks whose info string names a shell."""
    blocks: list[str] = []
    body: list[str] = []
    language = None  # None outside a fence, else the fence's info string ("" when it has none)
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("```"):
            if language is None:
                words = stripped[3:].split()
                language, body = (words[0].lower() if words else ""), []
            else:
                if language in SHELL_FENCES:
                    blocks.append("\n".join(body))
                language = None
            continue
        if language is not None:
            body.append(line)
    return blocks


def modules_in(block: str) -> list[str]:
    """The modules run as ``python -m <module>`` (or ``python3 -m``) anywhere in a shell block."""
    found = []
    logical = re.sub(r"\\\n", " ", block)  # join continuation lines
    for line in logical.splitlines():
        line = re.sub(r"^\s*\$\s+", "", line)  # a console prompt
        lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True  # comments ('#' to the end of the line) are dropped
        try:
            tokens = list(lexer)
        except ValueError as err:  # an unbalanced quote: the docs' command is malformed
            raise AssertionError(f"cannot parse the shell line {line!r}: {err}") from err
        for k in range(len(tokens) - 2):
            if tokens[k] in ("python", "python3") and tokens[k + 1] == "-m":
                found.append(tokens[k + 2])
    return found


def documented_modules() -> dict[str, list[str]]:
    """Module -> the doc files whose shell blocks run it."""
    where: dict[str, list[str]] = {}
    for path in DOC_FILES:
        for block in shell_blocks(path.read_text()):
            for module in modules_in(block):
                files = where.setdefault(module, [])
                name = str(path.relative_to(REPO))
                if name not in files:
                    files.append(name)
    return where


MODULES = documented_modules()


def test_the_docs_commands_are_found():
    """The extraction sees the set-up commands and the main entry points (so it cannot pass empty)."""
    for module in ("experiments.quickstart", "pytest", "experiments.train", "datasets.build"):
        assert module in MODULES, (module, sorted(MODULES))
    assert "README.md" in MODULES["experiments.quickstart"]
    bad = [m for m in MODULES if not _MODULE.fullmatch(m)]
    assert not bad, f"not module names after 'python -m': {bad}"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_documented_module_runs_help(module):
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    try:
        done = helpers.run_module([module, "--help"], cwd=REPO, env=env, timeout=HELP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        pytest.fail(
            f"python -m {module} --help ran over {HELP_TIMEOUT_S} s (documented in {MODULES[module]})"
        )
    output = (done.stdout + done.stderr).strip()
    assert done.returncode == 0, (
        f"python -m {module} --help exited {done.returncode} (documented in {MODULES[module]}):\n"
        + output[-3000:]
    )
    assert output, f"python -m {module} --help printed nothing"
