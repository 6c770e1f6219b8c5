"""One policy output in physical units on a uniform time grid, and the safety gate's verdict.

No rclpy here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

GATE_ACTIONS = ("ok", "clipped", "time_scaled", "rejected")


@dataclass(frozen=True)
class Chunk:
    """A chunk of ``H`` actions for the ``D`` action dimensions of an embodiment.

    Step ``i`` is meant for absolute time ``start_time + i * dt``. ``start_time`` is the stamp of
    the observation the chunk was computed from (step 0 is "the action at observation time");
    after :func:`faster_ros.control.timing.anchor` it is the time of the first kept step and
    ``first_step`` counts the steps dropped since the observation, so operator messages can name
    the step of the policy's original output. ``positions`` holds positions for position
    dimensions and velocities for velocity dimensions (a base twist). The array is copied to
    float64 and made read-only; it may hold non-finite garbage (the gate rejects it), but the time
    grid must be finite with ``dt > 0``.
    """

    positions: np.ndarray  # (H, D) float64
    start_time: float  # s, absolute time of step 0
    dt: float  # s per step
    sequence: int = 0
    first_step: int = 0  # index of step 0 within the policy's original output

    def __post_init__(self) -> None:
        positions = np.array(self.positions, dtype=np.float64)  # a private copy
        if positions.ndim != 2 or positions.shape[0] == 0 or positions.shape[1] == 0:
            raise ValueError(f"Chunk.positions must be a non-empty (H, D) array, got shape "
                             f"{positions.shape}")
        positions.setflags(write=False)
        object.__setattr__(self, "positions", positions)
        start, dt = float(self.start_time), float(self.dt)
        if not math.isfinite(start):
            raise ValueError(f"Chunk.start_time must be finite, got {self.start_time!r}")
        if not (math.isfinite(dt) and dt > 0):
            raise ValueError(f"Chunk.dt must be a positive finite number, got {self.dt!r}")
        object.__setattr__(self, "start_time", start)
        object.__setattr__(self, "dt", dt)
        if self.first_step < 0:
            raise ValueError(f"Chunk.first_step must be >= 0, got {self.first_step!r}")

    @property
    def horizon(self) -> int:
        """H, the number of steps."""
        return self.positions.shape[0]

    @property
    def dim(self) -> int:
        """D, the number of action dimensions."""
        return self.positions.shape[1]

    @property
    def end_time(self) -> float:
        """Absolute time of the last step."""
        return self.start_time + (self.horizon - 1) * self.dt

    def times(self) -> np.ndarray:
        """(H,) absolute time of each step."""
        return self.start_time + self.dt * np.arange(self.horizon, dtype=np.float64)

    def replace(self, **changes) -> Chunk:
        """A copy with some fields changed (validated again)."""
        return replace(self, **changes)


@dataclass(frozen=True)
class GateResult:
    """What :class:`faster_ros.control.safety.SafetyGate` (or the executor) decided about a chunk.

    ``action`` is the strongest response applied: ``"rejected"`` > ``"time_scaled"`` >
    ``"clipped"`` > ``"ok"``; ``reasons`` are operator-actionable sentences naming the dimension,
    the step, the value and the limit. ``chunk`` is the (possibly clipped / time-scaled) chunk when
    accepted, None when rejected. ``interventions`` = values clipped + 1 if time-scaled.
    """

    accepted: bool
    action: str
    reasons: tuple[str, ...] = ()
    chunk: Chunk | None = None
    interventions: int = 0
    clipped: int = 0  # values clipped into [lower, upper]
    time_scale: float = 1.0  # factor dt was stretched by (1.0: not scaled)
    refusal: str = ""  # a rejection's kind: "seam", "rate" or "" (any other reason)

    def __post_init__(self) -> None:
        if self.action not in GATE_ACTIONS:
            raise ValueError(f"GateResult.action must be one of {GATE_ACTIONS}, got "
                             f"{self.action!r}")
        if self.accepted != (self.action != "rejected") or self.accepted != (
            self.chunk is not None
        ):
            raise ValueError("GateResult: accepted, action and chunk disagree")

    @classmethod
    def reject(cls, *reasons: str, refusal: str = "") -> GateResult:
        return cls(accepted=False, action="rejected", reasons=tuple(reasons), refusal=refusal)

    @property
    def summary(self) -> str:
        """One line for logs and PolicyStatus."""
        head = self.action if self.accepted else "rejected"
        return f"{head}: {'; '.join(self.reasons)}" if self.reasons else head
