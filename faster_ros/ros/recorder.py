"""Record the stack to a rosbag2 (``faster-ros record``): what ``ros2 bag record`` would do for the
topics of one embodiment, here where ``ros2 bag`` is not installable.

Recorded: the robot inputs (cameras, joint inputs), the stack's outputs (action chunks, shadow
chunks, chunk executions, every controller command topic), statuses, mode changes
(faster_msgs/ModeChange on /faster/mode), the operator's inputs (teleop streams, deadman) and
instructions, plus any ``extra_topics``. Messages are
taken serialised (``raw=True``) and written unchanged with their receive time on this node's
clock (sim time under ``use_sim_time``); the writer is :mod:`faster_ros.replay.bagwriter`.
"""

from __future__ import annotations

import importlib
import time
from pathlib import Path

from rclpy.node import Node
from rclpy.qos import QoSProfile

from faster_ros import graph
from faster_ros.embodiment import Embodiment, load_embodiment
from faster_ros.replay.bagwriter import BagWriter
from faster_ros.ros import conversions as conv
from faster_ros.ros.qos import CHUNK_QOS, COMMAND_QOS, MODE_QOS, SENSOR_QOS, STATUS_QOS

SENSOR_RECORD_QOS = QoSProfile(depth=100, reliability=SENSOR_QOS.reliability,
                               history=SENSOR_QOS.history)


def type_name(cls) -> str:
    """rclpy message class -> 'pkg/msg/Name'."""
    return f"{cls.__module__.split('.')[0]}/msg/{cls.__name__}"


def type_class(name: str):
    package, _, msg = name.split("/")
    return getattr(importlib.import_module(f"{package}.msg"), msg)


def stack_topics(emb: Embodiment, inputs: bool = True) -> dict[str, tuple[str, QoSProfile]]:
    """Topic -> (message type, QoS) of everything the recorder takes for ``emb``."""
    from sensor_msgs.msg import CompressedImage, Image, JointState
    from std_msgs.msg import String

    from faster_msgs.msg import ActionChunk, ChunkExecution, ModeChange, PolicyStatus

    topics: dict[str, tuple[str, QoSProfile]] = {}
    if inputs:
        for cam in emb.cameras:
            cls = Image if cam.msg_type == "Image" else CompressedImage
            topics[cam.topic] = (type_name(cls), SENSOR_RECORD_QOS)
        for ji in emb.joint_inputs:
            topics[ji.topic] = (type_name(JointState), SENSOR_RECORD_QOS)
    for group in emb.outputs:
        topics[group.topic] = (type_name(conv.MESSAGE_TYPES[group.kind]), COMMAND_QOS)
    topics[graph.CHUNK_TOPIC] = (type_name(ActionChunk), CHUNK_QOS)
    topics[graph.SHADOW_CHUNK_TOPIC] = (type_name(ActionChunk), CHUNK_QOS)
    topics[graph.EXECUTION_TOPIC] = (type_name(ChunkExecution), CHUNK_QOS)
    topics[graph.STATUS_TOPIC] = (type_name(PolicyStatus), STATUS_QOS)
    topics[graph.EXECUTOR_STATUS_TOPIC] = (type_name(PolicyStatus), STATUS_QOS)
    topics[graph.MODE_TOPIC] = (type_name(ModeChange), MODE_QOS)  # every transition
    from faster_ros.ros.handoff_io import TELEOP_MESSAGE_TYPES

    for t in emb.handoff.teleop_inputs:
        topics[t.topic] = (type_name(TELEOP_MESSAGE_TYPES[t.msg_type]), SENSOR_RECORD_QOS)
    if emb.handoff.deadman_topic:
        from std_msgs.msg import Bool

        topics[emb.handoff.deadman_topic] = (type_name(Bool), SENSOR_RECORD_QOS)
    topics[graph.INSTRUCTION_TOPIC] = (type_name(String), COMMAND_QOS)
    return topics


class RecorderNode(Node):
    """Subscribes to ``topics`` (name -> (type, QoS)) and writes every message to ``writer``."""

    def __init__(self, writer: BagWriter, topics: dict[str, tuple[str, QoSProfile]],
                 name: str = "faster_recorder", **kwargs):
        super().__init__(name, **kwargs)
        self.writer = writer
        for topic, (msgtype, qos) in topics.items():
            writer.add(topic, msgtype)
            self.create_subscription(type_class(msgtype), topic, self._callback(topic), qos,
                                     raw=True)

    def _callback(self, topic: str):
        def callback(data: bytes) -> None:
            self.writer.write(topic, self.get_clock().now().nanoseconds, data)

        return callback


def record(out: str | Path, emb: Embodiment, *, storage: str = "mcap",
           duration_s: float | None = None, extra_topics: dict[str, str] | None = None,
           inputs: bool = True, use_sim_time: bool = False) -> dict[str, int]:
    """Record until ``duration_s`` (or Ctrl-C); returns messages written per topic."""
    import rclpy
    from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
    from rclpy.parameter import Parameter

    topics = stack_topics(emb, inputs)
    for topic, msgtype in (extra_topics or {}).items():
        topics[topic] = (msgtype, COMMAND_QOS)
    context = rclpy.Context()
    rclpy.init(context=context)
    writer = BagWriter(out, storage)
    node = None
    executor = SingleThreadedExecutor(context=context)
    try:
        node = RecorderNode(writer, topics, context=context, parameter_overrides=[
            Parameter("use_sim_time", value=use_sim_time)])
        executor.add_node(node)
        end = None if duration_s is None else time.monotonic() + duration_s
        while context.ok() and (end is None or time.monotonic() < end):
            executor.spin_once(timeout_sec=0.05)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        executor.shutdown()
        if node is not None:
            node.destroy_node()
        writer.close()
        context.try_shutdown()
    return dict(writer.counts)


def run_record(args) -> int:
    """`faster-ros record` (arguments: faster_ros.cli)."""
    from faster_ros.replay.command import error

    emb = load_embodiment(args.embodiment)
    extra = {}
    for item in args.topic:
        topic, sep, msgtype = item.partition(":")
        if not sep or msgtype.count("/") != 2:
            return error(f"--topic {item!r}: expected TOPIC:pkg/msg/Type", 1)
        extra[topic] = msgtype
    if Path(args.out).exists():
        return error(f"{args.out} exists: record writes a new bag", 1)
    counts = record(args.out, emb, storage=args.storage, duration_s=args.duration,
                    extra_topics=extra, inputs=not args.no_inputs,
                    use_sim_time=args.sim_time)
    print(f"wrote {args.out}: " + ", ".join(f"{t} {n}" for t, n in sorted(counts.items())))
    return 0
