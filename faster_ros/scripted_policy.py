"""A scripted, model-free policy for bring-up checks and closed-loop tests (builtin:wave).

It answers ``predict_action_chunk(observation)`` like FASTerVLA does (same output type), with a
smooth wave around the observed joint positions, so that the runtime (alignment, timing, blending,
safety gate, controllers) can be exercised on a robot or mock robot before a trained model exists.
It is not a learned policy and never claims to be one: its model id is ``builtin:wave``.
``builtin:faults`` is the same wave that misbehaves on request (fault-injection tests).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np

from faster_ros import rotations as rot
from faster_ros.embodiment import Embodiment

BUILTIN_PREFIX = "builtin:"


@dataclass
class ScriptedOutput:
    actions: np.ndarray  # (H, D) physical units
    codes: np.ndarray | None = None
    invalid: list[str] = field(default_factory=list)
    timing: dict = field(default_factory=dict)


class WavePolicy:
    """Each position dimension waves by ``amplitude`` (a fraction of its range, capped by its
    speed limit) around the observed position; velocity dimensions wave around zero."""

    def __init__(self, emb: Embodiment, amplitude: float = 0.05, period_s: float = 4.0):
        self.emb = emb
        self.action_spec = (emb.action_dim, emb.tokenizer.chunk_size)
        self.period_s = period_s
        span = emb.upper - emb.lower
        omega = 2 * math.pi / period_s
        # amplitude * omega must stay well under max_rate: a wave the safety gate accepts
        self.amplitude = np.minimum(amplitude * span, 0.3 * emb.max_rate / omega)
        self._state_index = [emb.state_joints.index(d.joint) if d.joint in emb.state_joints
                             else -1 for d in emb.dimensions]

    def set_decoding(self, greedy: bool) -> None:
        """Deterministic already; kept for the policy interface."""

    def predict_action_chunk(self, observation) -> ScriptedOutput:
        t0 = time.perf_counter()
        emb = self.emb
        steps = np.arange(emb.tokenizer.chunk_size) * emb.control.dt
        state = np.asarray(observation.state, dtype=np.float64)
        center = np.array([state[i] if i >= 0 else 0.0 for i in self._state_index])
        phase = 2 * math.pi * (observation.stamp % self.period_s) / self.period_s
        omega = 2 * math.pi / self.period_s
        wave = np.sin(phase + omega * steps)[:, None] - math.sin(phase)
        actions = center[None, :] + wave * self.amplitude[None, :]
        margin = 0.02 * (emb.upper - emb.lower)
        actions = np.clip(actions, emb.lower + margin, emb.upper - margin)
        end_effector_wave(emb, actions, phase, omega, steps)
        ms = (time.perf_counter() - t0) * 1e3
        return ScriptedOutput(actions=actions, timing={"total_ms": ms, "context_ms": ms})


FAULT_PREFIX = "fault:"


class FaultInjectingPolicy(WavePolicy):
    """``builtin:faults``: the wave policy, misbehaving on request, for fault-injection tests.

    The fault is chosen by the instruction (topic or SetInstruction service), so that a running
    stack can be driven through faults and back: ``fault:raise`` raises in inference,
    ``fault:slow=<s>`` sleeps ``s`` seconds before answering (inference slower than the chunk),
    ``fault:nan`` returns NaN actions, ``fault:jump`` returns a plan far from the robot (a seam
    jump the executor must reject). Any other instruction: the plain wave.
    """

    def predict_action_chunk(self, observation) -> ScriptedOutput:
        fault = str(getattr(observation, "instruction", "") or "")
        if fault.startswith(FAULT_PREFIX):
            kind, _, arg = fault[len(FAULT_PREFIX):].partition("=")
            if kind == "raise":
                raise RuntimeError("injected fault: the policy raised")
            t0 = time.perf_counter()
            if kind == "slow":
                time.sleep(float(arg or 1.0))
            out = super().predict_action_chunk(observation)
            out.timing["total_ms"] = (time.perf_counter() - t0) * 1e3
            if kind == "nan":
                out.actions[len(out.actions) // 2, 0] = np.nan
            elif kind == "jump":
                span = self.emb.upper - self.emb.lower
                far = np.where(out.actions[0] > (self.emb.lower + self.emb.upper) / 2, -0.4, 0.4)
                shifted = out.actions + np.where(self.emb.is_velocity, 0.0, far * span)
                out.actions = np.clip(shifted, self.emb.lower, self.emb.upper)
            return out
        return super().predict_action_chunk(observation)


BUILTINS = {"wave": WavePolicy, "faults": FaultInjectingPolicy}


EE_WAVE_M = 0.03  # end-effector wave: position amplitude (m) along x (and half along y)
EE_WAVE_RAD = 0.15  # and rotation amplitude (rad) about z


def end_effector_wave(emb: Embodiment, actions: np.ndarray, phase: float, omega: float,
                      steps: np.ndarray) -> None:
    """End-effector dims of ``actions`` (H, D), in place: a slow wave of the position along x
    (half along y) and of the rotation about the fixed z axis, in the end effector's own
    representation. Delta end effectors get the wave's per-step increments (the executor
    accumulates them, so the pose waves around where it is); absolute ones follow one fixed wave
    in time around the workspace centre and the identity rotation (where the mock robot starts:
    the observation carries no end-effector pose to centre on), so consecutive chunks agree;
    their amplitude stays under half the seam bounds, so that a chunk is also accepted after a
    hold anywhere on the wave."""
    s = np.sin(phase + omega * steps)  # (H,) the wave at each step's (absolute) time
    for ee in emb.end_effectors:
        if ee.is_delta:
            amount = s - np.sin(phase + omega * (steps - emb.control.dt))
            base, metres, radians = np.zeros(3), EE_WAVE_M, EE_WAVE_RAD
        else:
            amount = s
            base = 0.5 * (np.array(ee.workspace_lower) + np.array(ee.workspace_upper))
            metres = min(EE_WAVE_M, 0.45 * ee.max_seam_translation)
            radians = min(EE_WAVE_RAD, 0.45 * ee.max_seam_rotation)
        actions[:, list(ee.position_indices)] = base + metres * amount[:, None] * [1, 0.5, 0]
        quats = [rot.to_quat([0.0, 0.0, radians * a], "axis_angle") for a in amount]
        actions[:, list(ee.rotation_indices)] = rot.from_quats(np.array(quats), ee.rotation,
                                                               ee.euler_axes)


def load_builtin(name: str, emb: Embodiment):
    kind = name[len(BUILTIN_PREFIX):]
    if kind in BUILTINS:
        return BUILTINS[kind](emb)
    known = ", ".join(BUILTIN_PREFIX + k for k in BUILTINS)
    raise ValueError(f"unknown builtin policy {name!r} (known: {known})")
