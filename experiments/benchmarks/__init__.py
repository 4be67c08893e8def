"""Benchmark sections for ``python -m experiments.bench``; one module per layer."""
