"""Offline replay: the live policy node's loop, driven by a bag instead of DDS. No rclpy.

The messages go, in bag order, into the same :class:`~faster_ros.observation.ObservationAssembler`
the policy node uses; whenever a new chunk is due (every ``execute_steps`` control periods, like
the node's replan timer) and a sample of the reference input arrives, the observation is
assembled at that arrival time (or, when other cameras' frames that belong with it are still on
their way, at the arrival of the last of them, at most half a frame period later: the node's
worker waits the same way, see ObservationAssembler.cameras_pending), the policy predicts a
chunk (unless the observation is the one already used, which the node skips too) and the node's
own checks (:func:`~faster_ros.inference.chunk_problem`) decide whether it would have been
published.

``at_stamps`` instead assembles exactly at the reference samples with those stamps (the
observations of a live run, for the parity check). With ``late_joints``, joint messages stamped
like one of those frames reach the assembler only after it (the order in which a live node may take
them when both wait in its executor's queue: it then holds the previous joint sample).
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from faster_ros.inference import chunk_problem, state_history_of
from faster_ros.observation import ObservationAssembler
from faster_ros.replay.bag import ReplayInputs


@dataclass
class ChunkRecord:
    """One inference of the replay."""

    stamp: float  # s, observation stamp (ActionChunk.header.stamp live)
    now: float  # s, when it was assembled (bag time)
    state: np.ndarray  # (S,)
    actions: np.ndarray | None  # (H, D), None when the output had invalid tokens
    codes: np.ndarray | None
    invalid_tokens: int
    problem: str  # "" when the live node would publish it
    timing: dict

    @property
    def published(self) -> bool:
        return not self.problem


@dataclass
class ReplayRun:
    chunks: list[ChunkRecord]
    attempts: int
    failures: Counter = field(default_factory=Counter)  # assembly failure reason -> count
    wall_s: float = 0.0


def _reason_kind(reason: str) -> str:
    """Group failure reasons that differ only in numbers."""
    return "".join("#" if c.isdigit() else c for c in reason)


def run_offline(inputs: ReplayInputs, policy, *, instruction: str | None = None,
                replan_s: float | None = None, at_stamps: Sequence[float] | None = None,
                max_chunks: int | None = None, progress: bool = True,
                late_joints: bool = False) -> ReplayRun:
    """Replay ``inputs`` through the observation assembler and ``policy``."""
    from tqdm import tqdm

    emb = inputs.embodiment
    assembler = ObservationAssembler(emb, state_history_s=state_history_of(policy))
    text = emb.policy.instruction if instruction is None else instruction
    replan = replan_s or emb.control.execute_steps * emb.control.dt
    wanted = None if at_stamps is None else np.sort(np.asarray(at_stamps, dtype=np.float64))
    run = ReplayRun([], 0)
    last_attempt = last_stamp = -math.inf
    start = time.perf_counter()
    bar = tqdm(inputs.samples, desc=f"replay {inputs.path.name}", unit="msg",
               disable=not progress, leave=False)
    def is_wanted(stamp: float) -> bool:
        k = int(np.searchsorted(wanted, stamp))
        return any(abs(wanted[i] - stamp) <= 5e-4 for i in (k - 1, k) if 0 <= i < len(wanted))

    held = []  # late_joints: joint samples that arrive after the frame they are stamped like
    deferred = None  # (reference stamp, bag time limit): waiting for the other cameras' frames

    def attempt(now: float) -> bool:
        """Assemble at ``now`` and predict, like the node's worker. True: stop (max_chunks)."""
        nonlocal last_stamp
        run.attempts += 1
        result = assembler.assemble(now, text)
        for h in held:
            assembler.add_joints(h.name, h.stamp, *h.payload)
        held.clear()
        if result.observation is None:
            run.failures[_reason_kind(result.reason)] += 1
            return False
        obs = result.observation
        if obs.stamp == last_stamp:
            return False  # the live node skips an observation it already used (no new frame)
        last_stamp = obs.stamp
        try:
            out = policy.predict_action_chunk(obs)
        except Exception as exc:  # the live node keeps running and counts it as rejected
            run.chunks.append(ChunkRecord(obs.stamp, now, obs.state, None, None, 0,
                                          f"inference failed: {type(exc).__name__}: {exc}", {}))
            return False
        problem = chunk_problem(out, emb)
        actions = None if out.actions is None else np.asarray(out.actions, dtype=np.float64)
        run.chunks.append(ChunkRecord(obs.stamp, now, np.asarray(obs.state), actions,
                                      None if out.codes is None else np.asarray(out.codes),
                                      len(out.invalid), problem, dict(out.timing)))
        bar.set_postfix(chunks=len(run.chunks))
        return max_chunks is not None and len(run.chunks) >= max_chunks

    for s in bar:
        if deferred is not None and s.t_bag > deferred[1]:  # the node stops waiting here
            stop, deferred = attempt(deferred[1]), None
            if stop:
                break
        if s.kind == "camera":
            assembler.add_image(s.name, s.stamp, s.payload)
        elif late_joints and wanted is not None and s.name != assembler.reference and \
                is_wanted(s.stamp):
            held.append(s)
        else:
            assembler.add_joints(s.name, s.stamp, *s.payload)
        if deferred is not None:
            if not assembler.cameras_pending(deferred[0]):  # the set is complete
                stop, deferred = attempt(s.t_bag), None
                if stop:
                    break
            continue
        if s.name != assembler.reference:
            continue
        if wanted is not None:
            if not is_wanted(s.stamp):
                continue
        elif s.t_bag - last_attempt < replan - 1e-9:
            continue
        last_attempt = s.t_bag
        waiting = assembler.cameras_pending(s.stamp)
        if waiting:  # as the node's worker: wait for the frames that belong with this one
            deferred = (s.stamp, s.t_bag + assembler.frame_wait_s(waiting))
            continue
        if attempt(s.t_bag):
            break
    else:
        if deferred is not None:
            attempt(deferred[1])
    bar.close()
    run.wall_s = time.perf_counter() - start
    return run
