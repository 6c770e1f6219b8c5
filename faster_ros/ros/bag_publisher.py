"""Play a rosbag2 into the live graph on sim time (``faster-ros replay BAG --publish``), since
``ros2 bag play --clock`` is not installable here.

The bag is first checked like an offline replay (:func:`faster_ros.replay.bag.load_inputs`: a bad
bag stops before anything is published). Then ``/clock`` runs from the bag's first message at
``rate`` times wall speed, and every message of the embodiment's input topics (cameras, joint
inputs; or ``topics``) is published, unchanged and serialised, once ``/clock`` has reached its
bag time: header stamps stay the recorded ones, so a stack started with ``use_sim_time`` sees the
recording exactly as it was stamped. ``/clock`` is published before each message and at least
every ``clock_period_s`` of sim time. With ``loop``, later passes are shifted by the bag's
length (clock and header stamps) so that time keeps increasing.

Recorded outputs (action chunks, controller commands) are not played by default: feeding them
back to a running stack would command its controllers.
"""

from __future__ import annotations

import time
from pathlib import Path

from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from rosgraph_msgs.msg import Clock

from faster_ros.embodiment import Embodiment
from faster_ros.ros.bag_player import _restamp, ros_type
from faster_ros.ros.qos import SENSOR_PUB_QOS

CLOCK_QOS = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)


def read_raw(path: Path, topics: list[str], start_s: float = 0.0,
             duration_s: float | None = None) -> tuple[list[tuple[int, str, bytes]], dict]:
    """(t_bag_ns, topic, CDR bytes) of ``topics`` in bag order, and topic -> type."""
    from faster_ros.data.bag_io import BagError, check_topics, open_reader

    reader = open_reader(path)
    try:
        conns = check_topics(path, reader, topics)
        types = {c.topic: c.msgtype for c in conns}
        out: list[tuple[int, str, bytes]] = []
        first = None
        try:
            for conn, t_ns, raw in reader.messages(connections=conns):
                first = t_ns if first is None else first
                if t_ns < first + start_s * 1e9:
                    continue
                if duration_s is not None and t_ns > first + (start_s + duration_s) * 1e9:
                    break
                out.append((int(t_ns), conn.topic, bytes(raw)))
        except Exception as exc:
            raise BagError(f"{path}: corrupt or truncated bag while reading "
                           f"({type(exc).__name__}: {exc})") from exc
    finally:
        reader.close()
    return out, types


