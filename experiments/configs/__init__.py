"""Experiment configs: a few files, each choosing a variant by its ``get_config`` argument, the command and
the expected result of each variant in the file's docstring.

Run any of them with ``python -m experiments.train --config=experiments/configs/<file>.py:<variant>
--workdir=DIR`` (``cpu.py``, ``published.py``, ``seqcsist.py``, ``zoo.py``; ``common.py`` holds the
shared recipes). Override any field on the command line by its dotted path, e.g.
``--config.optim.learning_rate=3e-4``; make any run short with ``--config.optim.num_steps=50``. The
config's groups: ``csist_jax.train.config`` and docs/training.md.
"""
