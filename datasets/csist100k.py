"""TFDS builder for CSIST-100K (single frame, SPEC sec. 4).

Configs: ``full`` (80,000 / 10,000 / 10,000, the published sizes), ``small`` (8,000 / 1,000 / 1,000, for
CPU-scale runs and the quickstart), ``tiny`` (64 / 16 / 16, for tests) — all synthesised from seed 0 —
and ``official`` / ``official_skip`` (import the official download from ``manual_dir``, raising on
or skipping and reporting bad files). Build without TensorFlow::

    python -m datasets.build build csist100k --config small --data-dir /abs/path

or in Python ``Csist100k(config="small", data_dir=...).download_and_prepare(file_format="array_record")``;
read with ``builder.as_data_source()[split]`` (random access) or ``csist_jax.data.pipeline``.
"""

from __future__ import annotations

import numpy as np
import tensorflow_datasets as tfds

from csist_jax.data import csist100k as generator
from csist_jax.data import io
from datasets import common

_SIZES = {
    "full": {"train": 80_000, "val": 10_000, "test": 10_000},
    "small": {"train": 8_000, "val": 1_000, "test": 1_000},
    "tiny": {"train": 64, "val": 16, "test": 16},
}


class Csist100k(tfds.core.GeneratorBasedBuilder):
    """CSIST-100K: 11x11 8-bit frames of 1-5 closely spaced point targets with sub-pixel positions."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Synthetic protocol of SPEC sec. 4; official import via manual_dir."}
    BUILDER_CONFIGS = [
        *(
            common.DatasetConfig(
                name=name, description=f"Synthetic, seed 0: {sizes}.", seed=0, split_sizes=sizes
            )
            for name, sizes in _SIZES.items()
        ),
        *common.official_configs(),
    ]
    MANUAL_DOWNLOAD_INSTRUCTIONS = common.MANUAL_DOWNLOAD_INSTRUCTIONS

    def _info(self) -> tfds.core.DatasetInfo:
        size = int(self.builder_config.protocol.get("size", 11))
        return tfds.core.DatasetInfo(
            builder=self,
            description=__doc__,
            features=common.frame_features(size, sequence=False),
            disable_shuffling=True,  # record i is image i, as the generator numbers them
            homepage="https://github.com/GrokCV/GrokCSO",
            citation="DISTA-Net: Dynamic Closely-Spaced Infrared Small Target Unmixing (ICCV 2025), "
            "arXiv:2505.19148",
        )

    def _split_generators(self, dl_manager):
        config = self.builder_config
        if config.official:
            return {s: self._generate_examples(official=dl_manager.manual_dir / s) for s in common.SPLITS}
        # TFDS cannot store an empty split: a size-0 split is left out of the dataset
        return {s: self._generate_examples(split=s, n=n) for s, n in config.split_sizes.items() if n > 0}

    def _generate_examples(self, split: str | None = None, n: int = 0, official=None):
        if official is not None:
            data = io.read_dir(
                official, layout="csist100k", progress=True, on_error=self.builder_config.on_error
            )
            if len(data["count"]) == 0:
                raise ValueError(f"{official}: the split directory holds no samples")
            yield from _examples(data, data["id"], data["sigma"])
            return
        config = self.builder_config
        sigma = float(config.protocol.get("sigma", 0.5))
        chunk = common.chunk_size(config.split_sizes, common.CHUNK)
        for lo in range(0, n, chunk):
            # always a full chunk, trimmed: one compiled shape serves every split
            data = generator.generate(
                config.seed, chunk, start=common.SPLIT_START[split] + lo, **config.protocol
            )
            keep = min(chunk, n - lo)
            data = {k: v[:keep] for k, v in data.items()}
            ids = np.arange(lo, lo + keep)
            yield from _examples(data, ids, np.full(keep, sigma, np.float32))


def _examples(data, ids, sigma):
    for i, k in enumerate(ids):
        count = int(data["count"][i])
        yield (
            int(k),
            {
                "image": data["image"][i],
                "targets": data["targets"][i, :count],
                "count": count,
                "sigma": np.float32(sigma[i]),
                "id": int(k),
            },
        )
