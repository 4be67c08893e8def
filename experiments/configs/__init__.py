"""Experiment configs: one ``get_config()`` per file, its command and expected result in its docstring.

Run any of them with ``python -m experiments.train --config=experiments/configs/<file>.py --workdir=DIR``
(override any field on the command line, e.g. ``--config.learning_rate=3e-4``).
"""
