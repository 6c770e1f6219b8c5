"""Closed loop across processes with an end-effector embodiment (config/r1lite_ee.yaml): mock
robot <-> policy node (builtin:wave, delta pose + axis-angle actions) <-> executor node, over DDS.

The executor streams geometry_msgs/PoseStamped targets; the mock robot follows them (first-order
lag on the position, slerp on the rotation) and reports the pose back, which the executor needs
before it executes anything. Every published pose must be finite, a unit quaternion, inside the
workspace box, in the configured frame, and move no faster than the speed limits (or the seam
bound) between consecutive targets.
"""

import numpy as np
import pytest
import yaml
from test_closed_loop import run_stack

from faster_ros import rotations as rot
from faster_ros.control.pose import PoseSafetyGate, make_executor
from faster_ros.paths import config_path
from faster_ros.ros import conversions as conv

pytestmark = [pytest.mark.ros, pytest.mark.multiprocess, pytest.mark.slow]


def absolute_rot6d_config(tmp_path) -> str:
    """r1lite_ee with absolute positions and 6-D rotations (the other action-space style)."""
    data = yaml.safe_load(config_path("r1lite_ee").read_text())
    data["name"] = "r1lite_ee_absolute_rot6d"
    for ee in data["end_effectors"]:
        ee.update(position="absolute", rotation="rot6d")
        for key in ("delta_frame", "max_step_translation", "max_step_rotation"):
            ee.pop(key)
    path = tmp_path / "r1lite_ee_absolute_rot6d.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


@pytest.mark.parametrize("variant", ["delta_axis_angle", "absolute_rot6d"])
def test_closed_loop_pose_targets_are_finite_unit_inside_and_within_speed(variant, tmp_path):
    config = "r1lite_ee" if variant == "delta_axis_angle" else absolute_rot6d_config(tmp_path)
    emb, rec, logs = run_stack(config, seconds=14.0)
    status = rec.executor_status
    assert status is not None, "no executor status"
    assert status.chunks_produced >= 3, (
        f"only {status.chunks_produced} chunks accepted; executor says {status.reason!r}\n"
        + logs["faster_executor"][-2000:])
    space = make_executor(emb)
    gate = space.gate
    assert isinstance(gate, PoseSafetyGate)
    figures = {}
    for k, slot in enumerate(space.space.slots):
        ee = slot.end_effector
        msgs = rec.commands.get(ee.name, [])
        assert len(msgs) > 20, f"too few pose targets on {ee.name}: {len(msgs)}"
        assert all(m.header.frame_id == ee.frame for _, m in msgs)
        poses = np.stack([conv.command_values(
            next(g for g in space.embodiment.outputs if g.end_effector == ee.name), m)
            for _, m in msgs])  # (N, 7): x, y, z, qw, qx, qy, qz
        p, q = poses[:, :3], poses[:, 3:]
        assert np.isfinite(poses).all(), f"non-finite pose target for {ee.name}"
        assert np.allclose(np.linalg.norm(q, axis=1), 1.0, atol=1e-6), "non-unit quaternion"
        lo, hi = np.array(ee.workspace_lower), np.array(ee.workspace_upper)
        assert np.all(p >= lo - 1e-9) and np.all(p <= hi + 1e-9), "target outside the workspace"
        stamps = np.array([conv.to_sec(m.header.stamp) for _, m in msgs])
        assert np.all(np.diff(stamps) > 0), "stamps not strictly increasing"
        gaps = np.diff(stamps)
        step = np.linalg.norm(np.diff(p, axis=0), axis=1)
        turn = rot.angle_between(q[:-1], q[1:])
        assert np.all(np.sum(q[:-1] * q[1:], axis=1) > 0), "quaternion sign flip in the stream"
        # speed limits over the actual gap between targets, or the seam bound (one legal step)
        lin_bound = np.maximum(gate.seam_translation[k], ee.max_linear_speed * gaps)
        ang_bound = np.maximum(gate.seam_rotation[k], ee.max_angular_speed * gaps)
        assert np.all(step <= lin_bound * (1 + 1e-3)), f"{ee.name}: translation step too large"
        assert np.all(turn <= ang_bound * (1 + 1e-3)), f"{ee.name}: rotation step too large"
        moving = gaps > 0.02  # speed figures over the regular ticks
        figures[ee.name] = {
            "targets": len(msgs),
            "max_speed_m_s": float((step[moving] / gaps[moving]).max()),
            "max_angular_rad_s": float((turn[moving] / gaps[moving]).max()),
            "travel_m": float(np.ptp(p, axis=0).max()),
            "turn_rad": float(rot.angle_between(q[0], q).max()),
        }
        assert figures[ee.name]["travel_m"] > 1e-3 and figures[ee.name]["turn_rad"] > 1e-3, (
            "the end effector never moved", figures)
    # the mock robot followed: its simulated pose ends near the last targets
    assert rec.simulated, "no simulated state from the mock robot"
    names = space.embodiment.dim_names
    last_sim = rec.simulated[-1][1]
    for slot in space.space.slots:
        last_cmd = conv.command_values(
            next(g for g in space.embodiment.outputs if g.end_effector == slot.name),
            rec.commands[slot.name][-1][1])
        sim = last_sim[list(slot.indices)]
        assert names[slot.position[0]] == f"{slot.name}_x"
        assert np.linalg.norm(sim[:3] - last_cmd[:3]) < 0.02
        assert rot.angle_between(sim[3:], last_cmd[3:]) < 0.1
    # the grippers were streamed as joint targets next to the poses
    for name in ("left_gripper", "right_gripper"):
        assert rec.commands.get(name), f"no gripper target on {name}"
    print(f"{emb.name}: {status.chunks_produced} chunks accepted, {status.chunks_rejected} "
          f"refused, figures {figures}")
