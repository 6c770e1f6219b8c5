"""Gripper latch: a Schmitt trigger on a gripper's commanded opening.

A closed gripper stays closed until the policy asks clearly to open. Once a command falls below
``close_below`` the latch holds the lowest value commanded since (it follows a firmer close) and
ignores everything under ``open_above``; a command at or above ``open_above`` releases it, and the
opening then rises no faster than the dimension's ``max_rate`` until it meets the policy's values.

Why: a tiny policy's decoded gripper command wanders back to 0.5-0.7 for a chunk now and then
while the demonstrations hold "closed"; each wander loosens the grip on the object (on the
simulated ALOHA hand-over: 5 of 20 strict successes from the meeting point without the latch,
16 of 20 with close_below 0.3 / open_above 0.8). Real deployments threshold their grippers for
the same reason (RT-1, OpenVLA and Octo binarise the gripper action); the latch keeps the
policy's continuous command except inside the band, so a gripper still closes and opens along
the demonstrated ramps.

The latch has no state of its own: it is closed exactly when the command it starts from is
below ``close_below`` (a latched output always is), so the executor starts it from its current
command and the direct sim loop from the last command it sent.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class GripperLatch:
    """Latch of action dimension ``index``: closes below ``close_below``, opens at
    ``open_above`` or more, then rises at most ``max_step`` per step."""

    index: int
    close_below: float
    open_above: float
    max_step: float

    def __post_init__(self) -> None:
        if not self.close_below < self.open_above:
            raise ValueError(f"GripperLatch: close_below {self.close_below} must be below "
                             f"open_above {self.open_above}")
        if not self.max_step > 0:
            raise ValueError(f"GripperLatch.max_step must be positive, got {self.max_step}")

    def apply(self, values: np.ndarray, start: float) -> tuple[np.ndarray, int]:
        """(H,) commands of one chunk, ``start`` the command in force before its first step ->
        (latched commands, how many steps the latch changed)."""
        out = np.array(values, dtype=np.float64)
        held = float(start) if start < self.close_below else None
        prev, rising = float(start), False
        for k, v in enumerate(out):
            if not np.isfinite(v):
                return out, 0  # the safety gate rejects the chunk; nothing to latch
            if held is not None:
                if v >= self.open_above:
                    held, rising = None, True
                else:
                    held = min(held, v)
                    out[k] = held
            elif v < self.close_below:
                held, rising = v, False
            if held is None and rising:
                out[k] = min(v, prev + self.max_step)
                rising = out[k] < v
            prev = out[k]
        return out, int(np.count_nonzero(out != np.asarray(values, dtype=np.float64)))


def apply_latches(positions: np.ndarray, start: np.ndarray, latches: tuple[GripperLatch, ...]
                  ) -> tuple[np.ndarray, int]:
    """(H, D) chunk and the (D,) command in force before it -> (latched chunk, steps changed)."""
    if not latches:
        return positions, 0
    out = np.array(positions, dtype=np.float64)
    changed = 0
    for latch in latches:
        out[:, latch.index], n = latch.apply(out[:, latch.index], float(start[latch.index]))
        changed += n
    return out, changed
