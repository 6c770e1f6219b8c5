"""The ROS side of the teleop <-> policy handoff, for the executor node (the one place commands
reach controllers): teleop input adapters, the deadman, the SetMode service, ModeChange.

- teleop adapters: every ``handoff.teleop_inputs`` stream of the embodiment (a leader arm's
  sensor_msgs/JointState or trajectory_msgs/JointTrajectory, matched by joint name; a base's
  geometry_msgs/Twist, mapped through the twist_base fields) feeds the HandoffController;
- the deadman / pedal (std_msgs/Bool on ``handoff.deadman_topic``);
- shadow chunks (graph.SHADOW_CHUNK_TOPIC): never executed, they tell that the policy is alive,
  and how far its plan is from the operator's command is published (diagnostic_msgs on
  graph.DIAGNOSTICS_TOPIC, "faster_executor: shadow vs operator", per output group, 1 Hz);
- the faster_msgs/SetMode service on graph.SET_MODE_SERVICE;
- every transition is logged with its reason and published as faster_msgs/ModeChange on
  graph.MODE_TOPIC (latched, deep history: recorders see every one).

The conversions at the top are pure functions (tested without DDS).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import Twist
from rclpy.node import Node
from sensor_msgs.msg import JointState
from std_msgs.msg import Bool
from trajectory_msgs.msg import JointTrajectory

from faster_msgs.msg import ActionChunk, ModeChange
from faster_msgs.srv import SetMode
from faster_ros import graph
from faster_ros.control.handoff import HandoffController
from faster_ros.control.modes import Mode, Transition
from faster_ros.control.teleop import map_joint_values, map_twist, shadow_divergence
from faster_ros.embodiment import TeleopInput
from faster_ros.ros import conversions as conv
from faster_ros.ros.node_base import now_s
from faster_ros.ros.qos import CHUNK_QOS, MODE_QOS, SENSOR_QOS

TELEOP_MESSAGE_TYPES = {"JointState": JointState, "JointTrajectory": JointTrajectory,
                        "Twist": Twist}

# ------------------------------------------------------------------------------ conversions


def teleop_values(inp: TeleopInput, msg) -> tuple[dict[int, float], list[str]]:
    """A teleop message -> ({action index: value}, problems) for the dimensions of ``inp``."""
    if isinstance(msg, Twist):
        fields = {f"{part}.{axis}": float(getattr(getattr(msg, part), axis))
                  for part in ("linear", "angular") for axis in ("x", "y", "z")}
        return map_twist(inp, fields)
    if isinstance(msg, JointTrajectory):
        if not msg.points:
            return {}, [f"{inp.topic}: JointTrajectory without points"]
        return map_joint_values(inp, msg.joint_names, msg.points[0].positions)
    return map_joint_values(inp, msg.name, msg.position)


def mode_change_msg(t: Transition) -> ModeChange:
    msg = ModeChange()
    msg.header.stamp = conv.to_time(max(t.stamp, 0.0))
    msg.from_mode = t.from_mode.value if t.from_mode is not None else ""
    msg.to_mode = t.to_mode.value
    msg.reason = t.reason
    msg.requested_by = t.requested_by
    return msg


# ------------------------------------------------------------------------------ node side


class HandoffInterface:
    """Creates the handoff's subscriptions, service and publisher on ``node`` (all callbacks in
    ``group``, the executor's one mutually exclusive group, so they never race the ticks)."""

    def __init__(self, node: Node, handoff: HandoffController, group,
                 on_change: Callable[[], None] | None = None):
        self.node = node
        self.handoff = handoff
        self._on_change = on_change
        spec = handoff.spec
        for inp in spec.teleop_inputs:
            node.create_subscription(TELEOP_MESSAGE_TYPES[inp.msg_type], inp.topic,
                                     self._teleop_cb(inp), SENSOR_QOS, callback_group=group)
        if spec.deadman_topic:
            node.create_subscription(Bool, spec.deadman_topic, self._on_deadman, SENSOR_QOS,
                                     callback_group=group)
        node.create_subscription(ActionChunk, graph.SHADOW_CHUNK_TOPIC, self._on_shadow,
                                 CHUNK_QOS, callback_group=group)
        node.create_service(SetMode, graph.SET_MODE_SERVICE, self._on_set_mode,
                            callback_group=group)
        self._mode_pub = node.create_publisher(ModeChange, graph.MODE_TOPIC, MODE_QOS)
        self._diag_pub = node.create_publisher(DiagnosticArray, graph.DIAGNOSTICS_TOPIC, 10)
        self._last_diag = -np.inf
        self.transitions = 0
        self.divergence: np.ndarray | None = None  # (D,) of the newest shadow chunk

    def publish_transitions(self) -> None:
        """Log and publish the transitions since the last call."""
        changed = False
        for t in self.handoff.drain():
            changed = True
            self.transitions += 1
            came = t.from_mode.value if t.from_mode is not None else "start"
            self.node.get_logger().info(
                f"mode {came} -> {t.to_mode.value} ({t.requested_by}): {t.reason}")
            self._mode_pub.publish(mode_change_msg(t))
        if changed and self._on_change is not None:
            self._on_change()

    def _teleop_cb(self, inp: TeleopInput):
        def callback(msg) -> None:
            values, problems = teleop_values(inp, msg)
            problems += self.handoff.teleop_input(values, now_s(self.node))
            if problems:
                self.node.get_logger().warning("teleop: " + "; ".join(problems[:3]),
                                               throttle_duration_sec=2.0)
            self.publish_transitions()

        return callback

    def _on_deadman(self, msg: Bool) -> None:
        message = self.handoff.deadman(bool(msg.data), now_s(self.node))
        if message and "refused" in message:
            self.node.get_logger().warning(message, throttle_duration_sec=1.0)
        self.publish_transitions()

    def _on_shadow(self, msg: ActionChunk) -> None:
        now = now_s(self.node)
        self.handoff.policy_seen(now)
        self.publish_transitions()
        command = self.handoff.last_command
        if command is None or self.handoff.mode == Mode.POLICY:
            return
        try:
            chunk = conv.msg_to_chunk(msg, self.handoff.emb.dim_names)
        except ValueError as exc:
            self.node.get_logger().warning(f"shadow chunk not compared: {exc}",
                                           throttle_duration_sec=5.0)
            return
        self.divergence = shadow_divergence(chunk, command, now)
        if now - self._last_diag >= 1.0:
            self._last_diag = now
            self._diag_pub.publish(self._divergence_msg())

    def _divergence_msg(self) -> DiagnosticArray:
        emb = self.handoff.emb
        status = DiagnosticStatus(name="faster_executor: shadow vs operator",
                                  hardware_id=emb.name, level=DiagnosticStatus.OK)
        for group in emb.outputs:
            d = self.divergence[list(group.indices)]
            j = int(np.argmax(d))
            unit = emb.dimensions[group.indices[j]].unit
            status.values.append(KeyValue(key=group.name, value=f"{d[j]:.4g} {unit}"))
        status.message = (f"mode {self.handoff.mode.value}: the policy's shadow plan vs the "
                          f"command, largest per group")
        out = DiagnosticArray()
        out.header.stamp = self.node.get_clock().now().to_msg()
        out.status = [status]
        return out

    def _on_set_mode(self, request, response):
        accepted, message = self.handoff.request(request.mode, request.reason,
                                                 now_s(self.node), "set_mode service")
        if not accepted:
            self.node.get_logger().warning(f"SetMode {request.mode!r} refused: {message}")
        self.publish_transitions()
        response.accepted = accepted
        response.message = message
        response.current_mode = self.handoff.mode.value
        return response
