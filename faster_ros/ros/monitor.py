"""A listening node for the demo, benchmarks and closed-loop tests: it records what the stack
publishes (chunks, every controller command, statuses) and what the robot reports, with receive
times, and never publishes anything."""

from __future__ import annotations

import threading
from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np
from rclpy.node import Node
from sensor_msgs.msg import JointState

from faster_msgs.msg import ActionChunk, ChunkExecution, ModeChange, PolicyStatus
from faster_ros import graph
from faster_ros.embodiment import Embodiment
from faster_ros.ros import conversions as conv
from faster_ros.ros.node_base import now_s
from faster_ros.ros.qos import CHUNK_QOS, COMMAND_QOS, MODE_QOS, SENSOR_QOS, STATUS_QOS


@dataclass
class Recording:
    chunks: list[tuple[float, ActionChunk]] = field(default_factory=list)
    commands: dict[str, list[tuple[float, object]]] = field(default_factory=lambda:
                                                            defaultdict(list))
    joints: list[tuple[float, float, dict[str, float]]] = field(default_factory=list)
    # the mock robot's bag joint states as recorded (differs from ``joints`` once it follows
    # the commands); same layout as ``joints``
    recorded: list[tuple[float, float, dict[str, float]]] = field(default_factory=list)
    simulated: list[tuple[float, np.ndarray]] = field(default_factory=list)
    executions: list[tuple[float, ChunkExecution]] = field(default_factory=list)
    shadow_chunks: list[tuple[float, ActionChunk]] = field(default_factory=list)
    mode_changes: list[tuple[float, ModeChange]] = field(default_factory=list)
    policy_status: PolicyStatus | None = None
    executor_status: PolicyStatus | None = None


class MonitorNode(Node):
    def __init__(self, emb: Embodiment, name: str = "faster_monitor", streams: bool = True,
                 **kwargs):
        """``streams=False``: chunks, verdicts, modes and status only, not the 100 Hz command and
        joint streams (a benchmark's listener should not load the CPU it measures, nor be a
        second subscriber on every controller topic)."""
        super().__init__(name, **kwargs)
        self.emb = emb
        self.rec = Recording()
        self.lock = threading.Lock()
        self.create_subscription(ActionChunk, graph.CHUNK_TOPIC, self._on_chunk, CHUNK_QOS)
        self.create_subscription(ActionChunk, graph.SHADOW_CHUNK_TOPIC, self._on_shadow,
                                 CHUNK_QOS)
        self.create_subscription(ModeChange, graph.MODE_TOPIC, self._on_mode, MODE_QOS)
        self.create_subscription(ChunkExecution, graph.EXECUTION_TOPIC, self._on_execution,
                                 CHUNK_QOS)
        self.create_subscription(PolicyStatus, graph.STATUS_TOPIC, self._on_policy_status,
                                 STATUS_QOS)
        self.create_subscription(PolicyStatus, graph.EXECUTOR_STATUS_TOPIC,
                                 self._on_executor_status, STATUS_QOS)
        if not streams:
            return
        for group in emb.outputs:
            self.create_subscription(conv.MESSAGE_TYPES[group.kind], group.topic,
                                     self._on_command(group.name), COMMAND_QOS)
        for ji in emb.joint_inputs:
            self.create_subscription(JointState, ji.topic, self._on_joints, SENSOR_QOS)
        self.create_subscription(JointState, "/mock_robot/simulated_joint_states",
                                 self._on_simulated, 10)
        self.create_subscription(JointState, "/mock_robot/recorded_joint_states",
                                 self._on_recorded, 10)

    def _on_chunk(self, msg: ActionChunk) -> None:
        with self.lock:
            self.rec.chunks.append((now_s(self), msg))

    def _on_shadow(self, msg: ActionChunk) -> None:
        with self.lock:
            self.rec.shadow_chunks.append((now_s(self), msg))

    def _on_mode(self, msg: ModeChange) -> None:
        with self.lock:
            self.rec.mode_changes.append((now_s(self), msg))

    def _on_execution(self, msg: ChunkExecution) -> None:
        with self.lock:
            self.rec.executions.append((now_s(self), msg))

    def _on_command(self, name: str):
        def callback(msg) -> None:
            with self.lock:
                self.rec.commands[name].append((now_s(self), msg))

        return callback

    def _on_joints(self, msg: JointState) -> None:
        with self.lock:
            self.rec.joints.append((now_s(self), conv.to_sec(msg.header.stamp),
                                    dict(zip(msg.name, msg.position))))

    def _on_recorded(self, msg: JointState) -> None:
        with self.lock:
            self.rec.recorded.append((now_s(self), conv.to_sec(msg.header.stamp),
                                      dict(zip(msg.name, msg.position))))

    def _on_simulated(self, msg: JointState) -> None:
        with self.lock:
            self.rec.simulated.append((conv.to_sec(msg.header.stamp),
                                       np.asarray(msg.position, dtype=np.float64)))

    def _on_policy_status(self, msg: PolicyStatus) -> None:
        self.rec.policy_status = msg

    def _on_executor_status(self, msg: PolicyStatus) -> None:
        self.rec.executor_status = msg
