"""Play rosbag2 recordings into a live graph (``ros2 bag play`` is not installable here).

Messages are read once with ``rosbags`` and kept as rclpy messages; :meth:`BagPlayer.due` returns
the messages whose bag time has come on a given clock, with header stamps shifted by the same
offset, so that time alignment between topics is preserved exactly.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path

from rclpy.serialization import deserialize_message
from rosbags.highlevel import AnyReader


def ros_type(msgtype: str):
    """'sensor_msgs/msg/Image' -> the rclpy message class."""
    package, _, name = msgtype.split("/")
    return getattr(importlib.import_module(f"{package}.msg"), name)


@dataclass
class BagMessage:
    topic: str
    t_bag: float  # s, bag receive time
    msg: object  # rclpy message


class BagPlayer:
    """Holds the messages of ``topics`` from one bag; plays them against any clock."""

    def __init__(self, path: str | Path, topics: list[str] | None = None, loop: bool = True):
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"bag not found: {path}")
        self.messages: list[BagMessage] = []
        self.types: dict[str, str] = {}
        try:
            with AnyReader([path]) as reader:
                available = {c.topic: c.msgtype for c in reader.connections}
                wanted = topics if topics is not None else list(available)
                missing = [t for t in wanted if t not in available]
                if missing:
                    raise ValueError(
                        f"bag {path} lacks topic(s) {', '.join(missing)}; it has: "
                        f"{', '.join(sorted(available))}"
                    )
                conns = [c for c in reader.connections if c.topic in wanted]
                self.types = {c.topic: c.msgtype for c in conns}
                classes = {t: ros_type(m) for t, m in self.types.items()}
                for conn, t_ns, raw in reader.messages(connections=conns):
                    msg = deserialize_message(bytes(raw), classes[conn.topic])
                    self.messages.append(BagMessage(conn.topic, t_ns * 1e-9, msg))
        except (ValueError, FileNotFoundError):
            raise
        except Exception as exc:  # rosbags raises its own errors for corrupt files
            raise ValueError(f"cannot read bag {path}: {type(exc).__name__}: {exc}") from exc
        if not self.messages:
            raise ValueError(f"bag {path} holds no messages on {wanted}")
        self.messages.sort(key=lambda m: m.t_bag)
        self.loop = loop
        self.t_first = self.messages[0].t_bag
        self.duration = self.messages[-1].t_bag - self.t_first
        self._start: float | None = None
        self._index = 0
        self._loops = 0

    def start(self, now: float) -> None:
        self._start, self._index, self._loops = now, 0, 0

    @property
    def finished(self) -> bool:
        return not self.loop and self._index >= len(self.messages)

    def due(self, now: float) -> list[BagMessage]:
        """Messages whose (looped) bag time is <= now, with stamps shifted onto ``now``'s clock."""
        if self._start is None:
            self.start(now)
        period = self.duration + 1.0 / 30.0
        out = []
        while True:
            if self._index >= len(self.messages):
                if not self.loop:
                    break
                self._index, self._loops = 0, self._loops + 1
            item = self.messages[self._index]
            offset = self._start + self._loops * period - self.t_first
            if item.t_bag + offset > now:
                break
            out.append(BagMessage(item.topic, item.t_bag + offset, _restamp(item.msg, offset)))
            self._index += 1
        return out


def _restamp(msg, offset: float):
    header = getattr(msg, "header", None)
    if header is None:
        return msg
    t = header.stamp.sec + header.stamp.nanosec * 1e-9 + offset
    ns = int(round(t * 1e9))
    copy = type(msg)()
    for slot in msg.get_fields_and_field_types():
        setattr(copy, slot, getattr(msg, slot))
    copy.header = type(header)(frame_id=header.frame_id)
    copy.header.stamp.sec, copy.header.stamp.nanosec = ns // 1_000_000_000, ns % 1_000_000_000
    return copy
