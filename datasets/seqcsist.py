"""TFDS builder for SeqCSIST (multi-frame, SPEC sec. 5), one example per frame.

Configs: ``full`` (3,500 / 750 / 750 trajectories of 20 frames = 100,000 frames, the published sizes),
``small`` (350 / 75 / 75), ``tiny`` (4 / 2 / 2, for tests) — synthesised from seed 0 — and ``official``
/ ``official_skip`` (import the official download from ``manual_dir``, raising on / skipping and reporting
bad files). Frames are stored trajectory-major (record
``20 j + t`` is frame ``t`` of trajectory ``j``, ids as in the official files) with their trajectory id and
0-based frame index; ``csist_jax.data.pipeline`` cuts them into 5-frame windows on the fly.
"""

from __future__ import annotations

import numpy as np
import tensorflow_datasets as tfds

from csist_jax.data import seqcsist as generator
from datasets import common

_SIZES = {
    "full": {"train": 3_500, "val": 750, "test": 750},
    "small": {"train": 350, "val": 75, "test": 75},
    "tiny": {"train": 4, "val": 2, "test": 2},
}
_CHUNK = 256  # trajectories per generator call


class Seqcsist(tfds.core.GeneratorBasedBuilder):
    """SeqCSIST: 20-frame trajectories of 2-4 closely spaced point targets moving along random curves."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Synthetic protocol of SPEC sec. 5; official import via manual_dir."}
    BUILDER_CONFIGS = common.builder_configs(_SIZES, " trajectories")
    MANUAL_DOWNLOAD_INSTRUCTIONS = common.MANUAL_DOWNLOAD_INSTRUCTIONS

    def _info(self) -> tfds.core.DatasetInfo:
        size = int(self.builder_config.protocol.get("size", 11))
        return tfds.core.DatasetInfo(
            builder=self,
            description=__doc__,
            features=common.frame_features(size, sequence=True),
            disable_shuffling=True,  # trajectory-major frame order is what windows index
            homepage="https://github.com/GrokCV/SeqCSIST",
            citation="SeqCSIST: Sequential Closely-Spaced Infrared Small Target Unmixing (IEEE TGRS 2025), "
            "arXiv:2507.09556",
        )

    def _split_generators(self, dl_manager):
        return common.split_generators(self, dl_manager)

    def _generate_examples(self, split: str | None = None, n: int = 0, official=None):
        if official is not None:
            data = common.read_official(official, "seqcsist", self.builder_config.on_error)
            yield from _examples(data, data["trajectory"], data["sigma"])
            return
        sigma = float(self.builder_config.protocol.get("sigma", 0.5))
        for lo, data in common.generated_chunks(self.builder_config, generator.generate, split, n, _CHUNK):
            trajectories = np.arange(lo, lo + len(data["count"]))
            yield from _examples(data, trajectories, np.full(data["image"].shape[:2], sigma, np.float32))


def _examples(data, trajectories, sigma):
    n_frames = data["image"].shape[1]
    for i, j in enumerate(trajectories):
        count = int(data["count"][i])
        for t in range(n_frames):
            k = int(j) * n_frames + t
            yield (
                k,
                {
                    "image": data["image"][i, t],
                    "targets": data["targets"][i, t, :count],
                    "count": count,
                    "sigma": np.float32(sigma[i, t]),
                    "id": k,
                    "trajectory": int(j),
                    "frame": t,
                },
            )
