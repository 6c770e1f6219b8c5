"""Low-level rosbag2 access through ``rosbags`` (sqlite3 and mcap), shared by the episode reader
and the replay tool: open a bag with clear errors, iterate its messages in bag time order, and
fetch camera frames lazily. No rclpy.

Every failure (missing path or topic, unreadable, truncated or corrupt file, unknown message
type) raises :class:`BagError` naming the file and the problem.
"""

from __future__ import annotations

import functools
import os
import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from faster_ros.data.images import ImageDecodeError, compressed_to_rgb, image_to_rgb

JOINT_STATE = "sensor_msgs/msg/JointState"
TRAJECTORY = "trajectory_msgs/msg/JointTrajectory"
IMAGE = "sensor_msgs/msg/Image"
COMPRESSED = "sensor_msgs/msg/CompressedImage"
CAMERA_TYPES = (IMAGE, COMPRESSED)
COMMAND_TYPES = (TRAJECTORY, JOINT_STATE)


class BagError(ValueError):
    """A bag cannot be used; the message names the file and the problem."""


class BagMessage(NamedTuple):
    """One message of :func:`iter_bag_messages`. ``stamp_ns`` is the header stamp (None when the
    type has no header, 0 when unset); ``t_bag_ns`` the bag receive time."""

    topic: str
    msgtype: str
    stamp_ns: int | None
    t_bag_ns: int
    msg: Any

    @property
    def time_ns(self) -> int:
        """The header stamp if set, else the bag time."""
        return self.stamp_ns or self.t_bag_ns


# -------------------------------------------------------------------------------------------------
# low level: open and iterate


@functools.lru_cache(maxsize=1)
def _default_typestore():
    """The standard ROS 2 types (rosbags' LATEST store); importing it costs ~0.6 s, once."""
    from rosbags.typesys import Stores, get_typestore

    return get_typestore(Stores.LATEST)


class _LazyTypestore:
    """Stands in for the default typestore; AnyReader reads ``fielddefs`` only for bags without
    type definitions (mcap and recent sqlite3 bags embed them), so most bags never load it."""

    def __bool__(self) -> bool:
        return True

    @property
    def fielddefs(self):
        return _default_typestore().fielddefs


def open_reader(path: Path):
    """An open rosbags AnyReader on a bag directory or a .db3 / .mcap file."""
    from rosbags.highlevel import AnyReader

    if not path.exists():
        raise BagError(f"{path}: bag not found")
    try:
        reader = AnyReader([path], default_typestore=_LazyTypestore())
        reader.open()
    except BagError:
        raise
    except Exception as exc:  # rosbags, sqlite3, yaml, struct, OSError: all mean "unreadable"
        raise BagError(f"{path}: cannot open bag ({type(exc).__name__}: {exc})") from exc
    _complete_typestore(reader)
    return reader


def _complete_typestore(reader) -> None:
    """Add standard types that the bag's own definitions lack (mixed-definition bags)."""
    known = reader.typestore.fielddefs
    if all(c.msgtype in known for c in reader.connections):
        return
    default = _default_typestore().fielddefs
    reader.typestore.register({k: v for k, v in default.items() if k not in known})


def topic_types(reader) -> dict[str, str]:
    return {c.topic: c.msgtype for c in reader.connections}


def check_topics(path: Path, reader, topics: Sequence[str]) -> list:
    available = topic_types(reader)
    missing = [t for t in topics if t not in available]
    if missing:
        listed = ", ".join(f"{t} ({m})" for t, m in sorted(available.items())) or "none"
        raise BagError(f"{path}: topic(s) {', '.join(missing)} not in bag (topics: {listed})")
    return [c for c in reader.connections if c.topic in set(topics)]


def _stamp_ns(msg) -> int | None:
    header = getattr(msg, "header", None)
    stamp = getattr(header, "stamp", None)
    if stamp is None:
        return None
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def deserialize(path: Path, reader, raw, conn):
    try:
        return reader.deserialize(raw, conn.msgtype)
    except KeyError as exc:
        raise BagError(
            f"{path}: unknown message type {conn.msgtype!r} on {conn.topic} (no definition in "
            f"the bag or the standard types)"
        ) from exc
    except Exception as exc:
        raise BagError(
            f"{path}: cannot deserialize a {conn.msgtype} message on {conn.topic} "
            f"({type(exc).__name__}: {exc})"
        ) from exc


def iter_bag_messages(
    path: str | Path, topics: Sequence[str] | None = None
) -> Iterator[BagMessage]:
    """Yield ``(topic, msgtype, stamp_ns_header, t_bag_ns, msg)`` for the given topics (default
    all) in bag time order; ``msg`` is the rosbags-deserialised message (numpy arrays for
    arrays). Raises :class:`BagError` for missing topics and unreadable or corrupt bags."""
    path = Path(path)
    reader = open_reader(path)
    try:
        conns = check_topics(path, reader, topics) if topics is not None else reader.connections
        messages = reader.messages(connections=conns)
        while True:
            try:
                conn, t_bag, raw = next(messages)
            except StopIteration:
                return
            except BagError:
                raise
            except Exception as exc:
                raise BagError(
                    f"{path}: corrupt or truncated bag while reading ({type(exc).__name__}: "
                    f"{exc})"
                ) from exc
            msg = deserialize(path, reader, raw, conn)
            yield BagMessage(conn.topic, conn.msgtype, _stamp_ns(msg), int(t_bag), msg)
    finally:
        try:
            reader.close()
        except Exception:  # already failing; the first error is the useful one
            pass


