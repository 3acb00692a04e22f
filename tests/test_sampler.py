"""Multi-task sampler: configured distributions, empirical frequencies, determinism, resume."""

from __future__ import annotations

import math

import numpy as np
import pytest

from xrobust.data.sampler import MultiTaskSampler
from xrobust.errors import CheckpointError, ConfigError

SIZES = {"mnli": 392_702, "squad": 87_599, "hellaswag": 39_905, "csqa": 9_741}


def test_probabilities_follow_each_strategy():
    n = np.array(list(SIZES.values()), dtype=float)
    got = lambda **kw: np.array(list(MultiTaskSampler(SIZES, **kw).probabilities().values()))  # noqa: E731
    np.testing.assert_allclose(got(strategy="uniform"), np.full(4, 0.25))
    np.testing.assert_allclose(got(strategy="proportional"), n / n.sum())
    capped = np.minimum(n, 50_000)
    np.testing.assert_allclose(got(strategy="capped_proportional", cap=50_000), capped / capped.sum())
    t2 = n ** 0.5
    np.testing.assert_allclose(got(strategy="temperature", temperature=2.0), t2 / t2.sum())
    np.testing.assert_allclose(got(strategy="temperature", temperature=1.0), n / n.sum())
    # tiny T: essentially all mass on the largest task, no overflow
    assert got(strategy="temperature", temperature=0.01)[0] == pytest.approx(1.0)


@pytest.mark.parametrize("kw", [dict(strategy="proportional"), dict(strategy="temperature", temperature=3.0),
                                dict(strategy="capped_proportional", cap=20_000), dict(strategy="uniform")])
def test_empirical_frequencies_match(kw):
    s = MultiTaskSampler(SIZES, seed=11, **kw)
    draws = 40_000
    counts = {t: 0 for t in SIZES}
    for _ in range(draws):
        counts[s.sample()] += 1
    p = s.probabilities()
    chi2 = sum((counts[t] - draws * p[t]) ** 2 / (draws * p[t]) for t in SIZES)
    # 3 degrees of freedom: P(chi2 > 16.27) = 0.001
    assert chi2 < 16.27, (counts, p)
    for t in SIZES:
        assert abs(counts[t] / draws - p[t]) < 4 * math.sqrt(p[t] * (1 - p[t]) / draws) + 1e-9


def test_deterministic_and_resumable():
    a = MultiTaskSampler(SIZES, "temperature", temperature=2.0, seed=7)
    seq = [a.sample() for _ in range(10_000)]
    assert seq == [MultiTaskSampler(SIZES, "temperature", temperature=2.0, seed=7).task_at(i) for i in range(10_000)]
    assert seq != [MultiTaskSampler(SIZES, "temperature", temperature=2.0, seed=8).sample() for _ in range(10_000)]
    b = MultiTaskSampler(SIZES, "temperature", temperature=2.0, seed=7)
    first = [b.sample() for _ in range(5_000)]
    state = b.state_dict()
    c = MultiTaskSampler(SIZES, "temperature", temperature=2.0, seed=7)
    c.load_state_dict(state)
    assert first + [c.sample() for _ in range(5_000)] == seq
    with pytest.raises(CheckpointError, match="probabilities"):
        MultiTaskSampler(SIZES, "uniform", seed=7).load_state_dict(state)


def test_config_errors_name_the_problem():
    with pytest.raises(ConfigError, match="cap"):
        MultiTaskSampler(SIZES, "capped_proportional")
    with pytest.raises(ConfigError, match="temperature"):
        MultiTaskSampler(SIZES, "temperature", temperature=0)
    with pytest.raises(ConfigError, match="'csqa' has size 0"):
        MultiTaskSampler({**SIZES, "csqa": 0})
    with pytest.raises(ConfigError, match="strategy='nope'"):
        MultiTaskSampler(SIZES, "nope")
    assert MultiTaskSampler({"only": 3}).sample() == "only"
