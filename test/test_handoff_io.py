"""Pure conversions of the handoff's ROS side: teleop messages -> action-space values,
transitions -> faster_msgs/ModeChange (messages only, no DDS)."""

import numpy as np
import pytest

from faster_ros.control.modes import Mode, Transition
from faster_ros.embodiment import load_embodiment

pytestmark = pytest.mark.ros

EMB = load_embodiment("r1lite_wbc")
ARM, BASE = EMB.handoff.teleop_inputs


def test_joint_state_and_trajectory_map_by_joint_name():
    from sensor_msgs.msg import JointState
    from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

    from faster_ros.ros.handoff_io import teleop_values

    msg = JointState(name=["torso_joint1", "unknown", "right_gripper"],
                     position=[0.2, 5.0, 30.0])
    values, problems = teleop_values(ARM, msg)
    assert values == {EMB.index("torso_joint1"): 0.2, EMB.index("right_gripper"): 30.0}
    assert problems == []
    bad = JointState(name=["torso_joint1", "torso_joint2"], position=[0.1])
    assert teleop_values(ARM, bad) == ({}, [f"{ARM.topic}: 2 joint names but 1 positions"])
    traj = JointTrajectory(joint_names=["left_arm_joint2"], points=[
        JointTrajectoryPoint(positions=[0.4]), JointTrajectoryPoint(positions=[0.9])])
    assert teleop_values(ARM, traj)[0] == {EMB.index("left_arm_joint2"): 0.4}  # first point
    empty = teleop_values(ARM, JointTrajectory(joint_names=["left_arm_joint2"]))
    assert empty[0] == {} and "without points" in empty[1][0]


def test_twist_maps_through_the_twist_base_fields():
    from geometry_msgs.msg import Twist

    from faster_ros.ros.handoff_io import teleop_values

    msg = Twist()
    msg.linear.x, msg.linear.y, msg.angular.z, msg.linear.z = 0.3, -0.1, 0.5, 9.0
    values, _ = teleop_values(BASE, msg)
    got = np.array([values[EMB.index(n)] for n in ("chassis_vx", "chassis_vy", "chassis_wz")])
    np.testing.assert_allclose(got, [0.3, -0.1, 0.5])
    assert len(values) == 3  # linear.z drives nothing


def test_mode_change_message():
    from faster_ros.ros.handoff_io import mode_change_msg

    msg = mode_change_msg(Transition(12.5, Mode.POLICY, Mode.TELEOP, "operator moved", "operator"))
    assert (msg.from_mode, msg.to_mode, msg.reason, msg.requested_by) == (
        "POLICY", "TELEOP", "operator moved", "operator")
    assert (msg.header.stamp.sec, msg.header.stamp.nanosec) == (12, 500_000_000)
    assert mode_change_msg(Transition(0.0, None, Mode.HOLD, "initial mode", "startup")).from_mode \
        == ""
