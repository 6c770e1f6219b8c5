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


def _binom_cdf(n: int, q: float) -> np.ndarray:
    """P(B <= k) for k = 0..n, B ~ Binomial(n, q), from the log pmf (n up to tens of thousands)."""
    k = np.arange(n + 1)
    lgamma = np.vectorize(math.lgamma)
    log_pmf = (lgamma(n + 1) - lgamma(k + 1) - lgamma(n - k + 1) + k * math.log(q)
               + (n - k) * math.log1p(-q))
    return np.minimum(np.cumsum(np.exp(log_pmf - log_pmf.max())) * math.exp(log_pmf.max()), 1.0)


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
    # lower rank l (1-based): the largest l with P(B <= l - 1) <= alpha
    # upper rank u: the smallest u with P(B <= u - 1) >= 1 - alpha
    cdf = _binom_cdf(n, q)
    lows = [r for r in range(1, n + 1) if cdf[r - 1] <= alpha]
    highs = [r for r in range(1, n + 1) if cdf[r - 1] >= 1 - alpha]
    if not lows or not highs:
        return None
    return float(x[max(lows) - 1]), float(x[min(highs) - 1])
