"""Operator commands in action space: mapping, staleness, "the operator moved", bounded steps.

A teleop input (faster_ros.embodiment.TeleopInput) drives some action dimensions: a leader arm's
JointState / JointTrajectory by joint name, a base Twist by field. :class:`TeleopState` keeps the
newest valid value of every dimension with its time, tells which are fresh, and detects operator
activity against a reference taken when control left the operator (a position dimension moved by
more than ``activity_threshold`` of its range; a twist above that fraction of its range).
:func:`limit_step` is the rate limiter that makes the return to teleoperation bumpless;
:func:`shadow_divergence` compares the policy's shadow plan with the operator's command.

No rclpy here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from faster_ros.control.chunk import Chunk
from faster_ros.embodiment import Embodiment, TeleopInput


def map_joint_values(inp: TeleopInput, names: Sequence[str],
                     values: Sequence[float]) -> tuple[dict[int, float], list[str]]:
    """Leader-arm joints -> {action index: value} for the dimensions of ``inp``, and problems
    (length mismatch, missing joints). Unknown names in the message are ignored."""
    names, values = list(names), list(values)
    if len(names) != len(values):
        return {}, [f"{inp.topic}: {len(names)} joint names but {len(values)} positions"]
    by_name = dict(zip(names, values))
    out = {i: float(by_name[j]) for i, j in zip(inp.indices, inp.names) if j in by_name}
    problems = []
    if not out:
        problems.append(f"{inp.topic}: none of the joints {list(inp.names)[:3]}... in the "
                        f"message (got {names[:3]}...)")
    return out, problems


def map_twist(inp: TeleopInput, fields: Mapping[str, float]) -> tuple[dict[int, float],
                                                                        list[str]]:
    """Twist fields ({'linear.x': v, ...}) -> {action index: value} for ``inp``'s dimensions."""
    return {i: float(fields[f]) for i, f in zip(inp.indices, inp.names)}, []


def shadow_divergence(chunk: Chunk, command: np.ndarray, now: float) -> np.ndarray:
    """(D,) how far the policy's shadow plan is from what is commanded: ``|chunk(now) -
    command|`` with the chunk interpolated at ``now`` (held at its ends). What an operator looks
    at before handing over: small means the policy would continue what they are doing."""
    times = chunk.times()
    planned = np.array([np.interp(now, times, chunk.positions[:, j]) for j in range(chunk.dim)])
    return np.abs(planned - np.asarray(command, dtype=np.float64))


def limit_step(current: np.ndarray, target: np.ndarray, rate: np.ndarray, elapsed: float,
               max_step: np.ndarray) -> np.ndarray:
    """Move ``current`` towards ``target`` by at most ``min(rate * elapsed, max_step)`` per
    dimension (all (D,)): the step stays bounded even when a tick comes late."""
    step = np.minimum(np.asarray(rate) * max(float(elapsed), 0.0), np.asarray(max_step))
    return current + np.clip(target - current, -step, step)


class TeleopState:
    """Newest operator value of every action dimension (NaN: never received), validated.

    Non-finite values are dropped (the previous value stays) and reported; values outside the
    limits are clipped into them (counted in ``clipped``), so what is kept is always publishable.
    """

    def __init__(self, emb: Embodiment):
        spec = emb.handoff
        self.emb = emb
        self.timeout_s = spec.teleop_timeout_s
        self.is_velocity = emb.is_velocity
        self.lower, self.upper = emb.lower, emb.upper
        self.threshold = spec.activity_threshold * (self.upper - self.lower)  # (D,)
        d = emb.action_dim
        self.values = np.full(d, np.nan)
        self.stamps = np.full(d, -np.inf)
        self.reference = np.full(d, np.nan)  # where the operator was when control left them
        self.clipped = 0

    def update(self, values: Mapping[int, float], now: float) -> tuple[list[str], str]:
        """Store a sample; returns (problems, activity) where ``activity`` describes the largest
        move beyond the threshold relative to the reference ("" if none)."""
        problems = []
        names = self.emb.dim_names
        for i, v in values.items():
            if not np.isfinite(v):
                problems.append(f"non-finite teleop value {v} for {names[i]} dropped")
                continue
            clipped = min(max(v, self.lower[i]), self.upper[i])
            if clipped != v:
                self.clipped += 1
                problems.append(f"teleop {names[i]}={v:.4g} outside [{self.lower[i]:.4g}, "
                                f"{self.upper[i]:.4g}]: clipped")
            self.values[i] = clipped
            self.stamps[i] = now
            if not self.is_velocity[i] and np.isnan(self.reference[i]):
                self.reference[i] = clipped  # first sample after control left the operator
        return problems, self.activity(list(values))

    def activity(self, indices: Sequence[int]) -> str:
        """The largest move beyond the threshold among ``indices``, as text ("" if none)."""
        best, text = 1.0, ""
        for i in indices:
            v = self.values[i]
            if np.isnan(v):
                continue
            delta = abs(v) if self.is_velocity[i] else abs(v - self.reference[i])
            if np.isnan(delta):
                continue
            ratio = delta / self.threshold[i]
            if ratio > best:
                best = ratio
                unit = self.emb.dimensions[i].unit
                what = "commands" if self.is_velocity[i] else "moved by"
                text = (f"{self.emb.dim_names[i]} {what} {delta:.4g} {unit} (threshold "
                        f"{self.threshold[i]:.4g})")
        return text

    def set_reference(self) -> None:
        """Control leaves the operator: later moves are measured from the newest values."""
        self.reference = np.where(self.is_velocity, np.nan, self.values)

    def fresh(self, now: float) -> np.ndarray:
        """(D,) bool: a value arrived within ``teleop_timeout_s``."""
        return (now - self.stamps) <= self.timeout_s

    def target(self, now: float, hold: np.ndarray) -> np.ndarray:
        """(D,) what the operator commands now: fresh values; otherwise ``hold`` for positions
        (stay where the command is) and zero for velocities (a silent joystick stops the base)."""
        fresh = self.fresh(now)
        stale_fill = np.where(self.is_velocity, 0.0, hold)
        return np.where(fresh, self.values, stale_fill)
