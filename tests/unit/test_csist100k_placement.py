"""The lattice-proposal rejection sampler places targets exactly like plain rejection from the box."""

from __future__ import annotations

import numpy as np
from scipy import stats

from csist_jax.data import csist100k

MIN_DISTANCE = 0.52 * 1.9 * 0.5


def test_second_target_is_uniform_over_the_valid_region():
    data = csist100k.generate(seed=21, n=3000)
    two = data["count"] >= 2
    first = data["targets"][two, 0, :2].astype(np.float64)
    second = data["targets"][two, 1, :2].astype(np.float64)
    box_lo = np.floor(first + 0.4) - 0.4  # the first target lies in [X - 0.4, X + 0.6)
    # plain rejection from the whole box, as the public generator does, for the same first targets
    rng = np.random.default_rng(0)
    plain = np.empty_like(second)
    for i, (lo, p) in enumerate(zip(box_lo, first)):
        while True:
            q = lo + rng.uniform(0.0, 1.0, 2)
            if np.linalg.norm(q - p) >= MIN_DISTANCE:
                plain[i] = q
                break
    ours = np.linalg.norm(second - first, axis=1)
    ref = np.linalg.norm(plain - first, axis=1)
    assert ours.min() >= MIN_DISTANCE - 1e-5
    assert stats.ks_2samp(ours, ref).pvalue > 1e-3
    for axis in (0, 1):
        assert (
            stats.ks_2samp(second[:, axis] - box_lo[:, axis], plain[:, axis] - box_lo[:, axis]).pvalue > 1e-3
        )


def test_fifth_targets_are_placed_as_often_as_with_100k_plain_tries():
    # 6.7 % of the images ask for five targets; on the 20,000 images of seed 0, plain rejection with
    # 100,000 tries from the whole box (the public generator) ends with five in 4.70 %, 100 plain tries in
    # only 2.0 %, this sampler in 4.70 %; seeds vary by about 0.15 % (binomial) around 4.5 %
    data = csist100k.generate(seed=22, n=20000)
    assert np.mean(data["count"] == 5) > 0.037
