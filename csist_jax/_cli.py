"""Command-line entry points: a user's mistake ends with one line, not a traceback.

Every ``python -m experiments.*`` / ``python -m datasets.build`` script ends with
``raise SystemExit(run_main(main))``. :func:`run_main` calls ``main(argv)`` (``sys.argv[1:]`` less a
``--verbose``); when it raises one of :func:`user_errors` (a bad value or argument, a missing, unreadable
or unwritable file, a refused workdir, an unreadable dataset file or checkpoint) it prints

    python -m <module>: error: <the message, on one line>

to stderr and exits with status 2. ``--verbose`` anywhere on the command line, or the environment
variable ``CSIST_JAX_TRACEBACK=1``, shows the full traceback instead. Any other exception (a bug) always
shows its traceback.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

#: set to 1 (or any value but 0 / empty) to see the traceback of a user error
TRACEBACK_ENV = "CSIST_JAX_TRACEBACK"
VERBOSE_FLAG = "--verbose"
EXIT_USER_ERROR = 2


def user_errors() -> tuple[type[BaseException], ...]:
    """The exceptions that report a user's mistake (or the state of their files), not a bug: ``ValueError``
    and ``TypeError`` (argument and config checks; ``DatasetFileError`` and ``ConfigMismatch`` are
    ``ValueError``), ``OSError`` (a missing, unreadable or unwritable path), ``FloatingPointError`` (a
    non-finite loss, naming the step), and the refusals of :mod:`csist_jax.train` (``WorkdirBusy``,
    ``NotResumable``, ``NoReadableCheckpoint``)."""
    errors: list[type[BaseException]] = [ValueError, TypeError, OSError, FloatingPointError]
    if "csist_jax.train.workdir" in sys.modules:  # no import here: only a loaded module can have raised
        workdir = sys.modules["csist_jax.train.workdir"]
        errors += [workdir.WorkdirBusy, workdir.NotResumable]
    if "csist_jax.train.checkpoints" in sys.modules:
        errors.append(sys.modules["csist_jax.train.checkpoints"].NoReadableCheckpoint)
    return tuple(errors)


def wants_traceback(argv: Sequence[str] | None = None) -> bool:
    """Whether ``--verbose`` is in ``argv`` (default ``sys.argv``) or ``CSIST_JAX_TRACEBACK`` is set."""
    argv = sys.argv[1:] if argv is None else argv
    return VERBOSE_FLAG in argv or os.environ.get(TRACEBACK_ENV, "").strip() not in ("", "0")


def program_name() -> str:
    """``python -m <module>`` for a module run with ``-m``, else the script's file name."""
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    if spec is not None and spec.name:
        return f"python -m {spec.name.removesuffix('.__main__')}"
    return os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "csist_jax"


def one_line(err: BaseException) -> str:
    """The message of ``err`` on one line (its type name when it has no message; an ``OSError``'s
    ``[Errno n] ...: 'path'`` as Python writes it)."""
    text = str(err)
    if isinstance(err, KeyError) and len(err.args) == 1:
        text = str(err.args[0])
    text = " ".join(part.strip() for part in text.splitlines() if part.strip())
    return text or type(err).__name__


def run_main(main: Callable[[list[str]], Any], argv: Sequence[str] | None = None, prog: str | None = None):
    """``main(argv)`` with ``--verbose`` taken out of ``argv`` (default ``sys.argv[1:]``); returns what
    ``main`` returns. A :func:`user_errors` exception becomes ``<prog>: error: <message>`` on stderr and
    ``SystemExit(2)``, unless :func:`wants_traceback`, which lets it propagate (the traceback shows)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    verbose = wants_traceback(argv)
    argv = [arg for arg in argv if arg != VERBOSE_FLAG]
    try:
        return main(argv)
    except user_errors() as err:
        if verbose:
            raise
        sys.stdout.flush()
        print(f"{prog or program_name()}: error: {one_line(err)}", file=sys.stderr, flush=True)
        raise SystemExit(EXIT_USER_ERROR) from None
