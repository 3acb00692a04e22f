"""The paired bootstrap on constructed inputs with known answers, its agreement with literal resampling,
and reproducibility with a seed."""

from __future__ import annotations

import numpy as np
import pytest

from xrobust.study.bootstrap import Moments, combine, exact_paired_bootstrap, influences, intervals, pair_moments


def _moments(num_a, den_a, num_b, den_b) -> Moments:
    """One group of N examples: (S, N) per system."""
    n = num_a.shape[1]
    va, pa = zip(*(influences(x, d, [n]) for x, d in zip(num_a, den_a)))
    vb, pb = zip(*(influences(x, d, [n]) for x, d in zip(num_b, den_b)))
    return pair_moments(np.array(va), np.array(pa), np.array(vb), np.array(pb), [n])


def _interval(m: Moments, **kw):
    low, high = intervals(m.mean, m.cov, **kw)
    return float(low[0]), float(high[0])


def _correlated_accuracy(rng, n_seeds=3, n=400, shift=0.3):
    """Right/wrong per example for two systems that find the same examples hard, seeds shifting both."""
    difficulty = rng.normal(size=n)
    seed_a, seed_b = rng.normal(scale=0.4, size=(2, n_seeds, 1))
    pa = 1 / (1 + np.exp(-(difficulty + shift + seed_a)))
    pb = 1 / (1 + np.exp(-(difficulty + seed_b)))
    return 100.0 * (rng.random((n_seeds, n)) < pa), 100.0 * (rng.random((n_seeds, n)) < pb)


def test_identical_systems_give_zero():
    rng = np.random.default_rng(0)
    a, _ = _correlated_accuracy(rng)
    ones = np.ones_like(a)
    assert _interval(_moments(a, ones, a, ones)) == (0.0, 0.0)
    assert exact_paired_bootstrap(a, ones, a, ones, samples=200) == (0.0, 0.0, 0.0)


def test_constant_difference_gives_that_difference():
    rng = np.random.default_rng(1)
    b = rng.uniform(0, 80, size=(3, 250))  # e.g. per-question F1
    ones = np.ones_like(b)
    low, high = _interval(_moments(b + 7.5, ones, b, ones))
    assert low == pytest.approx(7.5, abs=1e-4) and high == pytest.approx(7.5, abs=1e-4)
    point, low, high = exact_paired_bootstrap(b + 7.5, ones, b, ones, samples=300)
    assert (point, low, high) == pytest.approx((7.5, 7.5, 7.5), abs=1e-9)


def test_seed_noise_alone_is_resampled_over_seeds():
    # the same examples, per-seed offsets only: the interval is that of the mean of the seed offsets
    offsets = np.array([-2.0, 0.5, 4.0])
    b = np.tile(np.linspace(0, 100, 50), (3, 1))
    ones = np.ones_like(b)
    low, high = _interval(_moments(b + offsets[:, None], ones, b, ones), samples=20000, seed=3)
    # the 27 equally likely seed draws: the lowest mean (-2, all three draws the first seed) has
    # probability 1/27 > 2.5%, so it is the 2.5% quantile; likewise the highest (4) the 97.5% one
    assert low == pytest.approx(-2.0, abs=1e-5) and high == pytest.approx(4.0, abs=1e-5)
    narrower = _interval(_moments(b + offsets[:, None], ones, b, ones), samples=20000, seed=3, confidence=0.5)
    means = sorted(np.mean(offsets[list(idx)]) for idx in np.ndindex(3, 3, 3))
    assert narrower == pytest.approx((means[6], means[20]), abs=0.5)  # near the quartiles of the 27


