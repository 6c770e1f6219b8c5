"""The safety gate: a whole chunk is validated before any of it is executed.

Graded responses, in this order (the first rejection wins):

1. shape: a chunk with the wrong number of dimensions is rejected;
2. non-finite values (NaN, inf) are rejected, never clipped;
3. limits: a value outside ``[lower, upper]`` by at most ``reject_margin`` is clipped to the limit
   (a decoding overshoot), by more it is rejected (garbage);
4. seam: ``|first point - current command|`` above the seam limit of a dimension is rejected
   (see :attr:`SafetyGate.seam_limit`);
5. rate: a per-step ``|delta| / dt`` above ``max_rate`` (a speed for position dimensions, an
   acceleration for velocity dimensions) is fixed by stretching ``dt`` by the needed factor, up to
   ``max_time_scale``; beyond that the chunk is rejected;
6. a final check of what would be returned (finite, within limits, strictly increasing times,
   rates within limits) turns any remaining violation into a rejection, so nothing accepted can
   break those invariants whatever the earlier steps did.

No rclpy here.
"""

from __future__ import annotations

import numpy as np

from faster_ros.control.chunk import Chunk, GateResult
from faster_ros.control.timing import time_scale
from faster_ros.embodiment import Embodiment

MAX_LISTED = 3  # offending values named per reason before "and N more"
RATE_MARGIN = 1e-6  # relative headroom added to a time-scale factor against rounding


def _fmt(value: float, unit: str) -> str:
    text = f"{value:.3g}" if abs(value) >= 1e4 or (value != 0 and abs(value) < 1e-3) else (
        f"{value:.2f}")
    return text if unit in ("", "1") else f"{text} {unit}"


