"""Small statistics the benchmarks and evaluations report: intervals, not just point figures.

A p95 from ~100 chunks rests on its 5 largest samples, so two 60 s runs of the same code can
differ by 2 ms; the interval says how far a figure can be trusted."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def wilson_interval(successes: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """95% Wilson score interval of a binomial proportion."""
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def quantile_interval(values: Sequence[float], q: float,
                      confidence: float = 0.95) -> tuple[float, float] | None:
    """Distribution-free interval for the q-quantile of the population ``values`` were drawn
    from: the order statistics (x_(l), x_(u)) with P(x_(l) <= Q_q <= x_(u)) >= ``confidence``
    (the number of samples below Q_q is Binomial(n, q)). None when n is too small for any pair
    of order statistics to reach the confidence."""
    x = np.sort(np.asarray(values, dtype=float))
    n = x.size
    if not 0 < q < 1 or not 0 < confidence < 1:
        raise ValueError(f"quantile_interval: q and confidence must be in (0, 1), got "
                         f"{q!r}, {confidence!r}")
    if n == 0:
        return None
    alpha = (1 - confidence) / 2
    # cdf[i] = P(B <= i) for i = 0..n-1. The lower bound is x_(l) with l - 1 the largest i
    # where cdf[i] <= alpha; the upper bound is x_(u) with u - 1 the smallest i where
    # cdf[i] >= 1 - alpha (ranks 1-based, so x_(r) is x[r - 1] = x[i])
    from scipy.stats import binom  # here: importing scipy.stats costs sim-eval's start-up

    cdf = binom.cdf(np.arange(n), n, q)
    lows, highs = np.nonzero(cdf <= alpha)[0], np.nonzero(cdf >= 1 - alpha)[0]
    if not lows.size or not highs.size:
        return None
    return float(x[lows[-1]]), float(x[highs[0]])


def mcnemar_exact(only_a: int, only_b: int) -> float:
    """Two-sided exact McNemar p-value of two policies on the same seeds, from the discordant
    seeds (``only_a`` solved by A alone, ``only_b`` by B alone): the binomial chance of a split at
    least this uneven if neither policy were better. 1.0 without a discordant seed."""
    if only_a < 0 or only_b < 0:
        raise ValueError(f"mcnemar_exact: counts must be >= 0, got {only_a}, {only_b}")
    if not only_a + only_b:
        return 1.0
    from scipy.stats import binomtest  # here: importing scipy.stats costs start-up

    return float(binomtest(only_a, only_a + only_b, 0.5).pvalue)
