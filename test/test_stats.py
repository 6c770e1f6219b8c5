"""The intervals the benchmarks and evaluations print."""

import numpy as np
import pytest

from faster_ros.stats import mcnemar_exact, quantile_interval


def test_quantile_interval_covers_the_true_p95_at_the_stated_rate():
    """Exponential samples (a latency-like tail): over 400 draws of n = 300, the interval holds
    the true p95 in about 95% of them, and it always brackets the sample p95."""
    rng = np.random.default_rng(0)
    true_p95 = -np.log(0.05)  # Exp(1)
    hits = 0
    for _ in range(400):
        x = rng.exponential(size=300)
        lo, hi = quantile_interval(x, 0.95)
        assert lo <= np.percentile(x, 95) <= hi
        hits += lo <= true_p95 <= hi
    assert 0.92 <= hits / 400 <= 0.995


def test_quantile_interval_small_and_bad_inputs():
    assert quantile_interval([], 0.95) is None
    assert quantile_interval(np.arange(10.0), 0.95) is None  # too few samples for a p95 bound
    lo, hi = quantile_interval(np.arange(100.0), 0.5)  # ranks 40 and 61 for n = 100
    assert (lo, hi) == (39.0, 60.0)
    with pytest.raises(ValueError, match="q and confidence"):
        quantile_interval([1.0, 2.0], 1.5)


def test_mcnemar_exact_known_values():
    # P(X <= 1 or X >= 11), X ~ B(12, 1/2)
    assert mcnemar_exact(11, 1) == pytest.approx(2 * 13 / 2 ** 12)
    assert mcnemar_exact(33, 16) == mcnemar_exact(16, 33) == pytest.approx(0.0213, abs=1e-4)
    assert mcnemar_exact(5, 5) == 1.0 and mcnemar_exact(0, 0) == 1.0
    with pytest.raises(ValueError, match="counts must be >= 0"):
        mcnemar_exact(-1, 3)
