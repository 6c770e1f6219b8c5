"""Chunk timing: latency compensation (anchoring) and time scaling.

A chunk computed from an observation stamped ``t_obs`` is meant for times ``t_obs + i * dt``. By
the time it reaches the executor, inference has taken 80-300 ms, so its first steps are in the
past. Executing them anyway is what makes today's runtimes oscillate; starting the trajectory with
a point in the past makes a JointTrajectoryController jump. :func:`anchor` keeps only the steps
that are still at least ``min_lead_s`` (one controller period by default) ahead of ``now``.

No rclpy here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from faster_ros.control.chunk import Chunk

TIME_EPS = 1e-9  # s: a step exactly at now + min_lead_s is kept despite rounding


def late_steps(chunk: Chunk, now: float, min_lead_s: float) -> int:
    """Number of leading steps whose time is before ``now + min_lead_s`` (0..H)."""
    earliest = now + min_lead_s - TIME_EPS
    return int(np.searchsorted(chunk.times(), earliest, side="left"))


def anchor(chunk: Chunk, now: float, min_lead_s: float) -> Chunk | None:
    """Drop the steps already past and return the rest, or None if the chunk is entirely late.

    A step is kept when its time is ``>= now + min_lead_s``, so the first kept point is at least
    ``min_lead_s`` ahead (a controller period: the controller can still reach it). The returned
    chunk keeps the same time grid: ``start_time`` is the time of its first kept step and
    ``first_step`` grows by the number dropped.
    """
    if not (math.isfinite(now) and math.isfinite(min_lead_s)):
        raise ValueError(f"anchor: now and min_lead_s must be finite, got {now!r}, "
                         f"{min_lead_s!r}")
    k = late_steps(chunk, now, min_lead_s)
    if k >= chunk.horizon:
        return None
    if k == 0:
        return chunk
    return chunk.replace(
        positions=chunk.positions[k:],
        start_time=chunk.start_time + k * chunk.dt,
        first_step=chunk.first_step + k,
    )


def time_scale(chunk: Chunk, factor: float) -> Chunk:
    """Stretch the chunk's time grid by ``factor`` (>= 1) about its first step.

    The path of position dimensions is kept and traversed ``factor`` times slower (speeds divided
    by ``factor``, accelerations by ``factor**2``); the values of velocity dimensions are kept
    and held ``factor`` times longer (their rate of change, an acceleration, is divided by
    ``factor``). The first step keeps its time, so the seam to the current command is unchanged.
    """
    if not (math.isfinite(factor) and factor >= 1.0):
        raise ValueError(f"time_scale: factor must be a finite number >= 1, got {factor!r}")
    if factor == 1.0:
        return chunk
    return chunk.replace(dt=chunk.dt * factor)


def delay_steps(latency_s: float, dt: float) -> int:
    """Steps of a chunk that pass during ``latency_s`` of inference: ``ceil(latency / dt)``."""
    if not (math.isfinite(latency_s) and latency_s >= 0 and dt > 0):
        raise ValueError(f"delay_steps: need latency_s >= 0 and dt > 0, got {latency_s!r}, "
                         f"{dt!r}")
    return math.ceil(latency_s / dt - TIME_EPS)


def sample_points(times: Sequence[float], values: Sequence[np.ndarray], t: float) -> np.ndarray:
    """A timed point sequence (a received JointTrajectory) at time ``t``: linear between points,
    the first point before it starts, the last after it ends (what a joint trajectory controller
    holds)."""
    if t <= times[0]:
        return np.asarray(values[0])
    if t >= times[-1]:
        return np.asarray(values[-1])
    k = int(np.searchsorted(times, t)) - 1
    w = (t - times[k]) / (times[k + 1] - times[k])
    return (1 - w) * np.asarray(values[k]) + w * np.asarray(values[k + 1])
