"""Train any network of ``csist_jax.models``: flags -> ``csist_jax.train.train_and_evaluate``.

    python -m experiments.train --config=experiments/configs/cpu.py:dista_net \\
        --workdir=runs/cpu_dista_net
    python -m experiments.train --config=experiments/configs/published.py:dista_net --workdir=gs://... \\
        --config.optim.batch_size=256
    # any run short: --config.optim.num_steps=50

``--config=FILE.py:VARIANT`` calls the file's ``get_config("VARIANT")``: ``cpu.py`` (CSIST-100K at a
CPU budget), ``published.py`` (the published recipes, ``MODEL[,C]``), ``seqcsist.py`` (SeqCSIST),
``zoo.py`` (the comparison zoo, ``NAME[,SCALE[,C]]``); each file's docstring lists its variants.
The config's groups (docs/training.md; ``csist_jax.train.default_config()`` holds every field):

  model  name, c, q_init_size and the model's module fields (stages, channels, step_init, ...)
  data   dataset, source, seed, dir, train_size, val_size, window, noise_std, background
  optim  batch_size, learning_rate, schedule, weight_decay, num_epochs, num_steps (> 0: overrides epochs)
  loss   unfolding.sym_weight, derefnet.objective, localizer.count_weight / physics_weight
  eval   batch_size, brightness_threshold, every_epochs
  (run)  seed, log_every_steps, checkpoint_every_steps, keep_checkpoints, progress, steps_per_call,
         compute_dtype, profile_steps, restart

Any config field can be overridden (``--config.<group>.<field>=<value>``, e.g.
``--config.optim.learning_rate=3e-4``); an unknown field, in the file or on the command line, is an
error naming the field meant. Rerunning with the same ``--workdir`` resumes from its latest checkpoint,
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

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "an experiments/configs/*.py file, with its variant after a colon (cpu.py:ista_net)"
)
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
    ml_collections raises ``AttributeError(KeyError(...))`` for it) reported as a ``ValueError``, with
    the field meant (a field of the flat config of before the groups: its new place); a value given to
    a whole group (``--config.model=lista``) is refused naming the group's fields."""
    from csist_jax.train import config as config_lib

    for arg in argv:
        path, sep, value = arg.removeprefix("--config.").partition("=")
        if arg.startswith("--config.") and sep and path in config_lib.GROUPS:
            fields = list(config_lib.default_config()[path])
            example = "name" if "name" in fields else fields[0]
            raise ValueError(
                f"--config.{path} is a group of fields ({', '.join(fields)}): set one of them, e.g. "
                f"--config.{path}.{example}={value}"
            )
    try:
        return app.parse_flags_with_usage(argv)
    except (AttributeError, KeyError) as err:
        inner = err.args[0] if err.args and isinstance(err.args[0], KeyError) else err
        text = str(inner.args[0]) if isinstance(inner, KeyError) and inner.args else ""
        key, _, hint = text.partition("\n")
        key = key.strip("'\"")
        names = [a.split("=")[0] for a in argv if a.startswith("--config.")]
        flag = next((name for name in names if key and key in name.split(".")[1:]), None)
        if flag is None:  # not an unknown override: let it show as it is
            raise
        field = flag[len("--config.") :]
        moved, other = config_lib.moved_to(field), config_lib.elsewhere(field)
        if moved is not None:  # a field of the flat config of before the groups
            hint = f"The config is grouped: it is --config.{moved} now (docs/training.md)."
        elif not hint and other:
            hint = "Did you mean " + " or ".join(f"--{p}" for p in other) + "?"
        raise ValueError(f"{flag}: the config has no field {key!r}. {hint}".strip()) from err


def run(argv: list[str]) -> None:
    """:func:`main` under absl with the command-line arguments ``argv`` (no program name)."""
    app.run(main, argv=[sys.argv[0], *argv], flags_parser=_parse_flags)


if __name__ == "__main__":
    if any(arg in ("--help", "-?", "--helpshort") for arg in sys.argv[1:]):
        # absl prints the usage and exits with status 1 on --help; print the same and exit 0, like
        # every other entry point of the project (tests/e2e/test_docs_commands.py runs each --help).
        app.usage(shorthelp=True, writeto_stdout=True)
        raise SystemExit(0)
    from csist_jax._cli import run_main

    run_main(run)
