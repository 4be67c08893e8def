"""Datasets: seeded, vectorised generators and readers/writers of the official on-disk layouts."""
