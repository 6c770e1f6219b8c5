"""Figures of a replay: predicted chunks against what the bag recorded. No rclpy.

Row i of a chunk observed at ``t`` is due at ``t + i dt``. It is compared with the recorded
command at that time, or, without a command topic, with the joint state one control period
later (the next state is the action, as in :func:`faster_ros.data.read_rosbag`). Rows outside the
recording and dimensions the recording lacks are left out (NaN), never filled.

    error       mean / max absolute error overall, per output group, per joint and per step
                of the chunk (physical units: rad, hand units, ...)
    vrr         share of predicted values within sigma of the recorded one (per element, at
                1e-3 and 1e-2: the tokenizer metric of FASTer eq. 4 applied to the policy)
    seam        jump at each hand-over: the new chunk's first row minus the previous chunk's
                value at that time, per group, and how many exceed the configured seam bound
    latency     policy time per chunk (ms): percentiles, histogram, stage breakdown
    tokens      invalid tokens predicted and chunks the live node would have rejected
    end_effector  with end effectors: per end effector translation (m), rotation (rad) and
                gripper errors with VRR at 1e-3 / 1e-2 in those units (the pose dims' truth is
                then the recorded poses as the policy's actions; faster_ros.replay.end_effector)
    hold_state  the same errors for "hold the observed state" (a baseline, for scale), and
                hold_last_command for "repeat the command recorded one period before" (with a
                command topic)
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from faster_ros.embodiment import Embodiment
from faster_ros.replay.bag import RecordedSeries, ReplayInputs
from faster_ros.replay.offline import ReplayRun

SIGMAS = (1e-3, 1e-2)
LATENCY_BINS = 20


def truth_for(run: ReplayRun, emb: Embodiment, commands: RecordedSeries | None,
              states: RecordedSeries) -> tuple[np.ndarray, str]:
    """(M, H, D) recorded values at the rows of every published chunk, and their source."""
    dt, horizon = emb.control.dt, emb.tokenizer.chunk_size
    series, shift = (commands, 0.0) if commands is not None else (states, dt)
    rows = [series.at(c.stamp + shift + dt * np.arange(horizon))
            for c in run.chunks if c.published]
    empty = np.zeros((0, horizon, emb.action_dim))
    return (np.stack(rows) if rows else empty), series.source


def _finite_stats(err: np.ndarray) -> dict[str, float]:
    e = err[np.isfinite(err)]
    if e.size == 0:
        return {"mae": float("nan"), "max": float("nan"), "values": 0}
    return {"mae": float(e.mean()), "max": float(e.max()), "values": int(e.size)}


def _vrr(err: np.ndarray) -> dict[str, float]:
    e = err[np.isfinite(err)]
    return {f"vrr@{s:g}": (float((e < s).mean()) if e.size else float("nan")) for s in SIGMAS}


def error_figures(pred: np.ndarray, truth: np.ndarray, emb: Embodiment) -> dict[str, Any]:
    """pred / truth (M, H, D) -> errors overall, per group, per joint and per step, and VRR."""
    err = np.abs(pred - truth)
    out: dict[str, Any] = {**_finite_stats(err), **_vrr(err)}
    out["per_group"] = {g.name: {**_finite_stats(err[..., list(g.indices)]),
                                 **_vrr(err[..., list(g.indices)])} for g in emb.outputs}
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a dim never recorded: None
        per_joint = np.nanmean(err.reshape(-1, err.shape[-1]), axis=0) if err.size else []
        per_step = np.nanmean(err, axis=(0, 2)) if err.size else []
    out["per_joint_mae"] = {n: _num(v) for n, v in zip(emb.dim_names, per_joint)}
    out["per_step_mae"] = [_num(v) for v in per_step]
    return out


def _num(v) -> float | None:
    v = float(v)
    return v if np.isfinite(v) else None


def seam_figures(run: ReplayRun, emb: Embodiment) -> dict[str, Any]:
    """Jump between consecutive published chunks at the hand-over time."""
    chunks = [c for c in run.chunks if c.published]
    dt = emb.control.dt
    jumps = []
    for prev, new in zip(chunks, chunks[1:]):
        steps = prev.stamp + dt * np.arange(len(prev.actions))
        if not steps[0] <= new.stamp <= steps[-1]:
            continue  # the previous chunk had run out: no seam to speak of
        old = np.array([np.interp(new.stamp, steps, prev.actions[:, d])
                        for d in range(emb.action_dim)])
        jumps.append(np.abs(new.actions[0] - old))
    if not jumps:
        return {"seams": 0}
    j = np.stack(jumps)  # (S, D)
    over = j > emb.seam_bound[None, :]
    return {
        "seams": len(j),
        "over_bound": int(over.any(axis=1).sum()),
        "per_group": {g.name: {"mean": float(j[:, list(g.indices)].mean()),
                               "max": float(j[:, list(g.indices)].max()),
                               "bound": float(emb.seam_bound[list(g.indices)].max())}
                      for g in emb.outputs},
        "per_seam_max": [float(v) for v in j.max(axis=1)],
    }


def latency_figures(run: ReplayRun) -> dict[str, Any]:
    total = np.array([c.timing.get("total_ms", np.nan) for c in run.chunks if c.timing])
    total = total[np.isfinite(total)]
    if total.size == 0:
        return {"chunks": 0}
    counts, edges = np.histogram(total, bins=LATENCY_BINS)
    stages = {}
    for key in ("image_ms", "context_ms", "detokenize_ms"):
        vals = [c.timing[key] for c in run.chunks if key in c.timing]
        if vals:
            stages[key] = float(np.mean(vals))
    blocks = [sum(c.timing["block_ms"]) for c in run.chunks if c.timing.get("block_ms")]
    if blocks:
        stages["blocks_ms"] = float(np.mean(blocks))
    return {
        "chunks": int(total.size),
        "p50_ms": float(np.percentile(total, 50)),
        "p95_ms": float(np.percentile(total, 95)),
        "max_ms": float(total.max()),
        "mean_ms": float(total.mean()),
        "histogram": {"counts": counts.tolist(), "edges_ms": edges.round(3).tolist()},
        "stages_mean_ms": stages,
    }


def replay_figures(run: ReplayRun, emb: Embodiment, commands: RecordedSeries | None,
                   states: RecordedSeries, inputs: ReplayInputs | None = None
                   ) -> dict[str, Any]:
    """Every figure of the report (see the module docstring). With ``inputs`` of an embodiment
    with end effectors whose poses the bag recorded, the truth of the pose dims is the recorded
    poses as the policy's actions, and ``end_effector`` holds the errors in m and rad
    (faster_ros.replay.end_effector)."""
    published = [c for c in run.chunks if c.published]
    truth, source = truth_for(run, emb, commands, states)
    poses = inputs is not None and emb.end_effectors and inputs.poses is not None
    starts = np.array([c.stamp for c in published])
    if poses:
        from faster_ros.replay.end_effector import fill_truth

        truth = fill_truth(inputs, starts, truth)
    pred = np.stack([c.actions for c in published]) if published else truth
    position = np.flatnonzero(~emb.is_velocity)
    state_at = {j: i for i, j in enumerate(emb.state_joints)}
    hold = np.full_like(truth, np.nan)
    for k, c in enumerate(published):  # hold the observed position (position dims only)
        for d in position:
            joint = emb.dimensions[d].joint
            if joint in state_at:
                hold[k, :, d] = c.state[state_at[joint]]
    last = None
    if commands is not None and published:  # repeat the previous recorded command
        last = np.stack([np.broadcast_to(commands.at(np.array([c.stamp - emb.control.dt]))[0],
                                         truth.shape[1:]) for c in published])
    end_effector = {}
    if poses and published:
        from faster_ros.replay.end_effector import replay_end_effector_figures

        end_effector = replay_end_effector_figures(inputs, starts, pred, truth, hold)
    problems: dict[str, int] = {}
    for c in run.chunks:
        if c.problem:
            key = c.problem.split(":")[0]
            problems[key] = problems.get(key, 0) + 1
    return {
        "compared_with": source,
        "attempts": run.attempts,
        "chunks": len(run.chunks),
        "published": len(published),
        "rejected": problems,
        "assembly_failures": dict(run.failures.most_common()),
        "invalid_tokens": {"total": int(sum(c.invalid_tokens for c in run.chunks)),
                           "chunks_with_invalid": int(sum(c.invalid_tokens > 0
                                                          for c in run.chunks))},
        "error": error_figures(pred, truth, emb),
        "hold_state": error_figures(hold, truth, emb) if published else {},
        "hold_last_command": error_figures(last, truth, emb) if last is not None else {},
        "end_effector": end_effector,
        "seam": seam_figures(run, emb),
        "latency": latency_figures(run),
        "wall_s": run.wall_s,
    }
