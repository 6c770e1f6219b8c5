"""Chunk executor node: ActionChunk -> anchored, blended, gated -> per-controller commands.

Each accepted chunk is anchored to its observation time (steps already past are dropped), blended
into what is currently commanded, validated whole by the safety gate, and then published per
controller group as the embodiment routes it:
- ``joint_trajectory``: one trajectory_msgs/JointTrajectory per accepted chunk (time_from_start,
  velocities), all groups of a chunk sharing one header stamp;
- ``joint_state_stream`` / ``gripper_position`` / ``forward_command`` / ``twist_base``: a setpoint
  at every control period.
With no valid chunk in time the watchdog holds the commanded position (zero twist for the base).
A std_msgs/String on graph.REANCHOR_TOPIC (a simulated scene reset) makes the executor forget
its command: nothing is published until the next chunk, which starts from the measured position.
Who drives is decided by the handoff (faster_ros.control.handoff, ROS side in
faster_ros.ros.handoff_io): chunks are executed only in POLICY; in TELEOP the operator's command
passes (rate-limited while catching up after a switch), in HOLD the last command is held.
Nothing non-finite or out of limits is published: every outgoing value passes a last check here.
"""

from __future__ import annotations

import threading
import time

import numpy as np
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.node import Node
from sensor_msgs.msg import JointState
from std_msgs.msg import String

from faster_msgs.msg import ActionChunk, ChunkExecution, PolicyStatus
from faster_ros import graph
from faster_ros.control.handoff import HandoffController
from faster_ros.control.modes import MODE_CHOICES, Mode
from faster_ros.control.pose import make_executor
from faster_ros.embodiment import load_embodiment
from faster_ros.ros import conversions as conv
from faster_ros.ros.handoff_io import HandoffInterface
from faster_ros.ros.node_base import declare, now_s, run
from faster_ros.ros.pose_io import PoseFeedback
from faster_ros.ros.qos import CHUNK_QOS, COMMAND_QOS, SENSOR_QOS, STATUS_QOS
from faster_ros.ros.stage_trace import StageTrace