@pytest.mark.parametrize("kind", ["accuracy", "f1"])
def test_agrees_with_literal_resampling(kind):
    rng = np.random.default_rng(7)
    if kind == "accuracy":
        num_a, num_b = _correlated_accuracy(rng)
        den_a = den_b = np.ones_like(num_a)
    else:  # entity F1: 2 TP over predicted + gold per sentence
        gold = rng.integers(0, 4, size=(1, 300)).repeat(3, axis=0)
        tp_a = np.minimum(gold, rng.integers(0, 4, size=gold.shape))
        tp_b = np.minimum(gold, rng.integers(0, 3, size=gold.shape))
        num_a, num_b = 200.0 * tp_a, 200.0 * tp_b
        den_a = gold + tp_a + rng.integers(0, 2, size=gold.shape)
        den_b = gold + tp_b + rng.integers(0, 2, size=gold.shape)
    point, low, high = exact_paired_bootstrap(num_a, den_a, num_b, den_b, samples=4000, seed=11)
    m = _moments(num_a, den_a, num_b, den_b)
    assert m.mean[0].mean() == pytest.approx(point, abs=1e-9)
    fast_low, fast_high = _interval(m, samples=20000, seed=5)
    # Monte Carlo error of a 2.5% quantile from 4000 replicates is about 0.05 sd; allow 0.15 sd
    tolerance = 0.15 * (high - low) / 3.92
    assert fast_low == pytest.approx(low, abs=tolerance) and fast_high == pytest.approx(high, abs=tolerance)


def test_reproducible_with_a_seed_and_row_by_row():
    rng = np.random.default_rng(2)
    means = rng.normal(size=(50, 3))
    factors = rng.normal(size=(50, 3, 3))
    covs = factors @ factors.transpose(0, 2, 1)
    a = intervals(means, covs, samples=2000, seed=9)
    b = intervals(means, covs, samples=2000, seed=9, chunk=3 * 10)  # 3 rows per pass
    np.testing.assert_allclose(a, b, rtol=0, atol=2e-6)  # within the bisection tolerance
    c = intervals(means, covs, samples=2000, seed=10)
    assert not np.array_equal(a, c) and np.allclose(a, c, atol=0.2)  # other seed draws, the same picture
    # a row's interval depends on its own moments only
    d = intervals(means[[5, 12]], covs[[5, 12]], samples=2000, seed=9)
    np.testing.assert_allclose([d[0], d[1]], [a[0][[5, 12]], a[1][[5, 12]]], rtol=0, atol=2e-6)


def test_groups_at_once_and_averages():
    # three languages (separate test sets) in one call give each one's moments, and their average has
    # the mean of the means and the squared-weight sum of the covariances (independent parts)
    rng = np.random.default_rng(4)
    parts = [_correlated_accuracy(rng, n=n) for n in (300, 120, 250)]
    singles = [_moments(a, np.ones_like(a), b, np.ones_like(b)) for a, b in parts]
    lengths = [a.shape[1] for a, _ in parts]
    num_a, num_b = (np.concatenate([p[k] for p in parts], axis=1) for k in (0, 1))
    va, pa = zip(*(influences(x, np.ones_like(x), lengths) for x in num_a))
    vb, pb = zip(*(influences(x, np.ones_like(x), lengths) for x in num_b))
    together = pair_moments(np.array(va), np.array(pa), np.array(vb), np.array(pb), lengths)
    np.testing.assert_allclose(together.mean, np.concatenate([m.mean for m in singles]), atol=1e-12)
    np.testing.assert_allclose(together.cov, np.concatenate([m.cov for m in singles]), atol=1e-12)
    avg = combine(together, np.full((1, 3), 1 / 3))
    np.testing.assert_allclose(avg.mean[0], together.mean.mean(axis=0))
    np.testing.assert_allclose(avg.cov[0], together.cov.sum(axis=0) / 9)


def test_one_seed_is_example_resampling_only():
    rng = np.random.default_rng(5)
    a, b = _correlated_accuracy(rng, n_seeds=1, n=500)
    ones = np.ones_like(a)
    point, low, high = exact_paired_bootstrap(a, ones, b, ones, samples=4000, seed=1)
    fast = _interval(_moments(a, ones, b, ones), samples=20000, seed=2)
    tolerance = 0.15 * (high - low) / 3.92
    assert fast == pytest.approx((low, high), abs=tolerance)
