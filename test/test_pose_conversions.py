"""geometry_msgs/PoseStamped <-> (position, quaternion w, x, y, z): the message's x, y, z, w order
is handled by faster_ros.rotations.quat_to_ros / quat_from_ros and nowhere else."""

import ast
from pathlib import Path

import numpy as np
import pytest

from faster_ros import rotations as rot

pytestmark = pytest.mark.ros


def test_pose_stamped_round_trip_and_field_order():
    from builtin_interfaces.msg import Time

    from faster_ros.ros import conversions as conv

    q = rot.to_quat([0.3, -0.2, 1.1], "axis_angle")  # w, x, y, z
    msg = conv.pose_stamped([0.4, -0.1, 0.25], q, Time(sec=3), "torso_link4")
    o = msg.pose.orientation
    assert (o.x, o.y, o.z, o.w) == tuple(float(v) for v in (q[1], q[2], q[3], q[0]))
    assert msg.header.frame_id == "torso_link4" and msg.pose.position.z == 0.25
    position, back = conv.pose_from_msg(msg)
    assert np.allclose(position, [0.4, -0.1, 0.25]) and np.allclose(back, q)


def test_command_values_of_a_pose_output_are_in_command_order():
    from builtin_interfaces.msg import Time

    from faster_ros.control.pose import CommandSpace
    from faster_ros.embodiment import load_embodiment
    from faster_ros.ros import conversions as conv

    space = CommandSpace(load_embodiment("r1lite_ee"))
    group = next(g for g in space.embodiment.outputs if g.kind == "pose_stamped")
    values = np.zeros(space.embodiment.action_dim)
    pose = np.r_[0.5, 0.2, -0.1, rot.to_quat([0, 0.4, 0], "axis_angle")]
    values[list(group.indices)] = pose
    msg = conv.group_command(group, values, np.zeros_like(values), Time())
    assert msg.header.frame_id == group.frame_id
    assert np.allclose(conv.command_values(group, msg), pose)


def test_no_other_module_reorders_quaternions():
    """Only rotations.py builds x, y, z, w from w, x, y, z: no module touches a message's
    orientation fields except conversions.py (writing, through the helper) and rotations.py's
    pose_from_message (reading, for rclpy and rosbags messages alike: conversions and replay)."""
    package = Path(__file__).resolve().parents[1] / "faster_ros"
    readers = []
    for path in package.rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr == "orientation":
                readers.append(path.relative_to(package).as_posix())
    assert sorted(set(readers)) == ["ros/conversions.py", "rotations.py"]
    text = (package / "ros" / "conversions.py").read_text()
    assert "quat_to_ros(" in text and "pose_from_message(" in text
