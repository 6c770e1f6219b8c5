"""A scripted, model-free policy for bring-up checks and closed-loop tests (builtin:wave).

It answers ``predict_action_chunk(observation)`` like FASTerVLA does (same output type), with a
smooth wave around the observed joint positions, so that the runtime (alignment, timing, blending,
safety gate, controllers) can be exercised on a robot or mock robot before a trained model exists.
It is not a learned policy and never claims to be one: its model id is ``builtin:wave``.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np

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
        ms = (time.perf_counter() - t0) * 1e3
        return ScriptedOutput(actions=actions, timing={"total_ms": ms, "context_ms": ms})


def load_builtin(name: str, emb: Embodiment):
    kind = name[len(BUILTIN_PREFIX):]
    if kind == "wave":
        return WavePolicy(emb)
    raise ValueError(f"unknown builtin policy {name!r} (known: builtin:wave)")