class ChunkExecutorNode(Node):
    """Executes action chunks on the controllers of one embodiment."""

    def __init__(self, **kwargs):
        super().__init__("faster_executor", **kwargs)
        self._emb = load_embodiment(
            declare(self, "embodiment", "g1_inspire", "embodiment name or config YAML path",
                    read_only=True)
        )
        chunk_topic = declare(self, "chunk_topic", graph.CHUNK_TOPIC,
                              "ActionChunk topic to execute", read_only=True)
        rate = declare(self, "rate_hz", self._emb.control.rate_hz,
                       "command streaming rate (default: the embodiment's control rate)",
                       read_only=True)
        initial_mode = declare(self, "initial_mode", "",
                               f"mode at start, one of {MODE_CHOICES} (empty: the embodiment's "
                               f"handoff.initial_mode)", read_only=True)
        # end-effector embodiments execute in their command space (pose = x, y, z + unit
        # quaternion): self._emb is that space from here on; chunks arrive in the policy's
        self._core = make_executor(self._emb)
        self._policy_dims = self._emb.dim_names
        self._emb = self._core.embodiment
        lead = np.zeros(self._emb.action_dim)  # trajectory points go one lead ahead
        for g in self._emb.outputs:
            if g.kind == "joint_trajectory":
                lead[list(g.indices)] = self._single_point_lead()
        self._handoff = HandoffController(self._emb, now_s(self), executor=self._core,
                                          initial=initial_mode or None, lead=lead)
        self._lock = threading.Lock()
        self._joints: dict[str, float] = {}
        self._initialised = False
        self._new_trajectory = False
        self._was_holding = True
        self._last_reason = "waiting for joint states"
        self._last_rejection = ""  # why the newest chunk was refused ("" once one is accepted)
        self._dropped = 0
        self._trace = StageTrace(self.get_name())  # per-chunk stage times, when enabled

        group = MutuallyExclusiveCallbackGroup()
        self.create_subscription(ActionChunk, chunk_topic, self._on_chunk, CHUNK_QOS,
                                 callback_group=group)
        for ji in self._emb.joint_inputs:
            self.create_subscription(JointState, ji.topic, self._on_joints, SENSOR_QOS,
                                     callback_group=group)
        self.create_subscription(String, graph.REANCHOR_TOPIC, self._on_reanchor, COMMAND_QOS,
                                 callback_group=group)
        self._poses = PoseFeedback(self, self._core, group)  # end-effector feedback, if any
        self._pubs = {
            g.name: self.create_publisher(conv.MESSAGE_TYPES[g.kind], g.topic, COMMAND_QOS)
            for g in self._emb.outputs
        }
        self._status_pub = self.create_publisher(PolicyStatus, graph.EXECUTOR_STATUS_TOPIC,
                                                 STATUS_QOS)
        self._execution_pub = self.create_publisher(ChunkExecution, graph.EXECUTION_TOPIC,
                                                    CHUNK_QOS)
        self.create_timer(1.0 / rate, self._tick, callback_group=group)
        self.create_timer(0.5, self._publish_status, callback_group=group)
        self._io = HandoffInterface(self, self._handoff, group, on_change=self._publish_status)
        self._io.publish_transitions()

    # ------------------------------------------------------------------------------- inputs

    def _on_joints(self, msg: JointState) -> None:
        try:
            names, positions = conv.joint_state_positions(msg)
        except ValueError as exc:
            self.get_logger().warning(f"joint states dropped: {exc}", throttle_duration_sec=2.0)
            return
        for name, value in zip(names, positions):
            if np.isfinite(value):
                self._joints[name] = float(value)
        measured = self._measured()
        if measured is not None:
            self._handoff.set_measured(measured, now_s(self))
            if not self._initialised:
                self._initialised = True
                self._last_reason = ("joint states complete: waiting for the first valid chunk "
                                     "(the robot's own controller holds)")
                self.get_logger().info("joint states complete: holding the measured position")

    def _on_reanchor(self, msg: String) -> None:
        reason = f"re-anchored: {msg.data or 'the robot was moved outside the stack'}"
        self._handoff.reanchor(reason, now_s(self))
        self._joints.clear()  # the next complete joint state is where the robot now is
        self._initialised = False
        self._was_holding = True
        self._last_reason = reason + ": waiting for joint states, then the first chunk"
        self.get_logger().info(reason + ": nothing is commanded until the next chunk, which "
                               "starts from the measured position")

    def _measured(self) -> np.ndarray | None:
        """(D,) measured action-space positions (velocity dims 0), or None while incomplete."""
        out = np.zeros(self._emb.action_dim)
        for i, dim in enumerate(self._emb.dimensions):
            if dim.joint is None:
                continue
            if dim.joint not in self._joints:
                return None
            out[i] = self._joints[dim.joint]
        return out if self._poses.fill(out) else None

    def _on_chunk(self, msg: ActionChunk) -> None:
        arrived = time.time()
        now = now_s(self)
        self._handoff.policy_seen(now)
        self._handoff.update(now)
        self._io.publish_transitions()
        if self._handoff.mode != Mode.POLICY:  # never executed outside POLICY
            why = f"not executed in {self._handoff.mode.value} ({self._handoff.modes.reason})"
            self._report(msg, ChunkExecution.VERDICT_DROPPED, (why,), 0, 0, 0)
            return
        try:
            chunk = conv.msg_to_chunk(msg, self._policy_dims)
        except ValueError as exc:
            self._drop(msg, f"malformed: {exc}")
            return
        if not self._initialised:
            self._drop(msg, "joint states not yet received")
            return
        gate_in = time.time()
        result = self._core.submit(chunk, now)
        gate_out = time.time()
        if not result.accepted:
            self._last_rejection = f"chunk {chunk.sequence} rejected: {result.summary}"
            self.get_logger().error(self._last_rejection, throttle_duration_sec=1.0)
            self._report(msg, result.action, result.reasons, 0, 0, result.interventions)
            return
        if result.action != "ok":
            self.get_logger().warning(f"chunk {chunk.sequence}: {result.summary}",
                                      throttle_duration_sec=1.0)
        self._last_rejection = ""
        self._new_trajectory = True
        self._publish_commands(now)  # the new chunk's commands go out now, not at the next tick
        commands_out = time.time()
        kept = result.chunk.horizon
        self._report(msg, result.action, result.reasons, result.chunk.first_step, kept,
                     result.interventions, published_at=commands_out)
        self._trace.write(msg.sequence, {"executor_in": arrived, "gate_in": gate_in,
                                         "gate_out": gate_out, "commands_out": commands_out})

    def _drop(self, msg: ActionChunk, why: str) -> None:
        self._dropped += 1
        self._last_rejection = f"chunk {msg.sequence} dropped: {why}"
        self.get_logger().warning(self._last_rejection, throttle_duration_sec=2.0)
        self._report(msg, ChunkExecution.VERDICT_DROPPED, (why,), 0, 0, 0)

    def _report(self, msg: ActionChunk, verdict: str, reasons, dropped: int, kept: int,
                interventions: int, published_at: float | None = None) -> None:
        """One ChunkExecution per chunk received: nothing is lost without a logged reason.
        ``published_at``: wall time an accepted chunk's commands were out, the end point of its
        overhead figure (observation received -> commands published, minus model time)."""
        out = ChunkExecution()
        out.header.stamp = self.get_clock().now().to_msg()
        out.sequence = msg.sequence
        out.observation_stamp = msg.header.stamp
        out.verdict = verdict
        out.reasons = [str(r) for r in reasons]
        out.steps_dropped, out.steps_kept, out.interventions = dropped, kept, interventions
        out.model_ms = float(msg.t_total_ms)
        received = conv.to_sec(msg.observation_received)
        if published_at is not None and received > 0:
            out.overhead_ms = float((published_at - received) * 1e3 - msg.t_total_ms)
        else:
            out.overhead_ms = -1.0
        self._execution_pub.publish(out)

    # ------------------------------------------------------------------------------- outputs

    def _tick(self) -> None:
        self._publish_commands(now_s(self))

    def _publish_commands(self, now: float) -> None:
        cmd = self._handoff.command(now)
        self._io.publish_transitions()
        if cmd is None:
            return  # nothing commanded yet: the robot's own controller holds; do not fight it
        policy = self._handoff.mode == Mode.POLICY
        if not self._publishable(cmd.positions, cmd.velocities):
            if not policy:  # cannot happen (teleop values are checked on arrival); never send
                self.get_logger().error("refused a non-finite or out-of-limit command")
                return
            self._core.hold("executor: refused a non-finite or out-of-limit command", now)
            cmd = self._handoff.command(now)
            if cmd is None or not self._publishable(cmd.positions, cmd.velocities):
                return
        stamp = conv.to_time(now)  # the time the setpoint was computed for
        for group in self._emb.outputs:
            if group.kind != "joint_trajectory":
                self._pubs[group.name].publish(
                    conv.group_command(group, cmd.positions, cmd.velocities, stamp))
        send_hold = cmd.holding and not self._was_holding
        if self._new_trajectory or send_hold or not policy:  # teleop / hold: streamed points
            self._publish_trajectories(now, cmd, single=not policy)
            self._new_trajectory = False
        if cmd.holding and not self._was_holding:
            self.get_logger().warning(f"holding: {cmd.reason}")
        self._was_holding = cmd.holding
        if cmd.holding:
            self._last_reason = cmd.reason

    def _publish_trajectories(self, now: float, cmd, single: bool = False) -> None:
        """One trajectory per joint_trajectory group, all with the same start time; ``single``:
        just the command, one control period ahead (teleop and hold are streamed like this)."""
        groups = [g for g in self._emb.outputs if g.kind == "joint_trajectory"]
        if not groups:
            return
        traj = None if (cmd.holding or single) else self._core.trajectory(now)
        if traj is None or len(traj.times) == 0:
            lead = now + self._single_point_lead()
            times = np.array([lead])
            positions, velocities = cmd.positions[None, :], cmd.velocities[None, :]
        else:
            times, positions, velocities = traj.times, traj.positions, traj.velocities
        if not self._publishable(positions, velocities) or np.any(np.diff(times) <= 0):
            self.get_logger().error("refused to publish an invalid trajectory")
            return
        for group in groups:
            self._pubs[group.name].publish(
                conv.joint_trajectory(group, now, times, positions, velocities))

    def _single_point_lead(self) -> float:
        return max(self._emb.control.min_lead_s, 1e-3)

    def _publishable(self, positions: np.ndarray, velocities: np.ndarray) -> bool:
        """The last line of defence: finite and inside the limits, or nothing goes out."""
        if not (np.isfinite(positions).all() and np.isfinite(velocities).all()):
            return False
        tol = 1e-9
        return bool(np.all(positions >= self._emb.lower - tol)
                    and np.all(positions <= self._emb.upper + tol)
                    and self._poses.unit_quaternions(positions))

    def _publish_status(self) -> None:
        st = self._core.status
        msg = PolicyStatus()
        msg.header.stamp = self.get_clock().now().to_msg()
        mode = self._handoff.mode
        if mode == Mode.POLICY:  # HOLD while the watchdog holds (the fallback of MODE_HOLD)
            msg.mode = PolicyStatus.MODE_HOLD if self._was_holding else PolicyStatus.MODE_POLICY
            msg.reason = self._last_reason if self._was_holding else "executing"
        else:
            msg.mode = mode.value
            msg.reason = f"{mode.value}: {self._handoff.modes.reason}"
        if self._last_rejection:  # the watchdog says that no chunk came; this says why
            msg.reason += f"; last chunk refused: {self._last_rejection}"
        msg.chunks_produced = int(st.accepted)
        msg.chunks_rejected = int(st.rejected + self._dropped)
        msg.safety_interventions = int(st.interventions)
        msg.observation_ready = self._initialised
        self._status_pub.publish(msg)


def main(args: list[str] | None = None) -> None:
    run(ChunkExecutorNode, args)


if __name__ == "__main__":
    main()
