"""Train any network of ``csist_jax.models``: flags -> ``csist_jax.train.train_and_evaluate``.

    python -m experiments.train --config=experiments/configs/cpu_dista_net.py \\
        --workdir=runs/cpu_dista_net
    python -m experiments.train --config=experiments/configs/dista_net_c3.py --workdir=gs://... \\
        --config.batch_size=256

Any config field can be overridden (``--config.<field>=<value>``); an unknown field, in the file or on
the command line, is an error. Rerunning with the same ``--workdir`` resumes from its latest checkpoint,
with the same experiment (only the logging/validation/checkpoint cadence may change, and the run may be
lengthened); a workdir in use by a live run, or with results but no readable checkpoint, is refused.
``--config.restart=True`` starts afresh there, moving the earlier run to ``<workdir>/previous-<time>/``.
On a multi-host GPU/TPU job ``jax.distributed`` is initialised from
the environment. Library INFO logs (Orbax's checkpoint messages) are hidden unless ``--verbosity=0``.
A mistake (an unknown or invalid config field, a refused workdir, a missing file) ends with one line
``python -m experiments.train: error: ...`` and status 2; ``--verbose`` (or ``CSIST_JAX_TRACEBACK=1``)
shows the traceback.
"""

from __future__ import annotations

import sys

from absl import app, flags, logging
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file("config", None, "path to an experiments/configs/*.py file")
_WORKDIR = flags.DEFINE_string("workdir", None, "directory for checkpoints and logs (resumed if present)")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if not flags.FLAGS["verbosity"].present:  # absl's default, INFO, prints every checkpoint write
        logging.set_verbosity(logging.WARNING)
    from csist_jax import train

    train.maybe_initialize_distributed()
    result = train.train_and_evaluate(_CONFIG.value, _WORKDIR.value)
    print(
        f"done: step {result['step']}, best val CSO-mAP {100 * result['best_val_map']:.2f} "
        f"at step {result['best_step']}; best network in {_WORKDIR.value}/best"
    )


def _parse_flags(argv: list[str]) -> list[str]:
    """absl's flag parsing, with an override of a field the config lacks (``--config.learning_rat=1``;
    ml_collections raises ``AttributeError(KeyError(...))`` for it) reported as a ``ValueError``."""
    try:
        return app.parse_flags_with_usage(argv)
    except (AttributeError, KeyError) as err:
        inner = err.args[0] if err.args and isinstance(err.args[0], KeyError) else err
        text = str(inner.args[0]) if isinstance(inner, KeyError) and inner.args else ""
        key, _, hint = text.partition("\n")
        key = key.strip("'\"")
        names = [a.split("=")[0] for a in argv if a.startswith("--config.")]
        flag = next((name for name in names if key and name.split(".")[-1] == key), None)
        if flag is None:  # not an unknown override: let it show as it is
            raise
        raise ValueError(f"{flag}: the config has no field {key!r}. {hint}".strip()) from err


def run(argv: list[str]) -> None:
    """:func:`main` under absl with the command-line arguments ``argv`` (no program name)."""
    app.run(main, argv=[sys.argv[0], *argv], flags_parser=_parse_flags)


if __name__ == "__main__":
    if any(arg in ("--help", "-?", "--helpshort") for arg in sys.argv[1:]):
        # absl prints the usage and exits with status 1 on --help; print the same and exit 0, like
        # every other entry point of the project (tests/test_docs_commands.py runs each --help).
        app.usage(shorthelp=True, writeto_stdout=True)
        raise SystemExit(0)
    from csist_jax._cli import run_main

    run_main(run)
