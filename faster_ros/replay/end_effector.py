"""End-effector figures of a replay, in metres and radians (FASTer's VRR in those units). No rclpy.

A pose's components mean nothing one by one (a quaternion and its negative are one rotation, two
Euler triples far apart can be too), so for an embodiment with end effectors the replay and the
tokenizer check add, per end effector, the errors of
:func:`faster_ros.control.pose_metrics.end_effector_errors`: translation (m, Euclidean), rotation
(rad, geodesic angle), gripper (its unit), each with mean, p95, max and VRR at 1e-3 / 1e-2 (share
of steps within sigma, in m and rad for poses, as FASTer defines it).

The truth comes from the recorded PoseStamped targets (the embodiment's pose_stamped outputs) or,
without them, from the pose feedback one control period later (like future joint states). Both
are command-space poses (position + quaternion); :meth:`CommandSpace.to_policy` maps them to the
policy's actions (for delta end effectors, the motion from one control step to the next, from the
pose one period before the first step), so predictions and recording are compared in the
policy's own action space, as the paper does. For delta end effectors, ``pose`` also gives the
error of the pose the executor would command, the predicted deltas accumulated from the recorded
pose before the chunk (:meth:`CommandSpace.to_command`): the drift along the chunk.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from faster_ros.control.chunk import Chunk
from faster_ros.control.pose import CommandSpace
from faster_ros.control.pose_metrics import (
    SIGMAS,
    end_effector_errors,
    end_effector_step_errors,
    nested,
    per_step,
    pose_errors,
    units,
)
from faster_ros.embodiment import Embodiment
from faster_ros.replay.bag import ReplayInputs

IDENTITY_POSE = np.array([0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0])


def pose_dims(emb: Embodiment) -> list[int]:
    """Action indices of every end effector's position and rotation."""
    return [i for ee in emb.end_effectors for i in ee.pose_indices]


def recorded_commands(inputs: ReplayInputs, space: CommandSpace, times: np.ndarray
                      ) -> np.ndarray:
    """(M, D_command) recorded poses for actions due at ``times`` (feedback: one period later);
    NaN outside the recording and in the columns that are not poses."""
    shift = inputs.embodiment.control.dt if inputs.poses.future else 0.0
    return inputs.poses.at(np.asarray(times, dtype=np.float64) + shift, space)


def commands_to_actions(space: CommandSpace, rows: np.ndarray) -> np.ndarray:
    """Command-space rows (K + 1, D_command), row 0 the pose one period before row 1 -> the
    policy's actions (K, D_policy) for rows 1..K: end-effector dims only (NaN elsewhere, and
    where a pose it needs is missing)."""
    rows = np.asarray(rows, dtype=np.float64)
    filled = rows.copy()
    out_ok = {}
    for slot in space.slots:
        cols = list(slot.indices)
        ok = np.isfinite(rows[:, cols]).all(axis=1)
        filled[np.ix_(~ok, cols)] = IDENTITY_POSE
        out_ok[slot.name] = ok[1:] & ok[:-1] if slot.end_effector.is_delta else ok[1:]
    actions = space.to_policy(filled[1:], previous=filled[0])
    out = np.full_like(actions, np.nan)
    for slot in space.slots:
        ee = slot.end_effector
        cols = list(ee.pose_indices)
        ok = out_ok[slot.name]
        out[np.ix_(ok, cols)] = actions[np.ix_(ok, cols)]
    return out


def recorded_actions(inputs: ReplayInputs, space: CommandSpace, start: float, steps: int
                     ) -> tuple[np.ndarray, np.ndarray]:
    """The recorded end-effector actions due at ``start + i dt`` (i < ``steps``) as
    (steps, D_policy) (pose dims only) and the recorded poses (steps + 1, D_command), row 0 one
    period before ``start``."""
    dt = inputs.embodiment.control.dt
    rows = recorded_commands(inputs, space, start + dt * np.arange(-1, steps))
    return commands_to_actions(space, rows), rows


