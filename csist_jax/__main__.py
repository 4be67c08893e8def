"""``python -m csist_jax COMMAND ...`` (console script ``csist-jax``): the commands of :mod:`csist_jax.cli`.

    python -m csist_jax unmix INPUT... --out detections.csv
    python -m csist_jax unmix --help

A user's mistake (a missing or unreadable file, a bad option) ends with one line and exit status 2
(:func:`csist_jax._cli.run_main`); ``--verbose`` shows the traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from csist_jax._cli import program_name, run_main
from csist_jax.cli import COMMANDS


def _parser(prog: str) -> argparse.ArgumentParser:
    listing = "\n".join(f"  {name:<10}{line}" for name, (_, line) in COMMANDS.items())
    return argparse.ArgumentParser(
        prog=prog,
        usage=f"{prog} COMMAND [options] (COMMAND --help for its options)",
        description="csist-jax: closely-spaced infrared small target unmixing, for users' files.",
        epilog=f"commands:\n{listing}\n\nguide: docs/cli.md",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def dispatch(argv: list[str], prog: str | None = None) -> int:
    """Run the command named by ``argv[0]`` on the rest of ``argv``."""
    prog = prog or program_name()
    parser = _parser(prog)
    if not argv or argv[0] in ("-h", "--help"):
        parser.print_help(sys.stdout if argv else sys.stderr)
        return 0 if argv else 2
    if argv[0] not in COMMANDS:
        parser.error(f"unknown command {argv[0]!r}; the commands are: {', '.join(COMMANDS)}")
    module = importlib.import_module(COMMANDS[argv[0]][0])
    return module.main(argv[1:], prog=f"{prog} {argv[0]}")


def main(argv: list[str] | None = None) -> int:
    prog = program_name()
    return run_main(lambda args: dispatch(args, prog), argv, prog=prog)


if __name__ == "__main__":
    raise SystemExit(main())
