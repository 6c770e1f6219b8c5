"""Write rosbag2 recordings (mcap or sqlite3) with ``rosbags``, faster_msgs included. No rclpy.

The messages arrive already serialised (CDR, as DDS carries them and rosbag2 stores them), so
nothing is converted. Each topic's connection carries its message definition from a typestore
that holds the standard ROS 2 Kilted types plus faster_msgs, registered from the ``.msg`` files
of ``faster_msgs/msg`` (the source tree, or the installed ``share/faster_msgs/msg``). Such a bag is
read back by rosbags, and by ``ros2 bag`` where faster_msgs is installed.
"""

from __future__ import annotations

import functools
import os
import sys
from pathlib import Path

MSG_PACKAGE = "faster_msgs"


def faster_msgs_dir() -> Path:
    """The folder holding faster_msgs' .msg files."""
    candidates = [Path(__file__).resolve().parents[2] / MSG_PACKAGE / "msg"]
    for prefix in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep):
        if prefix:
            candidates.append(Path(prefix) / "share" / MSG_PACKAGE / "msg")
    candidates.append(Path(sys.prefix) / "share" / MSG_PACKAGE / "msg")
    for c in candidates:
        if any(c.glob("*.msg")):
            return c
    raise FileNotFoundError(f"{MSG_PACKAGE} .msg files not found in "
                            f"{[str(c) for c in candidates]}")


@functools.lru_cache(maxsize=1)
def typestore():
    """ROS 2 Kilted standard types + faster_msgs (for reading and writing recordings)."""
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    store = get_typestore(Stores.ROS2_KILTED)
    types = {}
    for f in sorted(faster_msgs_dir().glob("*.msg")):
        types.update(get_types_from_msg(f.read_text(), f"{MSG_PACKAGE}/msg/{f.stem}"))
    store.register(types)
    return store


class BagWriter:
    """A rosbag2 being written: ``add(topic, msgtype)`` then ``write(topic, t_ns, cdr_bytes)``;
    a context manager that closes (finalises the metadata) on exit."""

    def __init__(self, path: str | Path, storage: str = "mcap"):
        from rosbags.rosbag2 import StoragePlugin, Writer

        plugins = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}
        if storage not in plugins:
            raise ValueError(f"storage must be one of {sorted(plugins)}, got {storage!r}")
        self.path = Path(path)
        self._writer = Writer(self.path, version=9, storage_plugin=plugins[storage])
        self._writer.open()
        self._store = typestore()
        self._connections: dict[str, object] = {}
        self.counts: dict[str, int] = {}

    def add(self, topic: str, msgtype: str) -> None:
        if topic in self._connections:
            return
        if msgtype not in self._store.fielddefs:
            raise ValueError(f"cannot record {topic}: message type {msgtype!r} is unknown "
                             f"(not a ROS 2 Kilted or faster_msgs type)")
        self._connections[topic] = self._writer.add_connection(topic, msgtype,
                                                               typestore=self._store)
        self.counts[topic] = 0

    def write(self, topic: str, t_ns: int, data: bytes) -> None:
        self._writer.write(self._connections[topic], int(t_ns), data)
        self.counts[topic] += 1

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def __enter__(self) -> BagWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