class SafetyGate:
    """Validates chunks against an embodiment's limits (see the module docstring for the grades).

    ``reject_margin`` is a fraction of each dimension's range ``upper - lower`` (default 5 %: 0.29
    rad on a +-2.88 rad joint, 5 mm on a 0-100 mm gripper): values beyond a limit by less are
    clipped, by more rejected. ``max_time_scale`` bounds the slow-down applied to a too-fast
    chunk. ``seam_limit`` (D,) overrides the default per-dimension seam bound.
    """

    def __init__(
        self,
        embodiment: Embodiment,
        reject_margin: float | np.ndarray = 0.05,
        max_time_scale: float = 2.0,
        seam_limit: np.ndarray | None = None,
    ):
        self.embodiment = embodiment
        d = embodiment.action_dim
        self.names = embodiment.dim_names
        self.units = tuple(dim.unit for dim in embodiment.dimensions)
        self.lower, self.upper = embodiment.lower, embodiment.upper
        self.max_rate = embodiment.max_rate
        self.is_velocity = embodiment.is_velocity
        margin = np.broadcast_to(np.asarray(reject_margin, dtype=np.float64), (d,))
        if not np.all(np.isfinite(margin) & (margin >= 0)):
            raise ValueError(f"SafetyGate: reject_margin must be finite and >= 0, got "
                             f"{reject_margin!r}")
        self.reject_margin = margin * (self.upper - self.lower)  # (D,) in each dim's unit
        if not (np.isfinite(max_time_scale) and max_time_scale >= 1.0):
            raise ValueError(f"SafetyGate: max_time_scale must be >= 1, got {max_time_scale!r}")
        self.max_time_scale = float(max_time_scale)
        if seam_limit is None:
            seam_limit = self.default_seam_limit(embodiment, self.max_time_scale)
        seam = np.broadcast_to(np.asarray(seam_limit, dtype=np.float64), (d,)).copy()
        if not np.all(np.isfinite(seam) & (seam > 0)):
            raise ValueError(f"SafetyGate: seam_limit must be positive and finite, got "
                             f"{seam_limit!r}")
        self.seam_limit = seam

    @staticmethod
    def default_seam_limit(embodiment: Embodiment, max_time_scale: float = 2.0) -> np.ndarray:
        """(D,) largest allowed ``|first point - current command|`` per dimension.

        Position dimensions: the dimension's seam bound (``max_seam_jump`` of the dimension, else
        ``control.max_seam_jump``, in the dimension's unit), or the distance the dimension may
        travel in one control period at its rate limit if that is larger (a jump no bigger than
        one legal step is not a discontinuity). Velocity dimensions: their own ``max_seam_jump``
        if set, else the change the seam blend can absorb at the acceleration limit,
        ``max_rate * max(blend_time_s, dt) * max_time_scale`` (the blend ramps it and the rate
        check bounds the acceleration).
        """
        c = embodiment.control
        rate = embodiment.max_rate
        bound = embodiment.seam_bound
        explicit = np.array([d.max_seam_jump is not None for d in embodiment.dimensions])
        position = np.maximum(bound, rate * c.dt)
        velocity = np.where(explicit, bound, rate * max(c.blend_time_s, c.dt) * max_time_scale)
        return np.where(embodiment.is_velocity, velocity, position)

    # ----------------------------------------------------------------------------------------
    # Individual checks: each returns reasons (empty: passed)

    def _listed(self, items: list[str], what: str) -> list[str]:
        more = len(items) - MAX_LISTED
        tail = [f"and {more} more {what}"] if more > 0 else []
        return items[:MAX_LISTED] + tail

    def check_finite(self, chunk: Chunk) -> list[str]:
        bad = np.argwhere(~np.isfinite(chunk.positions))
        items = [f"{self.names[j]} step {chunk.first_step + i}: non-finite value "
                 f"{chunk.positions[i, j]}" for i, j in bad]
        return self._listed(items, "non-finite values")

    def check_far_out(self, chunk: Chunk) -> list[str]:
        """Values outside the limits by more than the reject margin (garbage, not overshoot)."""
        p = chunk.positions
        with np.errstate(invalid="ignore"):
            excess = np.maximum(p - self.upper, self.lower - p)  # (H, D) > 0: outside
            far = np.argwhere(excess > self.reject_margin)
        items = [f"{self._limit_text(chunk, i, j, p[i, j])} (beyond the reject margin "
                 f"{_fmt(self.reject_margin[j], self.units[j])})" for i, j in far]
        return self._listed(items, "values out of limits")

    def check_values(self, chunk: Chunk) -> list[str]:
        """Reasons to reject a chunk on its values alone: non-finite, or far out of limits. The
        executor applies it to the whole chunk before anchoring: garbage in a step already past
        still means the policy output is broken."""
        if chunk.dim != len(self.names):
            return [f"chunk has {chunk.dim} dimensions, embodiment {self.embodiment.name!r} has "
                    f"{len(self.names)}"]
        return self.check_finite(chunk) or self.check_far_out(chunk)

    def _limit_text(self, chunk: Chunk, i: int, j: int, value: float) -> str:
        unit = self.units[j]
        above = value > self.upper[j]
        limit = self.upper[j] if above else self.lower[j]
        side = "above upper" if above else "below lower"
        return (f"{self.names[j]} step {chunk.first_step + i}: {_fmt(value, unit)} {side} limit "
                f"{_fmt(limit, unit)} (by {_fmt(abs(value - limit), unit)})")

    def check_seam(self, first: np.ndarray, current: np.ndarray) -> list[str]:
        """Reasons for dimensions whose ``first`` value is farther than the seam limit from
        ``current`` (non-finite values are left to :meth:`check_finite`)."""
        first = np.asarray(first, dtype=np.float64)
        current = np.asarray(current, dtype=np.float64)
        with np.errstate(invalid="ignore"):
            jump = np.abs(first - current)
            bad = np.flatnonzero(np.isfinite(jump) & (jump > self.seam_limit))
        items = []
        for j in bad:
            unit = self.units[j]
            items.append(
                f"{self.names[j]}: seam jump {_fmt(jump[j], unit)} from the current command "
                f"{_fmt(current[j], unit)} to the chunk's first point {_fmt(first[j], unit)} "
                f"(limit {_fmt(self.seam_limit[j], unit)})")
        return self._listed(items, "seam jumps")

    def rate_ratio(self, chunk: Chunk) -> np.ndarray:
        """(H-1, D) ``|delta| / dt / max_rate`` per step and dimension (> 1: too fast)."""
        return np.abs(np.diff(chunk.positions, axis=0)) / chunk.dt / self.max_rate

    def _rate_text(self, chunk: Chunk, ratio: np.ndarray, i: int, j: int) -> str:
        unit, step = self.units[j], chunk.first_step + i
        velocity = bool(self.is_velocity[j])
        rate_unit = f"{unit}/s" if unit not in ("", "1") else "/s"
        what = "max acceleration" if velocity else "max rate"
        rate = ratio[i, j] * self.max_rate[j]
        return (f"{self.names[j]} step {step}->{step + 1}: {rate:.2f} {rate_unit} above {what} "
                f"{self.max_rate[j]:.2f} {rate_unit}")

    def invariant_violations(self, chunk: Chunk) -> list[str]:
        """What must hold for anything accepted; non-empty means a bug upstream."""
        problems = []
        p = chunk.positions
        if p.shape[1] != len(self.names):
            return [f"chunk has {p.shape[1]} dimensions, expected {len(self.names)}"]
        if not np.all(np.isfinite(p)):
            problems.append("non-finite values")
        elif np.any(p < self.lower) or np.any(p > self.upper):
            problems.append("values outside limits")
        times = chunk.times()
        if not (np.all(np.isfinite(times)) and np.all(np.diff(times) > 0)):
            problems.append("times not strictly increasing")
        if chunk.horizon > 1 and np.all(np.isfinite(p)):
            if np.any(self.rate_ratio(chunk) > 1.0 + 10 * RATE_MARGIN):
                problems.append("rates above max_rate after time scaling")
        return problems

    # ----------------------------------------------------------------------------------------

    def check(self, chunk: Chunk, current_command: np.ndarray | None = None) -> GateResult:
        """Validate ``chunk``; ``current_command`` (D,) is what is commanded at the chunk's first
        time (None: nothing commanded yet, no seam check)."""
        d = len(self.names)
        if chunk.dim != d:
            return GateResult.reject(
                f"chunk has {chunk.dim} dimensions, embodiment {self.embodiment.name!r} has {d}")
        reasons = self.check_values(chunk)
        if reasons:
            return GateResult.reject(*reasons)
        if current_command is not None:
            current = np.asarray(current_command, dtype=np.float64)
            if current.shape != (d,) or not np.all(np.isfinite(current)):
                return GateResult.reject(
                    f"current command is not {d} finite values: {current!r} (internal error)")

        # limits: clip small overshoots (garbage beyond the margin was rejected above)
        p = chunk.positions
        excess = np.maximum(p - self.upper, self.lower - p)  # (H, D) > 0: outside
        notes: list[str] = []
        outside = np.argwhere(excess > 0)
        clipped = len(outside)
        if clipped:
            items = [f"clipped {self._limit_text(chunk, i, j, p[i, j])}" for i, j in outside]
            notes += self._listed(items, "values clipped")
            chunk = chunk.replace(positions=np.clip(p, self.lower, self.upper))

        # seam
        if current_command is not None:
            reasons = self.check_seam(chunk.positions[0], current)
            if reasons:
                return GateResult.reject(*reasons, refusal="seam")

        # rate: stretch time, or reject
        factor = 1.0
        if chunk.horizon > 1:
            ratio = self.rate_ratio(chunk)
            need = float(ratio.max())
            if need > 1.0:
                i, j = np.unravel_index(int(np.argmax(ratio)), ratio.shape)
                text = self._rate_text(chunk, ratio, i, j)
                if need > self.max_time_scale:
                    return GateResult.reject(
                        f"{text}: needs {need:.2f}x time scaling, more than the allowed "
                        f"{self.max_time_scale:.2f}x", refusal="rate")
                factor = need * (1.0 + RATE_MARGIN)
                notes.append(f"time-scaled {factor:.2f}x: {text}")
                chunk = time_scale(chunk, factor)

        problems = self.invariant_violations(chunk)
        if problems:
            return GateResult.reject(f"internal check failed ({', '.join(problems)})")
        action = "time_scaled" if factor > 1.0 else "clipped" if clipped else "ok"
        return GateResult(accepted=True, action=action, reasons=tuple(notes), chunk=chunk,
                          interventions=clipped + (factor > 1.0), clipped=clipped,
                          time_scale=factor)
