"""Every ``python -m <module>`` of the docs' shell blocks names a module that runs: ``--help`` exits 0.

The commands are read from the fenced ``bash`` / ``sh`` / ``shell`` / ``console`` blocks of README.md
and docs/*.md (continuation lines joined, comments dropped, ``&&`` / ``;`` / ``|`` chains split), so a
renamed or deleted entry point, or one that no longer imports, fails here by name. Each distinct module
is run once, from the repository root, as ``python -m <module> --help`` does: ``runpy.run_module`` as
``__main__`` with ``sys.argv`` set, in a child process of its own forked from one interpreter that has
imported the libraries already (one start-up instead of one per module: about 3 s each on 2 cores).
"""

from __future__ import annotations

import json
import os
import pathlib
import re
import shlex
import subprocess
import sys
import tempfile

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


def run_helps(modules: list[str], out: str) -> None:
    """``python -m <module> --help`` for each module, each in a child forked from this process (after the
    common imports), from the current directory; ``{module: [exit code, output]}`` written to ``out``.
    A child that runs over ``HELP_TIMEOUT_S`` is killed and reported with the code ``"timeout"``."""
    import runpy
    import signal
    import time

    import csist_jax  # noqa: F401  the imports every entry point shares, paid once
    import csist_jax.models  # noqa: F401
    import csist_jax.train  # noqa: F401

    results = {}
    for module in modules:
        log = tempfile.TemporaryFile()
        pid = os.fork()
        if pid == 0:  # the child: stdout and stderr to the log, then what `python -m` does
            os.dup2(log.fileno(), 1)
            os.dup2(log.fileno(), 2)
            code = 1
            try:
                sys.argv = [module, "--help"]
                runpy.run_module(module, run_name="__main__", alter_sys=True)
                code = 0
            except SystemExit as exit:
                code = exit.code if isinstance(exit.code, int) else (0 if exit.code is None else 1)
                if isinstance(exit.code, str):
                    print(exit.code, file=sys.stderr)
            except BaseException:
                import traceback

                traceback.print_exc()
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        deadline = time.monotonic() + HELP_TIMEOUT_S
        while (done := os.waitpid(pid, os.WNOHANG))[0] == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        if done[0] == 0:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            code = "timeout"
        else:
            code = os.waitstatus_to_exitcode(done[1])
        log.seek(0)
        results[module] = [code, log.read().decode(errors="replace")]
    with open(out, "w") as f:
        json.dump(results, f)


@pytest.fixture(scope="module")
def helps(tmp_path_factory) -> dict:
    """``{module: [exit code, output]}`` of every documented module's ``--help``, run from the repository
    root by one interpreter (``run_helps``)."""
    out = tmp_path_factory.mktemp("helps") / "helps.json"
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    code = f"from tests.e2e.test_docs_commands import run_helps; run_helps({sorted(MODULES)!r}, {str(out)!r})"
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=HELP_TIMEOUT_S * 3,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(out.read_text())


@pytest.mark.parametrize("module", sorted(MODULES))
def test_documented_module_runs_help(module, helps):
    code, output = helps[module]
    if code == "timeout":
        pytest.fail(
            f"python -m {module} --help ran over {HELP_TIMEOUT_S} s (documented in {MODULES[module]})"
        )
    output = output.strip()
    assert code == 0, (
        f"python -m {module} --help exited {code} (documented in {MODULES[module]}):\n" + output[-3000:]
    )
    assert output, f"python -m {module} --help printed nothing"