# -------------------------------------------------------------------------------------------------
# lazy camera frames


def message_to_rgb(msgtype: str, msg, *, max16: float = 65535.0) -> np.ndarray:
    """A deserialised Image / CompressedImage message -> (H, W, 3) uint8 RGB."""
    if msgtype == COMPRESSED:
        return compressed_to_rgb(msg.format, msg.data, max16=max16)
    return image_to_rgb(msg.encoding, msg.height, msg.width, msg.step, msg.data,
                        is_bigendian=bool(msg.is_bigendian), max16=max16)


class BagFrames:
    """Camera frames of one bag topic at the episode steps, fetched from the bag on demand.

    ``t_bag[k]`` / ``rank[k]`` identify image message k (bag time and its position among messages
    of the topic with that same bag time); ``index[i]`` is the message shown at step i. A fetch
    reads ``readahead`` messages at once through a bag-time range query and keeps the raw
    messages; decoded frames of the last ``cache_size`` steps are kept too.
    """

    def __init__(self, path: Path, topic: str, msgtype: str, t_bag: np.ndarray,
                 rank: np.ndarray, index: np.ndarray, *, max16: float = 65535.0,
                 readahead: int = 16, cache_size: int = 16):
        self.path, self.topic, self.msgtype = Path(path), topic, msgtype
        self.t_bag = np.asarray(t_bag, dtype=np.int64)
        self.rank = np.asarray(rank, dtype=np.int64)
        self.index = np.asarray(index, dtype=np.int64)
        self.max16, self.readahead, self.cache_size = max16, max(1, readahead), cache_size
        self._shape: tuple[int, int, int] | None = None
        self.__setstate__({})

    def __getstate__(self):
        state = dict(self.__dict__)
        for key in ("_lock", "_reader", "_raw", "_decoded"):
            state.pop(key, None)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._lock = threading.Lock()
        self._reader = None
        self._pid = os.getpid()
        self._raw: OrderedDict[int, tuple[bytes, Any]] = OrderedDict()
        self._decoded: OrderedDict[int, np.ndarray] = OrderedDict()

    def __len__(self) -> int:
        return len(self.index)

    @property
    def shape(self) -> tuple[int, int, int]:
        if self._shape is None:
            self._shape = tuple(self.get(0).shape) if len(self) else (0, 0, 3)
        return self._shape

    def close(self) -> None:
        with self._lock:
            if self._reader is not None and self._pid == os.getpid():
                self._reader.close()
            self._reader = None

    def __del__(self):
        try:
            self.close()
        except Exception:  # interpreter shutdown
            pass

    def get(self, i: int) -> np.ndarray:
        n = len(self.index)
        if not -n <= i < n:
            raise IndexError(f"{self.path} {self.topic}: step {i} out of range for {n} steps")
        k = int(self.index[i])
        with self._lock:
            if k in self._decoded:
                self._decoded.move_to_end(k)
                return self._decoded[k]
            if k not in self._raw:
                self._fetch(k)
            raw, conn = self._raw[k]
            msg = deserialize(self.path, self._reader, raw, conn)
            try:
                img = message_to_rgb(self.msgtype, msg, max16=self.max16)
            except ImageDecodeError as exc:
                raise ImageDecodeError(f"{self.path} {self.topic} message {k}: {exc}") from exc
            self._decoded[k] = img
            while len(self._decoded) > self.cache_size:
                self._decoded.popitem(last=False)
            return img

    def _fetch(self, k: int) -> None:
        if self._pid != os.getpid():  # forked: the parent's reader is not ours
            self._reader, self._pid = None, os.getpid()
        if self._reader is None:
            self._reader = open_reader(self.path)
        conns = [c for c in self._reader.connections if c.topic == self.topic]
        last = min(k + self.readahead, len(self.t_bag)) - 1
        start, stop = int(self.t_bag[k]), int(self.t_bag[last]) + 1
        self._raw.clear()
        seen: dict[int, int] = {}
        try:
            for conn, t, raw in self._reader.messages(connections=conns, start=start, stop=stop):
                r = seen.get(t, 0)
                seen[t] = r + 1
                idx = int(np.searchsorted(self.t_bag, t, "left")) + r
                if idx < len(self.t_bag) and self.t_bag[idx] == t and self.rank[idx] == r:
                    self._raw[idx] = (bytes(raw), conn)
        except BagError:
            raise
        except Exception as exc:
            raise BagError(f"{self.path}: cannot read {self.topic} ({exc})") from exc
        if k not in self._raw:
            raise BagError(f"{self.path}: image message {k} of {self.topic} not found in bag")