class BagPublisherNode(Node):
    """Publishes ``messages`` and /clock; :meth:`play` runs the whole playback."""

    def __init__(self, messages: list[tuple[int, str, bytes]], types: dict[str, str], *,
                 rate: float = 1.0, loop: bool = False, clock_period_s: float = 0.01,
                 **kwargs):
        super().__init__("faster_bag_publisher", **kwargs)
        if not rate > 0:
            raise ValueError(f"rate must be > 0, got {rate}")
        if not messages:
            raise ValueError("nothing to play: no messages on the selected topics")
        self.messages, self.rate, self.loop = messages, rate, loop
        self.clock_period_ns = int(clock_period_s * 1e9)
        self.classes = {}
        for t, m in types.items():
            try:
                self.classes[t] = ros_type(m)
            except (ImportError, AttributeError) as exc:
                raise ValueError(f"cannot publish {t}: message type {m} is not installed for "
                                 f"rclpy here ({exc})") from exc
        self.pubs = {t: self.create_publisher(cls, t, SENSOR_PUB_QOS)
                     for t, cls in self.classes.items()}
        self.clock_pub = self.create_publisher(Clock, "/clock", CLOCK_QOS)
        self.published = 0

    def publish_clock(self, t_ns: int) -> None:
        msg = Clock()
        msg.clock.sec, msg.clock.nanosec = divmod(int(t_ns), 1_000_000_000)
        self.clock_pub.publish(msg)

    def wait_for_subscribers(self, timeout_s: float) -> bool:
        """Hold /clock at the first message until every topic (and /clock) has a subscriber."""
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            self.publish_clock(self.messages[0][0])
            if all(p.get_subscription_count() > 0 for p in self.pubs.values()) and \
                    self.clock_pub.get_subscription_count() > 0:
                return True
            time.sleep(0.05)
        return False

    def play(self, should_stop=lambda: False) -> int:
        """Play (once, or until ``should_stop()`` with ``loop``); returns messages published."""
        t_first, t_last = self.messages[0][0], self.messages[-1][0]
        period = t_last - t_first + int(1e9 / 30)
        wall0, passes = time.monotonic(), 0
        while True:
            offset = passes * period
            for t_ns, topic, raw in self.messages:
                due = t_ns + offset
                while True:  # advance /clock in small steps until the message is due
                    sim = t_first + int((time.monotonic() - wall0) * self.rate * 1e9)
                    if sim >= due or should_stop():
                        break
                    self.publish_clock(min(sim, due))
                    time.sleep(min(self.clock_period_ns, due - sim) / 1e9 / self.rate)
                if should_stop():
                    return self.published
                self.publish_clock(due)
                self.pubs[topic].publish(raw if offset == 0 else self._shifted(topic, raw,
                                                                               offset))
                self.published += 1
            passes += 1
            if not self.loop:
                return self.published

    def _shifted(self, topic: str, raw: bytes, offset_ns: int):
        from rclpy.serialization import deserialize_message

        return _restamp(deserialize_message(raw, self.classes[topic]), offset_ns * 1e-9)


def input_topics(emb: Embodiment) -> list[str]:
    return [c.topic for c in emb.cameras] + [j.topic for j in emb.joint_inputs]


def play(bag: str | Path, emb: Embodiment, *, rate: float = 1.0, loop: bool = False,
         topics: list[str] | None = None, wait_subscribers_s: float = 0.0, start_s: float = 0.0,
         duration_s: float | None = None) -> int:
    """Check ``bag`` for ``emb``, then play it on /clock (see the module docstring). Returns the
    process exit status (0)."""
    import rclpy
    from rclpy.executors import ExternalShutdownException

    from faster_ros.data.bag_io import BagError
    from faster_ros.replay.bag import load_inputs

    path = Path(bag)
    load_inputs(path, emb, start_s=start_s, duration_s=duration_s)  # raises BagError
    messages, types = read_raw(path, topics or input_topics(emb), start_s, duration_s)
    if not rate > 0:
        raise BagError(f"{path}: --rate must be > 0, got {rate}")
    rclpy.init()
    node = None
    try:
        try:
            node = BagPublisherNode(messages, types, rate=rate, loop=loop)
        except ValueError as exc:
            raise BagError(f"{path}: {exc}") from exc
        if wait_subscribers_s > 0 and not node.wait_for_subscribers(wait_subscribers_s):
            node.get_logger().warning("not every topic has a subscriber; playing anyway")
        span = (messages[-1][0] - messages[0][0]) * 1e-9
        node.get_logger().info(f"playing {path.name}: {len(messages)} messages, {span:.1f} s "
                               f"at rate {rate:g} on /clock")
        node.play(should_stop=lambda: not rclpy.ok())
        node.get_logger().info(f"done: {node.published} messages published")
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
    return 0


def run_publish(args) -> int:
    """`faster-ros replay BAG --publish` (arguments: faster_ros.replay.command)."""
    from faster_ros.data.bag_io import BagError
    from faster_ros.embodiment import load_embodiment
    from faster_ros.replay.command import EXIT_BAD_BAG, error

    emb = load_embodiment(args.embodiment)
    try:
        return play(args.bag, emb, rate=args.rate, loop=args.loop, topics=args.topics,
                    wait_subscribers_s=args.wait_subscribers, start_s=args.start,
                    duration_s=args.duration)
    except BagError as exc:
        return error(str(exc), EXIT_BAD_BAG)
