"""Seam blending between the trajectory being commanded and a new chunk.

The new chunk is cross-faded *from what is currently commanded at the same times*, never from the
measured state: the measured state lags the command by the tracking error, and starting from it is
what makes "the arm step back at each new chunk". With a weight ``w`` rising smoothly from 0 at
the chunk's first step to 1 at ``blend_time_s`` later:

    blended(t) = (1 - w(t)) * commanded(t) + w(t) * chunk(t)

so the first new point is exactly the current command (position continuity), and because the
smoothstep weight has zero slope at both ends, the blended velocity starts at the commanded
velocity and ends at the chunk's. Velocity dimensions (a base twist) are blended the same way.

A cross-fade that ends on the new plan has to catch up with it: from rest towards a plan moving
at speed v, the blended speed peaks at ``max(9 s^2 - 8 s^3) = 1.69 v`` (at 3/4 of the window).
The gate's rate check sees the blended chunk and time-scales it if that exceeds ``max_rate``.
The offset itself is closed at up to ``1.5 * offset / blend_time_s`` (the smoothstep's steepest
slope), so the executor lengthens the window for a large seam (:func:`catch_up_time`): closing
the offset then takes at most ``SEAM_RATE_SHARE`` of a dimension's ``max_rate``, and the rest is
left for the motion of the plan itself. Without that, a 0.3 rad seam over 0.1 s needs 4.5 rad/s
on top of the plan's own speed: beyond a 3 rad/s joint's rate even at 2x time scaling.

Rotations (unit quaternion column groups of end-effector commands, faster_ros.control.pose) are
blended on the sphere, ``slerp(commanded(t), chunk(t), w(t))``: a component-wise cross-fade of two
unit quaternions leaves the unit sphere (and passes through zero between q and -q).

No rclpy here.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from faster_ros import rotations as rot
from faster_ros.control.chunk import Chunk

SEAM_RATE_SHARE = 0.5  # of max_rate, the most a seam's catch-up may use
SMOOTHSTEP_PEAK_SLOPE = 1.5  # max of d/ds (3 s^2 - 2 s^3)

CommandedAt = Callable[[np.ndarray], np.ndarray]  # (K,) absolute times -> (K, D) values


def smoothstep(s: np.ndarray) -> np.ndarray:
    """``3 s^2 - 2 s^3`` on ``s`` clipped to [0, 1]: 0 -> 0, 1 -> 1, zero slope at both ends."""
    s = np.clip(np.asarray(s, dtype=np.float64), 0.0, 1.0)
    return s * s * (3.0 - 2.0 * s)


def blend_weights(times: np.ndarray, start: float, blend_time_s: float) -> np.ndarray:
    """(K,) weight of the new chunk at ``times``: smoothstep((t - start) / blend_time_s)."""
    times = np.asarray(times, dtype=np.float64)
    if blend_time_s <= 0:
        return np.where(times > start, 1.0, 0.0)
    with np.errstate(over="ignore"):  # a subnormal blend time: inf, clipped to 1 (no blend)
        return smoothstep((times - start) / blend_time_s)


def catch_up_time(offset: np.ndarray, max_rate: np.ndarray, minimum: float,
                  share: float = SEAM_RATE_SHARE) -> float:
    """The blend window (s, at least ``minimum``) over which a smoothstep closes ``offset`` (D,),
    the chunk's first point minus the current command, at no more than ``share * max_rate`` in
    any dimension: ``max(1.5 * |offset| / (share * max_rate))``. Non-finite offsets are ignored
    (the gate rejects such a chunk)."""
    offset = np.abs(np.asarray(offset, dtype=np.float64))
    with np.errstate(invalid="ignore"):
        need = SMOOTHSTEP_PEAK_SLOPE * offset / (share * np.asarray(max_rate, dtype=np.float64))
    need = need[np.isfinite(need)]
    return float(max(minimum, need.max())) if need.size else float(minimum)


def blend_seam(
    chunk: Chunk, commanded_at: CommandedAt | None, blend_time_s: float,
    quaternions: tuple[tuple[int, ...], ...] = (),
) -> Chunk:
    """Cross-fade the first ``blend_time_s`` of ``chunk`` from the current command.

    ``commanded_at(times)`` returns the (K, D) values the executor would command at those absolute
    times if no new chunk arrived (the old trajectory, held at its end; a hold position). None
    (nothing commanded yet) or ``blend_time_s <= 0`` returns the chunk unchanged. Non-finite
    values in the chunk stay non-finite (so the gate still sees and rejects them).
    ``quaternions``: column groups (w, x, y, z) of unit quaternions, slerped instead.
    """
    if commanded_at is None or blend_time_s <= 0:
        return chunk
    times = chunk.times()
    w = blend_weights(times, chunk.start_time, blend_time_s)
    n = int(np.count_nonzero(w < 1.0))  # steps inside the blend window
    if n == 0:
        return chunk
    current = np.asarray(commanded_at(times[:n]), dtype=np.float64)
    if current.shape != (n, chunk.dim):
        raise ValueError(f"blend_seam: commanded_at returned shape {current.shape}, expected "
                         f"{(n, chunk.dim)}")
    positions = np.array(chunk.positions)
    wn = w[:n, None]
    with np.errstate(invalid="ignore", over="ignore"):  # inf * 0: stays non-finite, rejected
        positions[:n] = (1.0 - wn) * current + wn * chunk.positions[:n]
    for cols in quaternions:
        c = list(cols)
        positions[:n, c] = rot.slerp(current[:, c], chunk.positions[:n, c], w[:n])
    return chunk.replace(positions=positions)
