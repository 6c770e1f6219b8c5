"""Mock robot for tests and the demo: the robot side of an embodiment, without hardware.

It publishes what the robot would (joint states on every joint input topic, frames on every camera
topic) and consumes every command interface kind of the config, integrating the commands with a
first-order lag so that closed loops run. Two sources:
- generated (``source`` empty): joint states are the integrated commands; frames are synthetic;
- a rosbag2 (``source`` = path): recorded frames are replayed (stamps shifted to now, looping).
  Joint states depend on ``joint_source``: ``bag`` replays the recorded ones open loop (the
  integrated commands go to ``~/simulated_joint_states`` for comparison); ``commands`` (the demo)
  replays them only until the first command arrives, as a robot under its teleoperator would move,
  then publishes the integrated commands from where the recording left the joints, so that the
  policy sees the robot it drives (no jump when the bag loops, no drift between what the executor
  commands and what the policy is told the robot is doing).
"""

from __future__ import annotations

import math

import cv2
import numpy as np
from geometry_msgs.msg import PoseStamped
from rclpy.node import Node
from sensor_msgs.msg import CompressedImage, Image, JointState

from faster_ros import rotations as rot
from faster_ros.control.pose import CommandSpace
from faster_ros.control.timing import sample_points
from faster_ros.embodiment import load_embodiment
from faster_ros.ros import conversions as conv
from faster_ros.ros.node_base import declare, now_s, run
from faster_ros.ros.qos import COMMAND_QOS, SENSOR_PUB_QOS


