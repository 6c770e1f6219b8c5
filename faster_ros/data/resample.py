"""Resample irregular time series onto a fixed-rate grid (bag topics -> policy rate).

Two methods, chosen per call:

* ``"zoh"`` (zero-order hold, the default): the value at grid time t is the latest sample at or
  before t. Causal: it is what a live node holding the last message would see, so training and
  deployment agree and no future information leaks into observations.
* ``"linear"``: linear interpolation between the samples around t (uses the next sample).

A sample within ``eps`` (1 microsecond) of a grid time counts as at that time and is taken
unchanged, so a topic already at the grid rate comes through bit-exact despite stamp jitter.
Grid times before the first sample raise ValueError (the caller chooses a grid inside the data);
after the last sample the last value is held.
"""

from __future__ import annotations

import math

import numpy as np

METHODS = ("zoh", "linear")
EPS_S = 1e-6


def _check(times: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray, bool]:
    times = np.asarray(times, dtype=np.float64)
    values = np.asarray(values)
    squeeze = values.ndim == 1
    if squeeze:
        values = values[:, None]
    if times.ndim != 1 or values.ndim != 2 or len(values) != len(times):
        raise ValueError(f"need times (N,) and values (N, D), got {times.shape} {values.shape}")
    if len(times) == 0:
        raise ValueError("cannot resample an empty series")
    if np.any(np.diff(times) < 0):
        order = np.argsort(times, kind="stable")
        times, values = times[order], values[order]
    return times, values, squeeze


def sample_index(times: np.ndarray, grid: np.ndarray, eps: float = EPS_S) -> np.ndarray:
    """Index of the latest sample at or before each grid time (-1 where there is none)."""
    return np.searchsorted(np.asarray(times, np.float64), np.asarray(grid) + eps, "right") - 1


def resample_at(
    times: np.ndarray, values: np.ndarray, grid: np.ndarray, method: str = "zoh",
    eps: float = EPS_S,
) -> np.ndarray:
    """Values (N, D) sampled at ``times`` (N,) -> values at ``grid`` (G,) -> (G, D)."""
    if method not in METHODS:
        raise ValueError(f"unknown resampling method {method!r} (expected one of {METHODS})")
    times, values, squeeze = _check(times, values)
    grid = np.asarray(grid, dtype=np.float64)
    j = sample_index(times, grid, eps)
    if np.any(j < 0):
        first = grid[j < 0][0]
        raise ValueError(f"grid time {first:.6f} is before the first sample {times[0]:.6f}")
    out = values[j]
    if method == "linear" and len(times) > 1:
        nxt = np.minimum(j + 1, len(times) - 1)
        span = times[nxt] - times[j]
        inside = (span > 0) & (np.abs(grid - times[j]) > eps)
        w = np.where(inside, (grid - times[j]) / np.where(span > 0, span, 1.0), 0.0)
        lerp = values[j] + (values[nxt] - values[j]) * w[:, None]
        out = np.where(inside[:, None], lerp, values[j]).astype(values.dtype, copy=False)
    return out[:, 0] if squeeze else out


def make_grid(start: float, stop: float, rate: float, eps: float = EPS_S) -> np.ndarray:
    """Times ``start + k / rate`` for k = 0, 1, ... while <= ``stop`` (+ eps)."""
    if not (math.isfinite(rate) and rate > 0):
        raise ValueError(f"rate must be positive, got {rate!r}")
    if stop < start:
        return np.zeros(0)
    n = int(math.floor((stop - start + eps) * rate)) + 1
    return start + np.arange(n, dtype=np.float64) / rate


def resample_to_rate(
    times: np.ndarray,
    values: np.ndarray,
    rate: float,
    *,
    method: str = "zoh",
    start: float | None = None,
    stop: float | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Resample ``values`` (N, D) stamped ``times`` (N,) seconds to ``rate`` Hz.

    The grid runs from ``start`` (default the first sample) to ``stop`` (default the last) in
    steps of ``1 / rate``. Returns ``(grid (G,), values (G, D))``.
    """
    times_s, _, _ = _check(times, values)
    start = float(times_s[0]) if start is None else float(start)
    stop = float(times_s[-1]) if stop is None else float(stop)
    grid = make_grid(start, stop, rate)
    return grid, resample_at(times, values, grid, method)


def estimate_rate(times: np.ndarray) -> float:
    """Rate in Hz from the median sample period, snapped to an integer when within 0.5 %."""
    times = np.sort(np.asarray(times, dtype=np.float64))
    periods = np.diff(times)
    periods = periods[periods > 0]
    if periods.size == 0:
        raise ValueError("cannot estimate a rate from fewer than two distinct times")
    rate = 1.0 / float(np.median(periods))
    rounded = round(rate)
    return float(rounded) if rounded and abs(rate - rounded) <= 0.005 * rate else rate
