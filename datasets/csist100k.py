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
    BUILDER_CONFIGS = common.builder_configs(_SIZES)
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
        return common.split_generators(self, dl_manager)

    def _generate_examples(self, split: str | None = None, n: int = 0, official=None):
        if official is not None:
            data = common.read_official(official, "csist100k", self.builder_config.on_error)
            yield from _examples(data, data["id"], data["sigma"])
            return
        sigma = float(self.builder_config.protocol.get("sigma", 0.5))
        for lo, data in common.generated_chunks(
            self.builder_config, generator.generate, split, n, common.CHUNK
        ):
            keep = len(data["count"])
            yield from _examples(data, np.arange(lo, lo + keep), np.full(keep, sigma, np.float32))


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
