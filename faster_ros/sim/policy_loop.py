"""The policy driving the ALOHA sim directly, without the ROS stack: a quick screen.

    faster-ros sim-eval --model M --no-stack --episodes 50

Each control period the loop is synchronous: render the top camera, predict a chunk from the
frame and the joint state, run its first ``execute_steps`` actions (clipped to the joint limits;
a chunk that fails :func:`faster_ros.inference.chunk_problem` is replaced by holding the state),
repeat until the episode's last step. No ROS, no asynchronous inference, no blending or seam
checks, no real-time pacing: 50 episodes take about a minute here instead of 15. It answers
"can this policy do the task at all" while training; the number that counts is the stack's
(``sim-eval`` without ``--no-stack``), which its results are never mixed with (the label says
"no stack"). Per-episode results have the schema of the sim robot's.
"""

from __future__ import annotations

import time
from types import SimpleNamespace

import numpy as np
from tqdm import tqdm

from faster_ros.control.latch import apply_latches
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


def executable(out, state: np.ndarray, emb: Embodiment, command: np.ndarray | None = None
               ) -> tuple[np.ndarray, bool]:
    """(the first ``execute_steps`` actions to run, refused): a chunk that fails
    :func:`faster_ros.inference.chunk_problem` becomes holding ``state``; a good one goes
    through the embodiment's gripper latches from ``command`` (the last command sent; default
    ``state``), over the whole chunk as the executor's do, and is clipped to the joint limits."""
    execute = emb.control.execute_steps
    if chunk_problem(out, emb):
        return np.repeat(np.asarray(state, dtype=np.float64)[None], execute, 0), True
    actions, _ = apply_latches(np.asarray(out.actions, dtype=np.float64),
                               state if command is None else command, state, emb.latches)
    return np.clip(actions[:execute], emb.lower, emb.upper), False


def drive(sim: AlohaSim, policy, emb: Embodiment, until: int, latencies_ms: list[float],
          past: list[np.ndarray]) -> tuple[int, int]:
    """Let the policy drive the sim from its current step to step ``until``: (chunks predicted,
    chunks refused). ``past`` holds the state at every step so far (the history a policy may
    condition on) and is appended to; each inference's wall time goes to ``latencies_ms``."""
    lags = [round(lag / DT) for lag in state_history_of(policy)]
    chunks = refused = 0
    command = past[-1]  # what the gripper latches start from: the last command sent
    while sim.step_count < until:
        obs = observe(sim, emb)
        if lags:  # the state L seconds ago, clamped to the episode start
            obs.state_history = np.stack([past[max(0, len(past) - 1 - n)]
                                          for n in lags]).astype(np.float32)
        t0 = time.perf_counter()
        out = policy.predict_action_chunk(obs)
        latencies_ms.append((time.perf_counter() - t0) * 1e3)
        chunks += 1
        actions, bad = executable(out, past[-1], emb, command)
        refused += bad
        for action in actions[: until - sim.step_count]:
            sim.step(action)
            past.append(sim.qpos())
            command = action
    return chunks, refused


def run_episode(sim: AlohaSim, policy, emb: Embodiment, seed: int, steps: int,
                latencies_ms: list[float]) -> dict:
    """One seeded episode; appends each inference's wall time to ``latencies_ms``."""
    start = time.perf_counter()
    past = [sim.reset(seed=seed)]
    chunks, refused = drive(sim, policy, emb, steps, latencies_ms, past)
    outcome = sim.outcome()
    wall = time.perf_counter() - start
    return dict(seed=seed, strict_success=bool(outcome.strict),
                builtin_success=bool(outcome.builtin), final_reward=int(outcome.reward),
                max_reward=int(outcome.max_reward), box_z=round(float(outcome.box_z), 4),
                steps=int(sim.step_count), steps_per_s=round(sim.step_count / wall, 1),
                wall_s=round(wall, 2), chunks=chunks, chunks_refused=refused)


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
