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
"""

from __future__ import annotations

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


if __name__ == "__main__":
    import sys

    if any(arg in ("--help", "-?", "--helpshort") for arg in sys.argv[1:]):
        # absl prints the usage and exits with status 1 on --help; print the same and exit 0, like
        # every other entry point of the project (tests/test_docs_commands.py runs each --help).
        app.usage(shorthelp=True, writeto_stdout=True)
        raise SystemExit(0)
    app.run(main)
