"""End-effector pose feedback for the executor node: subscribes each end effector's
geometry_msgs/PoseStamped feedback topic and fills the pose slots (x, y, z, qw, qx, qy, qz) of the
command-space measured vector; the last publishability check of those slots (unit quaternions).
Outgoing PoseStamped targets are built by faster_ros.ros.conversions.group_command.

Embodiments without end effectors get an instance that subscribes nothing and fills nothing.
"""

from __future__ import annotations

import numpy as np
from geometry_msgs.msg import PoseStamped

from faster_ros.ros import conversions as conv
from faster_ros.ros.qos import SENSOR_QOS

UNIT_TOLERANCE = 1e-6


class PoseFeedback:
    """Latest reported pose of every end effector of ``executor`` (a PoseChunkExecutor; any other
    executor has none)."""

    def __init__(self, node, executor, callback_group=None):
        space = getattr(executor, "space", None)
        self.slots = space.slots if space is not None else ()
        self._poses: dict[str, np.ndarray] = {}
        self._node = node
        for slot in self.slots:
            node.create_subscription(PoseStamped, slot.end_effector.feedback_topic,
                                     self._callback(slot), SENSOR_QOS,
                                     callback_group=callback_group)

    def _callback(self, slot):
        def callback(msg: PoseStamped) -> None:
            position, quat = conv.pose_from_msg(msg)
            norm = float(np.linalg.norm(quat))
            if not (np.isfinite(position).all() and np.isfinite(quat).all() and norm > 0.5):
                self._node.get_logger().warning(
                    f"{slot.name}: pose feedback dropped (position {position.tolist()}, "
                    f"quaternion {quat.tolist()})", throttle_duration_sec=2.0)
                return
            self._poses[slot.name] = np.concatenate([position, quat / norm])

        return callback

    def fill(self, out: np.ndarray) -> bool:
        """Write every end effector's latest pose into ``out`` (D_command,); False while one has
        not reported yet."""
        for slot in self.slots:
            pose = self._poses.get(slot.name)
            if pose is None:
                return False
            out[list(slot.indices)] = pose
        return True

    def unit_quaternions(self, positions: np.ndarray) -> bool:
        """True when every quaternion of ``positions`` (D,) or (K, D) has unit norm."""
        p = np.asarray(positions, dtype=np.float64)
        for slot in self.slots:
            norm = np.linalg.norm(p[..., list(slot.quaternion)], axis=-1)
            if not np.all(np.abs(norm - 1.0) <= UNIT_TOLERANCE):
                return False
        return True
