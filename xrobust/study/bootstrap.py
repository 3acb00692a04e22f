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

The seed draws come from one numpy Generator seeded by `seed` (`samples` draws, shared by every
comparison); for each draw the example resampling is integrated exactly (the normal above), so an
interval is the quantiles of a mixture of normals, found by bisection, with no sampling noise from
the examples and no dependence on the other rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def influences(num: np.ndarray, den: np.ndarray, lengths) -> tuple[np.ndarray, np.ndarray]:
    """Scores and per-example influences of consecutive groups of examples (lengths (G,)).

    value_g = sum(num) / sum(den) over group g; psi_i = (num_i - value_g den_i) / mean(den over g),
    mean 0 in every group (a group with no denominator has value 0 and psi 0)."""
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    lengths = np.asarray(lengths, dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    total_num, total_den = np.add.reduceat(num, starts), np.add.reduceat(den, starts)
    safe = np.where(total_den == 0, 1.0, total_den)
    values = np.where(total_den == 0, 0.0, total_num / safe)
    psi = (num - np.repeat(values, lengths) * den) / np.repeat(safe / lengths, lengths)
    return values, psi


@dataclass
class Moments:
    """Comparisons at G groups: per-seed differences (G, S) and their covariance under resampling the
    examples (G, S, S)."""
    mean: np.ndarray
    cov: np.ndarray


def pair_moments(values_a, psi_a, values_b, psi_b, lengths) -> Moments:
    """values_* (S, G) scores; psi_* (S, N) influences of the same N examples, grouped by `lengths`."""
    d = np.asarray(values_a, dtype=np.float64) - np.asarray(values_b, dtype=np.float64)
    diff = np.asarray(psi_a, dtype=np.float64) - np.asarray(psi_b, dtype=np.float64)
    lengths = np.asarray(lengths, dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    n_seeds = len(d)
    cov = np.empty((len(lengths), n_seeds, n_seeds))
    for s in range(n_seeds):
        for t in range(s, n_seeds):
            cov[:, s, t] = cov[:, t, s] = np.add.reduceat(diff[s] * diff[t], starts) / lengths.astype(np.float64) ** 2
    return Moments(d.T, cov)


def combine(moments: Moments, weights: np.ndarray) -> Moments:
    """Weighted sums of independent groups, one per row of weights (A, G): e.g. a task's average over
    its languages (weights 1/L): means add with the weights, covariances with their squares."""
    w = np.asarray(weights, dtype=np.float64)
    return Moments(w @ moments.mean, np.einsum("ag,gst->ast", w * w, moments.cov))


def seed_draws(rng: np.random.Generator, samples: int, n_seeds: int) -> tuple[np.ndarray, np.ndarray]:
    """`samples` draws of S seeds with replacement, as (distinct weight vectors a = counts / S (K, S),
    the share of the draws that gave each (K,))."""
    counts = rng.multinomial(n_seeds, np.full(n_seeds, 1.0 / n_seeds), size=samples)
    distinct, times = np.unique(counts, axis=0, return_counts=True)
    return distinct / n_seeds, times / samples


def _mixture_cdf(x: np.ndarray, mu: np.ndarray, inv_sd: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """sum_k weight_k Phi((x - mu_k) / sd_k) per row (inv_sd huge where sd = 0: a step at mu)."""
    import torch

    z = torch.from_numpy(np.clip((x[:, None] - mu) * inv_sd, -40.0, 40.0).astype(np.float32))  # Phi(40) = 1
    return torch.special.ndtr(z).numpy().astype(np.float64) @ weight


def intervals(means: np.ndarray, covs: np.ndarray, *, samples: int = 10000, seed: int = 0,
              confidence: float = 0.95, tolerance: float = 1e-6, chunk: int = 2 ** 20) -> tuple[np.ndarray, np.ndarray]:
    """Percentile intervals of R comparisons at once: means (R, S), covs (R, S, S) -> (low, high), each (R,).

    The seeds are drawn `samples` times (one numpy Generator seeded by `seed`, shared by every row);
    given a draw a, the example resampling makes the replicate normal, N(a . d, a^T Sigma a), so the
    replicates' distribution is the mixture of those normals over the draws. Its q-quantile lies between
    the smallest and the largest of the components' q-quantiles, and bisection on the mixture's
    distribution function narrows that to `tolerance` (percentage points).
    """
    from statistics import NormalDist

    means = np.asarray(means, dtype=np.float64)
    covs = np.asarray(covs, dtype=np.float64)
    rows, n_seeds = means.shape
    a, weight = seed_draws(np.random.default_rng(seed), samples, n_seeds)
    pairs = (a[:, :, None] * a[:, None, :]).reshape(len(a), n_seeds * n_seeds)
    alpha = 1.0 - confidence
    low, high = np.empty(rows), np.empty(rows)
    step = max(1, chunk // len(a))  # rows x distinct draws per pass
    for start in range(0, rows, step):
        part = slice(start, min(rows, start + step))
        mu = means[part] @ a.T  # (r, K)
        sd = np.sqrt(np.maximum(covs[part].reshape(len(mu), -1) @ pairs.T, 0.0))
        inv_sd = 1.0 / np.maximum(sd, 1e-30)
        for q, out in ((alpha / 2, low), (1 - alpha / 2, high)):
            component = mu + NormalDist().inv_cdf(q) * sd
            lo, hi = component.min(axis=1), component.max(axis=1)  # F(lo) <= q <= F(hi)
            while (hi - lo).max(initial=0.0) > tolerance:
                mid = (lo + hi) / 2
                below = _mixture_cdf(mid, mu, inv_sd, weight) < q
                lo, hi = np.where(below, mid, lo), np.where(below, hi, mid)
            out[part] = hi
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
