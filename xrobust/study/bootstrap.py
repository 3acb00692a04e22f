"""Paired bootstrap over seeds and test examples, vectorized over every comparison of a study.

A comparison is system A against system B (a cell against the baseline, or a method against plain
training), both run with the same seeds s = 1..S and scored on the same test examples. Its statistic at
one task and language is the mean over seeds of A's score minus B's, where a score is a ratio of
per-example sums (examples.py). One bootstrap replicate draws S seeds with replacement, the same for A
and B (paired by seed), and the test examples with replacement, the same for A, B and every seed
(paired by example); task averages and the overall average reuse the replicate's seed draw and draw
each language's test set independently, as the languages are separate test sets.

How a replicate is computed. Given the seed draw, with counts c (sum S) and a = c / S, the replicate
is a . d + e, where d_s is the difference of full-sample scores at seed s and e the change that
resampling the examples makes. e is a mean over N resampled examples, so its bootstrap distribution
is normal with covariance across seeds Sigma = D D^T / N^2 (D[s, i] = psi_A[s, i] - psi_B[s, i], psi
the per-example influence of the score: num_i - value den_i over mean den, exact for means, the
delta method for ratios). So a replicate is a . d + sqrt(a^T Sigma a) z with z standard normal:
S numbers per comparison instead of S x N, and averages over languages and tasks are the same form
with d and Sigma averaged (Sigma with squared weights). `exact_paired_bootstrap` resamples examples
literally; tests hold the two to each other. Seeds are resampled exactly in both.

All random numbers come from one numpy Generator seeded by `seed`: the seed draws (samples x S) and
one normal column per group (a task/language, a task average or the overall average), shared by the
comparisons at that group, so an interval does not depend on how rows are chunked or ordered.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def influence(num: np.ndarray, den: np.ndarray) -> tuple[float, np.ndarray]:
    """(value, psi): value = sum(num) / sum(den); psi the per-example influence (mean 0)."""
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    total = den.sum()
    if total == 0:
        return 0.0, np.zeros_like(num)
    value = num.sum() / total
    return value, (num - value * den) / (total / len(den))


@dataclass
class Moments:
    """A comparison at one group: per-seed differences d (S,) and their covariance under example
    resampling (S, S)."""
    mean: np.ndarray
    cov: np.ndarray


def pair_moments(values_a, psi_a, values_b, psi_b) -> Moments:
    """values_*: (S,) full-sample scores; psi_*: (S, N) influences on the same N examples."""
    d = np.asarray(values_a, dtype=np.float64) - np.asarray(values_b, dtype=np.float64)
    diff = np.asarray(psi_a, dtype=np.float64) - np.asarray(psi_b, dtype=np.float64)
    n = diff.shape[1]
    return Moments(d, diff @ diff.T / float(n) ** 2)


def combine(parts: list[Moments], weights: list[float]) -> Moments:
    """The weighted sum of independent groups (e.g. languages: weights 1/L)."""
    w = np.asarray(weights, dtype=np.float64)
    return Moments(sum(wi * p.mean for wi, p in zip(w, parts)), sum(wi * wi * p.cov for wi, p in zip(w, parts)))


def seed_draws(rng: np.random.Generator, samples: int, n_seeds: int) -> np.ndarray:
    """(samples, S) weights a = counts / S of S seeds drawn with replacement."""
    return rng.multinomial(n_seeds, np.full(n_seeds, 1.0 / n_seeds), size=samples) / n_seeds


def intervals(means: np.ndarray, covs: np.ndarray, groups: np.ndarray, *, samples: int = 10000, seed: int = 0,
              confidence: float = 0.95, chunk_elements: int = 2 ** 25) -> tuple[np.ndarray, np.ndarray]:
    """Percentile intervals of R comparisons at once.

    means (R, S), covs (R, S, S); groups (R,) integer group of each row (rows at one group share its
    normal draws). Returns (low, high), each (R,).
    """
    means = np.asarray(means, dtype=np.float64)
    covs = np.asarray(covs, dtype=np.float64)
    groups = np.asarray(groups, dtype=np.int64)
    rows, n_seeds = means.shape
    rng = np.random.default_rng(seed)
    a = seed_draws(rng, samples, n_seeds).astype(np.float32)  # (B, S)
    z = rng.standard_normal((int(groups.max(initial=-1)) + 1, samples), dtype=np.float32)  # (G, B)
    a2 = (a[:, :, None] * a[:, None, :]).reshape(samples, n_seeds * n_seeds)  # (B, S*S)
    alpha = 1.0 - confidence
    low, high = np.empty(rows), np.empty(rows)
    step = max(1, chunk_elements // samples)
    for start in range(0, rows, step):
        stop = min(rows, start + step)
        stat = means[start:stop].astype(np.float32) @ a.T  # (r, B)
        spread = covs[start:stop].reshape(stop - start, -1).astype(np.float32) @ a2.T
        np.maximum(spread, 0, out=spread)
        np.sqrt(spread, out=spread)
        spread *= z[groups[start:stop]]
        stat += spread
        q = np.quantile(stat, [alpha / 2, 1 - alpha / 2], axis=1)
        low[start:stop], high[start:stop] = q[0], q[1]
    return low, high


def exact_paired_bootstrap(num_a, den_a, num_b, den_b, *, samples: int = 2000, seed: int = 0,
                           confidence: float = 0.95) -> tuple[float, float, float]:
    """Reference: resample seeds and examples literally. *_a, *_b: (S, N) per-example sums on the same
    examples. Returns (difference, low, high). Cost samples x S x N: for tests and small inputs."""
    num_a, den_a, num_b, den_b = (np.asarray(x, dtype=np.float64) for x in (num_a, den_a, num_b, den_b))
    n_seeds, n = num_a.shape
    rng = np.random.default_rng(seed)
    seeds = rng.integers(0, n_seeds, size=(samples, n_seeds))
    stats = np.empty(samples)
    for b in range(samples):
        w = np.bincount(rng.integers(0, n, size=n), minlength=n).astype(np.float64)
        va = (num_a @ w) / np.where(den_a @ w == 0, 1, den_a @ w)
        vb = (num_b @ w) / np.where(den_b @ w == 0, 1, den_b @ w)
        stats[b] = (va - vb)[seeds[b]].mean()
    point = (num_a.sum(1) / den_a.sum(1) - num_b.sum(1) / den_b.sum(1)).mean()
    alpha = 1.0 - confidence
    low, high = np.quantile(stats, [alpha / 2, 1 - alpha / 2])
    return float(point), float(low), float(high)
