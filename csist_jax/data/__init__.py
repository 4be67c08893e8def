"""Datasets: seeded, vectorised generators (``csist100k``, ``seqcsist``), readers and writers of the
official png + xml layouts (``io``) and the batching pipeline (``pipeline``)."""

from csist_jax.data import csist100k, io, pipeline, seqcsist

__all__ = ["csist100k", "io", "pipeline", "seqcsist"]
