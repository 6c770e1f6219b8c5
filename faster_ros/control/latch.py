"""Gripper latch: a gripper holding an object stays closed until the policy clearly opens it.

A gripper holds something when its command is below ``close_below`` and its fingers stopped at
least ``holding_gap`` above that command (the object blocks them). From such a start the latch
holds the lowest value commanded since (it follows a firmer close) and ignores every command
under ``open_above``. A chunk whose commands rise to ``open_above`` releases it, and the opening
then follows that rise from where it begins, rising no faster than the dimension's ``max_rate``.
The whole chunk decides, not only the part that runs before the next chunk replaces it: the
demonstrated opening (0 to 1 in 0.4 s) crosses 0.8 about 16 steps into a chunk, where the next
one takes over, so a latch that released only at the crossing kept the gripper shut chunk
after chunk, each new chunk starting the ramp again from the still-closed fingers. An empty
gripper is never latched: a closed, empty gripper opens along the policy's ramp as before.

Why: a tiny policy's decoded gripper command wanders back to 0.5-0.7 for a chunk now and then
while the demonstrations hold "closed"; each wander loosens the grip on the object (on the
simulated ALOHA hand-over, from the meeting point: 5 of 20 strict successes without the latch).
Real deployments threshold their grippers for the same reason (RT-1, OpenVLA and Octo binarise
the gripper action); the latch keeps the policy's continuous command everywhere else, so a
gripper still closes and opens along the demonstrated ramps.

The latch keeps no state of its own: whether it holds is read, at the start of every chunk, from
the command in force and the measured opening (the executor's, or the direct sim loop's last
command and state).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class GripperLatch:
    """Latch of action dimension ``index`` (see the module docstring); ``max_step``: the most
    an opening may rise per step after a release."""

    index: int
    close_below: float
    open_above: float
    holding_gap: float
    max_step: float

    def __post_init__(self) -> None:
        if not self.close_below < self.open_above:
            raise ValueError(f"GripperLatch: close_below {self.close_below} must be below "
                             f"open_above {self.open_above}")
        if not (self.max_step > 0 and self.holding_gap > 0):
            raise ValueError(f"GripperLatch: max_step and holding_gap must be positive, got "
                             f"{self.max_step}, {self.holding_gap}")

    def holding(self, command: float, measured: float | None) -> bool:
        """Closed on an object: commanded closed, fingers stopped ``holding_gap`` short."""
        return (measured is not None and bool(np.isfinite(measured))
                and command < self.close_below and measured - command >= self.holding_gap)

    def apply(self, values: np.ndarray, start: float, measured: float | None
              ) -> tuple[np.ndarray, int]:
        """(H,) commands of one chunk, ``start`` the command in force before its first step,
        ``measured`` the gripper's measured opening (None: unknown, no latch) -> (latched
        commands, how many steps the latch changed)."""
        policy = np.array(values, dtype=np.float64)
        if not self.holding(start, measured) or not np.isfinite(policy).all():
            return policy, 0  # nothing held (or garbage the safety gate rejects)
        out = policy.copy()
        cross = np.flatnonzero(policy >= self.open_above)
        rise = len(out)  # the step the opening starts from: none in this chunk
        if cross.size:  # released: the opening follows the rise that reaches open_above
            rise = int(cross[0])
            while rise > 0 and policy[rise - 1] <= policy[rise]:
                rise -= 1
        out[:rise] = np.minimum.accumulate(np.minimum(policy[:rise], float(start)))
        prev = float(start) if rise == 0 else float(out[rise - 1])
        for k in range(rise, len(out)):  # from there on no faster than max_step
            out[k] = prev = min(policy[k], prev + self.max_step)
        return out, int(np.count_nonzero(out != policy))


def apply_latches(positions: np.ndarray, start: np.ndarray, measured: np.ndarray | None,
                  latches: tuple[GripperLatch, ...]) -> tuple[np.ndarray, dict[int, int]]:
    """(H, D) chunk, the (D,) command in force before it and the (D,) measured positions (None:
    unknown) -> (latched chunk, {dimension: steps changed} for each latch that changed any)."""
    if not latches:
        return positions, {}
    out = np.array(positions, dtype=np.float64)
    changed: dict[int, int] = {}
    for latch in latches:
        j = latch.index
        out[:, j], n = latch.apply(out[:, j], float(start[j]),
                                   None if measured is None else float(measured[j]))
        if n:
            changed[j] = n
    return out, changed