class MockRobotNode(Node):
    def __init__(self, **kwargs):
        super().__init__("mock_robot", **kwargs)
        self._emb = load_embodiment(declare(self, "embodiment", "g1_inspire",
                                            "embodiment name or config YAML path",
                                            read_only=True))
        source = declare(self, "source", "", "rosbag2 to replay (empty: generated signals)",
                         read_only=True)
        rate = declare(self, "joint_rate_hz", 100.0, "joint state publish rate", read_only=True)
        self._tau = declare(self, "tau_s", 0.05, "first-order lag of the simulated joints")
        self._joint_source = declare(self, "joint_source", "bag",
                                     "with a bag: 'bag' replays the recorded joint states, "
                                     "'commands' follows the commands once they arrive",
                                     read_only=True)
        if self._joint_source not in ("bag", "commands"):
            raise ValueError(f"mock_robot: joint_source must be 'bag' or 'commands', got "
                             f"{self._joint_source!r}")
        size = declare(self, "image_size", [120, 160], "generated frame height, width")
        self._image_hw = (int(size[0]), int(size[1]))

        # end effectors are simulated in the executor's command space (x, y, z + quaternion),
        # starting at the workspace centre with the identity rotation
        self._slots = ()
        if self._emb.end_effectors:
            space = CommandSpace(self._emb)
            self._emb, self._slots = space.embodiment, space.slots
        emb = self._emb
        self._x = emb.home  # simulated action-space state: the config's home, else mid-limits
        for slot in self._slots:
            self._x[list(slot.quaternion)] = rot.IDENTITY
        self._pose_pubs = {s.name: self.create_publisher(
            PoseStamped, s.end_effector.feedback_topic, SENSOR_PUB_QOS) for s in self._slots}
        self._target = self._x.copy()
        self._trajectories: dict[str, tuple[float, list, list]] = {}
        self._commands_received = 0
        self._last_step = None

        self._joint_pubs = {j.topic: self.create_publisher(JointState, j.topic, SENSOR_PUB_QOS)
                            for j in emb.joint_inputs}
        self._camera_pubs = {
            c.topic: self.create_publisher(Image if c.msg_type == "Image" else CompressedImage,
                                           c.topic, SENSOR_PUB_QOS)
            for c in emb.cameras
        }
        self._sim_pub = self.create_publisher(JointState, "~/simulated_joint_states", 10)
        # the bag's joint states as recorded, whatever joint_source says (for comparison)
        self._recorded_pub = self.create_publisher(JointState, "~/recorded_joint_states", 10)
        for group in emb.outputs:
            self.create_subscription(conv.MESSAGE_TYPES[group.kind], group.topic,
                                     self._command_cb(group), COMMAND_QOS)
        self._player = None
        if source:
            from faster_ros.ros.bag_player import BagPlayer

            topics = list(self._joint_pubs) + list(self._camera_pubs)
            self._player = BagPlayer(source, topics)
            self._init_from_bag()
            self.get_logger().info(
                f"replaying {source}: {len(self._player.messages)} messages, "
                f"{self._player.duration:.1f} s, looping")
        else:
            for cam in emb.cameras:
                self.create_timer(1.0 / cam.rate_hz, self._camera_timer(cam))
        self.create_timer(1.0 / rate, self._step)

    # ------------------------------------------------------------------------------ commands

    def _command_cb(self, group):
        def callback(msg) -> None:
            if group.kind == "joint_trajectory":
                if not msg.points:
                    return
                order = [list(msg.joint_names).index(j) for j in group.joints]
                start = conv.to_sec(msg.header.stamp) or now_s(self)
                times = [start + conv.to_sec(p.time_from_start) for p in msg.points]
                values = [np.asarray(p.positions)[order] for p in msg.points]
                self._trajectories[group.name] = (group, times, values)
            else:
                values = conv.command_values(group, msg)
                if values is not None:
                    self._target[list(group.indices)] = values
            self._commands_received += 1

        return callback

    def _trajectory_targets(self, now: float) -> None:
        for group, times, values in self._trajectories.values():
            self._target[list(group.indices)] = sample_points(times, values, now)

    # ------------------------------------------------------------------------------ simulation

    def _step(self) -> None:
        now = now_s(self)
        dt = 0.0 if self._last_step is None else max(0.0, now - self._last_step)
        self._last_step = now
        self._trajectory_targets(now)
        alpha = 1.0 - math.exp(-dt / self._tau) if self._tau > 0 else 1.0
        previous = self._x.copy()
        self._x += alpha * (self._target - self._x)
        stamp = self.get_clock().now().to_msg()
        for slot in self._slots:  # the rotation lags on the sphere; the pose is reported back
            q = list(slot.quaternion)
            self._x[q] = rot.slerp(previous[q], rot.normalize(self._target[q]), alpha)
            self._pose_pubs[slot.name].publish(conv.pose_stamped(
                self._x[list(slot.position)], self._x[q], stamp, slot.end_effector.frame))
        sim = conv.joint_state(self._emb.dim_names, self._x, stamp)
        self._sim_pub.publish(sim)
        if self._player is not None:
            following = self._joint_source == "commands" and self._commands_received > 0
            for item in self._player.due(now):
                if item.topic in self._joint_pubs:
                    self._recorded_pub.publish(item.msg)
                    if following:
                        continue
                    if self._joint_source == "commands":
                        self._sync_to(item.msg)
                    self._joint_pubs[item.topic].publish(item.msg)
                else:
                    self._camera_pubs[item.topic].publish(item.msg)
            if not following:
                return
        joint_index = self._emb.position_joint_indices
        for ji in self._emb.joint_inputs:
            values = [self._x[joint_index[j]] if j in joint_index else 0.0 for j in ji.joints]
            self._joint_pubs[ji.topic].publish(conv.joint_state(ji.joints, values, stamp))

    def _sync_to(self, msg: JointState) -> None:
        """Set the simulated state (and target) to a recorded joint state's values."""
        joint_index = self._emb.position_joint_indices
        for name, value in zip(msg.name, msg.position):
            j = joint_index.get(name)
            if j is not None and math.isfinite(value):
                self._x[j] = self._target[j] = value

    def _init_from_bag(self) -> None:
        """Start the simulated state at the bag's first joint states."""
        joint_index = self._emb.position_joint_indices
        seen: set[str] = set()
        for item in self._player.messages:  # in bag order: the first sample of each joint wins
            if isinstance(item.msg, JointState):
                for name, value in zip(item.msg.name, item.msg.position):
                    if name in joint_index and name not in seen:
                        self._x[joint_index[name]] = value
                        seen.add(name)
        self._target = self._x.copy()

    def _camera_timer(self, cam):
        def callback() -> None:
            frame = synthetic_frame(self._image_hw, now_s(self), self._x)
            stamp = self.get_clock().now().to_msg()
            if cam.msg_type == "Image":
                self._camera_pubs[cam.topic].publish(conv.rgb_to_image(frame, stamp, cam.name))
            else:
                msg = CompressedImage(format="jpeg")
                msg.header.stamp = stamp
                msg.header.frame_id = cam.name
                ok, buf = cv2.imencode(".jpg", frame[:, :, ::-1])
                msg.data = buf.tobytes()
                self._camera_pubs[cam.topic].publish(msg)

        return callback


def synthetic_frame(hw: tuple[int, int], t: float, state: np.ndarray) -> np.ndarray:
    """A deterministic moving pattern that depends on time and the robot state. Red varies along
    x, green along y: each is computed once per column / row and broadcast (0.27 ms for 640x360
    instead of 8.7 ms on the full grid, which made the mock robot of a 3-camera benchmark use a
    whole core and starve the stack it measures)."""
    h, w = hw
    phase = float(np.sum(state[:3])) + 0.5 * t
    xs = np.arange(w, dtype=np.float32)
    ys = np.arange(h, dtype=np.float32)
    out = np.empty((h, w, 3), dtype=np.uint8)
    out[:, :, 0] = (127 + 120 * np.sin(xs / 13.0 + phase)).astype(np.uint8)[None, :]
    out[:, :, 1] = (127 + 120 * np.sin(ys / 17.0 - phase)).astype(np.uint8)[:, None]
    out[:, :, 2] = np.uint8(80.0 + 40.0 * math.sin(t))
    return out


def main(args: list[str] | None = None) -> None:
    run(MockRobotNode, args)


if __name__ == "__main__":
    main()