def replay_end_effector_figures(inputs: ReplayInputs, starts: np.ndarray, pred: np.ndarray,
                                truth: np.ndarray, hold: np.ndarray | None = None
                                ) -> dict[str, Any]:
    """End-effector figures of a policy replay. ``starts`` (M,) are the chunks' observation
    stamps, ``pred`` (M, H, D) the predicted chunks, ``truth`` (M, H, D) the recorded actions with
    the end-effector dims filled (:func:`fill_truth`), ``hold`` (M, H, D) the hold-state
    baseline (its pose dims are replaced by "stay at the recorded pose before the chunk")."""
    emb = inputs.embodiment
    space = CommandSpace(emb)
    dt = emb.control.dt
    flat = end_effector_errors(pred, truth, emb)
    out: dict[str, Any] = {
        "compared_with": inputs.poses.source,
        "units": units(emb),
        "sigmas": list(SIGMAS),
        "actions": nested(flat),
        "actions_per_step": per_step(end_effector_step_errors(pred, truth, emb)),
    }
    if hold is not None and len(starts):
        hold = np.array(hold, dtype=np.float64)
        for k, t0 in enumerate(starts):
            before = recorded_commands(inputs, space, np.array([t0 - dt]))
            rows = np.repeat(before, pred.shape[1] + 1, axis=0)
            cols = pose_dims(emb)
            hold[k][:, cols] = commands_to_actions(space, rows)[:, cols]
        out["hold_pose"] = nested(end_effector_errors(hold, truth, emb))
    delta = [ee for ee in emb.end_effectors if ee.is_delta]
    if delta and len(starts):
        pred_cmd, true_cmd = [], []
        for k, t0 in enumerate(starts):
            rows = recorded_commands(inputs, space, t0 + dt * np.arange(-1, pred.shape[1]))
            base = np.where(np.isfinite(rows[0]), rows[0], 0.0)
            chunk = Chunk(pred[k], float(t0), dt)
            cmd, _ = space.to_command(chunk, base, 0)
            cmd = np.array(cmd.positions)
            for slot in space.slots:  # no recorded pose before the chunk: nothing to start from
                if not np.isfinite(rows[0][list(slot.indices)]).all():
                    cmd[:, list(slot.indices)] = np.nan
            pred_cmd.append(cmd)
            true_cmd.append(rows[1:])
        flat_pose, steps = pose_errors(np.stack(pred_cmd), np.stack(true_cmd), space.slots)
        names = {ee.name for ee in delta}
        out["pose"] = {k: v for k, v in nested(flat_pose).items() if k in names}
        out["pose_per_step"] = {k: v for k, v in per_step(steps).items() if k in names}
    return out


def fill_truth(inputs: ReplayInputs, starts: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """``truth`` (M, H, D) with the end-effector pose dims replaced by the recorded actions of
    the chunks observed at ``starts`` (:func:`recorded_actions`)."""
    space = CommandSpace(inputs.embodiment)
    out = np.array(truth, dtype=np.float64)
    cols = pose_dims(inputs.embodiment)
    for k, t0 in enumerate(starts):
        actions, _ = recorded_actions(inputs, space, float(t0), out.shape[1])
        out[k][:, cols] = actions[:, cols]
    return out


def summary_line(figures: dict[str, Any], key: str = "actions") -> str:
    """One printed line per end effector: translation / rotation means and VRR."""
    parts = []
    for ee, v in figures.get(key, {}).items():
        tr, ro = v.get("translation", {}), v.get("rotation", {})
        parts.append(f"{ee}: translation {tr.get('mean_m', float('nan')):.4f} m (VRR@1e-3 "
                     f"{tr.get('vrr@0.001', float('nan')):.3f}, @1e-2 "
                     f"{tr.get('vrr@0.01', float('nan')):.3f}), rotation "
                     f"{ro.get('mean_rad', float('nan')):.4f} rad (VRR@1e-3 "
                     f"{ro.get('vrr@0.001', float('nan')):.3f}, @1e-2 "
                     f"{ro.get('vrr@0.01', float('nan')):.3f})")
    return "; ".join(parts)


def table_rows(figures: dict[str, Any], label: str, key: str) -> list[tuple[str, ...]]:
    """HTML table rows (label, end effector, part, unit, mean, p95, max, VRR@1e-3, VRR@1e-2,
    invalid) for ``figures[key]``."""
    rows = []
    unit_of = figures.get("units", {})
    for ee, parts in figures.get(key, {}).items():
        for part, v in parts.items():
            unit = unit_of.get(part) or unit_of.get(f"{ee}/{part}", "")
            mean = next((v[k] for k in v if k.startswith("mean_")), None)
            p95 = next((v[k] for k in v if k.startswith("p95_")), None)
            mx = next((v[k] for k in v if k.startswith("max_")), None)
            rows.append((label, ee, part, unit, *[_fmt(x) for x in (mean, p95, mx)],
                         _fmt(v.get("vrr@0.001")), _fmt(v.get("vrr@0.01")),
                         _fmt(v.get("invalid"))))
    return rows


TABLE_HEADER = ("", "end effector", "part", "unit", "mean", "p95", "max", "VRR@1e-3",
                "VRR@1e-2", "invalid")


def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def plot_per_step(ax, steps: dict[str, dict[str, list]], label: str = "") -> None:
    """Translation (m, left axis) and rotation (rad, right axis) error at each chunk step."""
    twin = getattr(ax, "_ee_twin", None)
    if twin is None:
        twin = ax.twinx()
        ax._ee_twin = twin
    for k, (ee, parts) in enumerate(steps.items()):
        tag = f"{label} {ee}".strip()
        if "translation" in parts:
            ax.plot([np.nan if v is None else v for v in parts["translation"]], marker=".",
                    color=f"C{2 * k}", label=f"{tag} translation [m]")
        if "rotation" in parts:
            twin.plot([np.nan if v is None else v for v in parts["rotation"]], marker="x",
                      ls="--", color=f"C{2 * k + 1}", label=f"{tag} rotation [rad]")
    ax.set_xlabel("step of the chunk")
    ax.set_ylabel("translation error [m]", fontsize=8)
    twin.set_ylabel("rotation error [rad]", fontsize=8)
    lines = ax.get_legend_handles_labels()
    lines2 = twin.get_legend_handles_labels()
    ax.legend(lines[0] + lines2[0], lines[1] + lines2[1], fontsize=7, loc="upper left")
