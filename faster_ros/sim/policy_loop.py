"""The policy driving the ALOHA sim directly, without ROS: a quick screen of the stack's loop.

    faster-ros sim-eval --model M --no-stack --episodes 50

The loop is the stack's without DDS and without real-time pacing: every ``execute_steps``
control periods (the policy node's replan period) the camera is rendered and the policy predicts
a chunk from the frame and the joint state; the chunk reaches the executor ``ceil(inference
time / dt)`` sim steps later (the stack's sim waits for no one either, so those steps pass while
the policy thinks), and the sim follows :class:`faster_ros.control.executor.ChunkExecutor`'s
command at every step: the same anchoring, seam blend, gripper latches and safety gate (seam and
rate checks, time scaling, rejection) as the executor node. A chunk that fails
:func:`faster_ros.inference.chunk_problem` is refused before it reaches the executor, as the
policy node refuses to publish it. 50 episodes take 1-2 minutes here instead of 15. It answers
"can this policy do the task at all" while training; the number that counts is the stack's
(``sim-eval`` without ``--no-stack``), which its results are never mixed with (the label says
"no stack"). Per-episode results have the schema of the sim robot's, plus the executor's
verdicts.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from types import SimpleNamespace
from typing import NamedTuple

import numpy as np
from tqdm import tqdm

from faster_ros.control.chunk import Chunk
from faster_ros.control.executor import ChunkExecutor
from faster_ros.embodiment import Embodiment
from faster_ros.inference import chunk_problem, state_history_of
from faster_ros.sim.aloha import DT, JOINT_NAMES, AlohaSim


def observe(sim: AlohaSim, emb: Embodiment,
            frame: np.ndarray | None = None) -> SimpleNamespace:
    """The policy's observation of the sim now: the camera (or ``frame`` in its place), the
    joint state, the config's instruction and the sim time."""
    frame = sim.render() if frame is None else frame
    return SimpleNamespace(images={emb.cameras[0].name: frame},
                           state=sim.qpos().astype(np.float32),
                           instruction=emb.policy.instruction, stamp=sim.time)


class Driven(NamedTuple):
    """What :func:`drive` counted."""

    chunks: int  # predicted
    refused_by_policy: int  # the policy's own check (chunk_problem): never submitted
    rejected_by_executor: int


def drive(sim: AlohaSim, policy, emb: Embodiment, until: int, latencies_ms: list[float],
          past: list[np.ndarray], command: np.ndarray | None = None,
          verdicts: Counter | None = None, latency_steps: int | None = None
          ) -> Driven:
    """Let the policy drive the sim from its current step to step ``until`` through a fresh
    executor: how many chunks it predicted, how many the policy check refused and how many the
    executor rejected.

    ``past`` holds the state at every step so far (the history a policy may condition on) and is
    appended to; each inference's wall time goes to ``latencies_ms``. ``command`` is what the
    robot was commanded until now (the scripted expert's last action when the policy takes over
    from it): the executor starts from it as from a teleoperator's command; without it the first
    chunk starts from the measured state, as at the start of an episode. ``verdicts`` counts the
    executor's actions (ok, clipped, time_scaled, rejected) and the kind of each rejection; chunks
    the policy check refused never reach the executor and are not in it.
    ``latency_steps`` fixes the delay from observation to executor (default: the inference's own
    wall time in control periods, rounded up)."""
    executor = ChunkExecutor(emb)
    lags = [round(lag / DT) for lag in state_history_of(policy)]
    execute = emb.control.execute_steps
    verdicts = Counter() if verdicts is None else verdicts
    chunks = by_policy = by_executor = 0
    pending: list[tuple[int, Chunk]] = []  # (sim step it arrives at, chunk)
    next_obs = sim.step_count
    if command is not None:
        executor.start_from(command, sim.time)
    held = np.asarray(past[-1] if command is None else command, dtype=np.float64)
    while sim.step_count < until:
        now = sim.time
        executor.set_measured(past[-1], now)
        if sim.step_count >= next_obs:
            next_obs += execute
            obs = observe(sim, emb)
            if lags:  # the state L seconds ago, clamped to the episode start
                obs.state_history = np.stack([past[max(0, len(past) - 1 - n)]
                                              for n in lags]).astype(np.float32)
            t0 = time.perf_counter()
            out = policy.predict_action_chunk(obs)
            seconds = time.perf_counter() - t0
            latencies_ms.append(seconds * 1e3)
            chunks += 1
            if chunk_problem(out, emb):
                by_policy += 1
            else:
                delay = math.ceil(seconds / DT) if latency_steps is None else latency_steps
                pending.append((sim.step_count + delay, Chunk(
                    np.asarray(out.actions, dtype=np.float64), start_time=now, dt=DT,
                    sequence=chunks)))
        while pending and pending[0][0] <= sim.step_count:
            verdict = executor.submit(pending.pop(0)[1], now)
            verdicts[verdict.action] += 1
            if not verdict.accepted:
                by_executor += 1
                verdicts[f"rejected_{verdict.refusal or 'other'}"] += 1
        cmd = executor.command(now)
        if cmd.active:
            held = cmd.positions
        sim.step(held)
        past.append(sim.qpos())
    return Driven(chunks, by_policy, by_executor)


def run_episode(sim: AlohaSim, policy, emb: Embodiment, seed: int, steps: int,
                latencies_ms: list[float]) -> dict:
    """One seeded episode; appends each inference's wall time to ``latencies_ms``."""
    start = time.perf_counter()
    past = [sim.reset(seed=seed)]
    verdicts: Counter = Counter()
    driven = drive(sim, policy, emb, steps, latencies_ms, past, verdicts=verdicts)
    outcome = sim.outcome()
    wall = time.perf_counter() - start
    return dict(seed=seed, strict_success=bool(outcome.strict),
                builtin_success=bool(outcome.builtin), final_reward=int(outcome.reward),
                max_reward=int(outcome.max_reward), box_z=round(float(outcome.box_z), 4),
                steps=int(sim.step_count), steps_per_s=round(sim.step_count / wall, 1),
                wall_s=round(wall, 2), chunks=driven.chunks,
                chunks_refused=driven.refused_by_policy + driven.rejected_by_executor,
                refused_by_policy=driven.refused_by_policy, verdicts=dict(verdicts))


def run_episodes(policy, emb: Embodiment, seeds: list[int], steps: int = 400,
                 image_hw: tuple[int, int] = (240, 320),
                 progress: bool = True) -> tuple[list[dict], list[float]]:
    """(per-episode results, inference latencies in ms) for ``seeds``, one sim for all; the
    camera rendered at ``image_hw`` (the sim robot node's default)."""
    if tuple(emb.dim_names) != JOINT_NAMES:
        raise ValueError(f"{emb.source}: the direct loop needs the ALOHA sim joints in "
                         f"gym-aloha's order {JOINT_NAMES}, got {emb.dim_names}")
    sim = AlohaSim(image_hw=image_hw, camera=emb.cameras[0].name)
    latencies: list[float] = []
    results = []
    try:
        for seed in tqdm(seeds, desc="sim (no stack)", unit="ep", disable=not progress):
            results.append(run_episode(sim, policy, emb, seed, steps, latencies))
    finally:
        sim.close()
    return results, latencies
