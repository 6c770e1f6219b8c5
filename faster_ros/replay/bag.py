"""A rosbag2 recording as the inputs an embodiment's policy node would receive. No rclpy.

:func:`load_inputs` checks a bag against an embodiment before anything runs, and raises
:class:`~faster_ros.data.bag_io.BagError` naming the problem when

* a camera topic, a joint input topic or the requested command topic is missing or empty,
* a topic has a message type the bag does not define and ROS 2 does not know ("unknown type"),
  or a type the node would not subscribe with (e.g. Image where the config says CompressedImage),
* the file is truncated or corrupt (from :mod:`faster_ros.data.bag_io`),
* the cameras and the joint inputs never overlap in time (so no observation can be built).

Times follow the live node under sim-time playback: a message arrives at its bag receive time
(the /clock value when ``faster-ros replay --publish`` plays it) and is stamped with its header
stamp, or with the arrival time when the header stamp is zero (``to_sec(stamp) or now``).
Camera messages are kept as raw bytes and decoded only when an observation uses them, like the
live node's lazy decoding.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from faster_ros import rotations as rot
from faster_ros.data.bag_io import (
    COMMAND_TYPES,
    COMPRESSED,
    IMAGE,
    JOINT_STATE,
    TRAJECTORY,
    BagError,
    deserialize,
    message_to_rgb,
    open_reader,
)
from faster_ros.embodiment import Embodiment

POSE_STAMPED = "geometry_msgs/msg/PoseStamped"
CAMERA_MSG_TYPES = {"Image": IMAGE, "CompressedImage": COMPRESSED}


@dataclass(frozen=True)
class InputSample:
    """One message the policy node would receive, in bag order."""

    t_bag: float  # s, bag receive time (the node's clock when it arrives)
    kind: str  # "camera" | "joints"
    name: str  # camera name or joint topic
    stamp: float  # s, header stamp (arrival time when zero), computed like the live node
    payload: Any  # camera: zero-argument decoder -> (H, W, 3) uint8; joints: (names, positions)


@dataclass
class RecordedSeries:
    """A recorded signal in action coordinates: (N,) times and (N, D) values (NaN: not carried
    by that message)."""

    source: str  # "command <topic>" or "joint states (future)"
    times: np.ndarray
    values: np.ndarray

    def at(self, times: np.ndarray) -> np.ndarray:
        """Values at ``times`` (M,) -> (M, D): linear between samples, NaN outside the
        recorded span or where a dimension was never recorded."""
        out = np.full((len(times), self.values.shape[1]), np.nan)
        for d in range(self.values.shape[1]):
            ok = np.isfinite(self.values[:, d])
            if ok.sum() == 0:
                continue
            t, v = self.times[ok], self.values[ok, d]
            inside = (times >= t[0] - 1e-9) & (times <= t[-1] + 1e-9)
            out[inside, d] = np.interp(times[inside], t, v)
        return out


@dataclass
class PoseSeries:
    """Recorded end-effector poses (geometry_msgs/PoseStamped): per end effector, (N,) times,
    (N, 3) positions (m) and (N, 4) unit quaternions (w, x, y, z)."""

    source: str  # "command <topics>" or "pose feedback (future) <topics>"
    future: bool  # feedback: the pose reached, compared one control period later
    tracks: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]

    def at(self, times: np.ndarray, space) -> np.ndarray:
        """Command-space rows (M, D_command) of ``space``
        (:class:`~faster_ros.control.pose.CommandSpace`) at ``times``: positions linear and
        rotations slerped between samples, NaN outside the recorded span and in the columns
        that are not poses."""
        times = np.asarray(times, dtype=np.float64)
        out = np.full((len(times), space.embodiment.action_dim), np.nan)
        for slot in space.slots:
            t, pos, quat = self.tracks[slot.name]
            inside = (times >= t[0] - 1e-9) & (times <= t[-1] + 1e-9)
            x = np.clip(times[inside], t[0], t[-1])
            k = np.clip(np.searchsorted(t, x, side="right") - 1, 0, max(len(t) - 2, 0))
            k1 = np.minimum(k + 1, len(t) - 1)
            span = np.where(t[k1] > t[k], t[k1] - t[k], 1.0)
            w = np.clip((x - t[k]) / span, 0.0, 1.0)
            rows = np.flatnonzero(inside)
            out[np.ix_(rows, list(slot.position))] = pos[k] + w[:, None] * (pos[k1] - pos[k])
            out[np.ix_(rows, list(slot.quaternion))] = rot.slerp(quat[k], quat[k1], w)
        return out


@dataclass
class ReplayInputs:
    path: Path
    embodiment: Embodiment
    samples: list[InputSample]
    types: dict[str, str]  # every topic of the bag -> message type
    commands: RecordedSeries | None  # recorded commands, when the bag has a command topic
    states: RecordedSeries  # joint states in action coordinates
    notes: list[str] = field(default_factory=list)
    poses: PoseSeries | None = None  # end-effector poses (embodiments with end effectors)

    @property
    def start(self) -> float:
        return self.samples[0].t_bag

    @property
    def end(self) -> float:
        return self.samples[-1].t_bag


def _to_sec(stamp) -> float:
    """Exactly the live node's conversion (faster_ros.ros.conversions.to_sec)."""
    return stamp.sec + stamp.nanosec * 1e-9


def _header_sec(msg) -> float:
    header = getattr(msg, "header", None)
    return _to_sec(header.stamp) if header is not None else 0.0


def _lazy_frame(path: Path, decoder, raw: bytes, conn) -> Callable:
    def decode() -> np.ndarray:
        msg = deserialize(path, decoder, raw, conn)
        return message_to_rgb(conn.msgtype, msg)

    return decode


def _check_types(path: Path, types: dict[str, str], known: set[str], wanted: dict[str, tuple],
                 emb: Embodiment) -> None:
    missing = [t for t in wanted if t not in types]
    if missing:
        listed = ", ".join(f"{t} ({m})" for t, m in sorted(types.items())) or "none"
        raise BagError(f"{path}: topic(s) {', '.join(missing)} needed by embodiment {emb.name} "
                       f"not in bag (topics: {listed})")
    for topic, (allowed, role) in wanted.items():
        msgtype = types[topic]
        if msgtype not in known:
            raise BagError(f"{path}: unknown message type {msgtype!r} on {topic} ({role}): no "
                           f"definition in the bag or the standard ROS 2 types")
        if msgtype not in allowed:
            raise BagError(f"{path}: {role} topic {topic} has message type {msgtype}, expected "
                           f"{' or '.join(allowed)}")


def _command_topic(types: dict[str, str], emb: Embodiment, action_topic: str | None
                   ) -> tuple[str | None, str]:
    """The command topic to compare with: explicit (must exist), else the config's
    ``replay.action_topic`` when the bag has it, else none (future joint states)."""
    if action_topic:
        return action_topic, ""
    configured = emb.replay.get("action_topic", "")
    if configured and configured in types:
        return configured, ""
    if configured:
        return None, (f"command topic {configured} (config replay.action_topic) not in the bag: "
                      f"predictions are compared with the future joint states")
    return None, "no command topic configured: predictions are compared with the future joint " \
                 "states"


def load_inputs(path: str | Path, emb: Embodiment, *, action_topic: str | None = None,
                start_s: float = 0.0, duration_s: float | None = None) -> ReplayInputs:
    """Read and check a bag for ``emb`` (see the module docstring). ``start_s`` /
    ``duration_s`` keep a slice of the bag (seconds from its first message)."""
    path = Path(path)
    reader = open_reader(path)
    try:
        types = {c.topic: c.msgtype for c in reader.connections}
        known = set(reader.typestore.fielddefs)
        wanted: dict[str, tuple] = {}
        for cam in emb.cameras:
            wanted[cam.topic] = ((CAMERA_MSG_TYPES[cam.msg_type],), f"camera {cam.name!r}")
        for ji in emb.joint_inputs:
            wanted[ji.topic] = ((JOINT_STATE,), "joint input")
        command, note = _command_topic(types, emb, action_topic)
        if command:
            wanted[command] = (COMMAND_TYPES, "command")
        pose_topics, pose_source, pose_note = _pose_topics(types, emb)
        for topic, ee in pose_topics.items():
            wanted.setdefault(topic, ((POSE_STAMPED,), f"end-effector pose ({ee})"))
        _check_types(path, types, known, wanted, emb)
        samples, command_msgs, counts, pose_msgs = _read(path, reader, emb, wanted, command,
                                                         start_s, duration_s, pose_topics)
    finally:
        try:
            reader.close()
        except Exception:  # already failing; the first error is the useful one
            pass
    empty = [t for t in wanted if counts.get(t, 0) == 0]
    if empty:
        span = "" if start_s == 0 and duration_s is None else " in the selected time range"
        raise BagError(f"{path}: topic(s) {', '.join(sorted(empty))} have no messages{span}")
    _check_overlap(path, emb, samples)
    inputs = ReplayInputs(path, emb, samples, types, None, _state_series(emb, samples),
                          [n for n in (note, pose_note) if n])
    if pose_topics:
        inputs.poses, frame_notes = _pose_series(emb, pose_topics, pose_source, pose_msgs)
        inputs.notes += frame_notes
    if command:
        inputs.commands = _command_series(emb, command, types[command], command_msgs)
        if not np.isfinite(inputs.commands.values).any():
            raise BagError(f"{path}: command topic {command} carries none of the joints of "
                           f"{emb.name} ({', '.join(emb.position_joint_indices)})")
    return inputs


def _read(path: Path, reader, emb: Embodiment, wanted: dict, command: str | None,
          start_s: float, duration_s: float | None, pose_topics: dict[str, str] | None = None):
    cams = {c.topic: c.name for c in emb.cameras}
    joints = {j.topic for j in emb.joint_inputs}
    conns = [c for c in reader.connections if c.topic in wanted]
    samples: list[InputSample] = []
    command_msgs: list[tuple[float, Any]] = []
    pose_msgs: dict[str, list[tuple[float, Any]]] = {t: [] for t in pose_topics or {}}
    counts: dict[str, int] = {}
    # frames are decoded after the reader is closed (close empties its typestore): keep it
    frame_decoder = _Deserializer(reader.typestore)

    t_first = None
    messages = reader.messages(connections=conns)
    while True:
        try:
            conn, t_ns, raw = next(messages)
        except StopIteration:
            break
        except Exception as exc:
            raise BagError(f"{path}: corrupt or truncated bag while reading "
                           f"({type(exc).__name__}: {exc})") from exc
        t_bag = t_ns * 1e-9
        t_first = t_bag if t_first is None else t_first
        if t_bag < t_first + start_s:
            continue
        if duration_s is not None and t_bag > t_first + start_s + duration_s:
            break
        topic = conn.topic
        if topic in cams:
            # the header stamp is needed now; the pixels only when an observation uses them
            msg = deserialize(path, reader, raw, conn)
            if conn.msgtype == COMPRESSED and len(msg.data) == 0:
                counts[topic] = counts.get(topic, 0) + 1
                continue  # the live node drops an empty CompressedImage on arrival
            frame = _lazy_frame(path, frame_decoder, bytes(raw), conn)
            samples.append(InputSample(t_bag, "camera", cams[topic], _header_sec(msg) or t_bag,
                                       frame))
        elif topic in joints or topic == command:
            msg = deserialize(path, reader, raw, conn)
            if topic in joints:
                names = list(msg.name)
                positions = np.asarray(msg.position, dtype=np.float64)
                samples.append(InputSample(t_bag, "joints", topic, _header_sec(msg) or t_bag,
                                           (names, positions)))
            if topic == command:
                command_msgs.append((t_bag, msg))
        if topic in pose_msgs:
            pose_msgs[topic].append((t_bag, deserialize(path, reader, raw, conn)))
        counts[topic] = counts.get(topic, 0) + 1
    return samples, command_msgs, counts, pose_msgs


class _Deserializer:
    """Deserialises raw CDR with the bag's typestore (the reader itself is closed by then)."""

    def __init__(self, typestore):
        self.typestore = typestore

    def deserialize(self, raw, msgtype):
        return self.typestore.deserialize_cdr(raw, msgtype)


def _check_overlap(path: Path, emb: Embodiment, samples: list[InputSample]) -> None:
    spans: dict[str, tuple[float, float]] = {}
    for s in samples:
        lo, hi = spans.get(s.name, (np.inf, -np.inf))
        spans[s.name] = (min(lo, s.stamp), max(hi, s.stamp))
    slop = emb.control.slop_s
    cams = [c.name for c in emb.cameras]
    joints = [j.topic for j in emb.joint_inputs]
    first = max(spans[n][0] for n in spans)
    last = min(spans[n][1] for n in spans)
    if first > last + slop:
        listed = ", ".join(f"{n} [{spans[n][0]:.3f}, {spans[n][1]:.3f}] s"
                           for n in [*cams, *joints])
        raise BagError(f"{path}: cameras and joint inputs never overlap in time (stamps: "
                       f"{listed}): no observation can be assembled")


def _named_rows(emb: Embodiment, names, values) -> np.ndarray:
    row = np.full(emb.action_dim, np.nan)
    index = emb.position_joint_indices
    values = np.asarray(values, dtype=np.float64)
    if len(values) != len(names):
        return row  # malformed: the live node drops it too
    for name, value in zip(names, values):
        i = index.get(name)
        if i is not None:
            row[i] = value
    return row


def _state_series(emb: Embodiment, samples: list[InputSample]) -> RecordedSeries:
    rows: dict[float, np.ndarray] = {}
    for s in samples:
        if s.kind != "joints":
            continue
        row = _named_rows(emb, *s.payload)
        if s.stamp in rows:  # several drivers at the same stamp: merge
            rows[s.stamp] = np.where(np.isnan(row), rows[s.stamp], row)
        else:
            rows[s.stamp] = row
    times = np.array(sorted(rows))
    return RecordedSeries("joint states (future)", times,
                          np.stack([rows[t] for t in times]) if len(times) else
                          np.zeros((0, emb.action_dim)))


def _command_series(emb: Embodiment, topic: str, msgtype: str, msgs) -> RecordedSeries:
    """Commands in action coordinates. A JointTrajectory contributes its first point at the
    message time (as :func:`faster_ros.data.read_rosbag` reads training data); a JointState
    setpoint its positions. Message time: the header stamp, or the bag time for a topic with
    any zero stamp ("start now")."""
    stamps = [_header_sec(m) for _, m in msgs]
    use_header = all(stamps)
    times, rows = [], []
    for (t_bag, m), stamp in zip(msgs, stamps):
        t = stamp if use_header else t_bag
        if msgtype == TRAJECTORY:
            if len(m.points) == 0:
                continue
            rows.append(_named_rows(emb, list(m.joint_names), m.points[0].positions))
        else:
            rows.append(_named_rows(emb, list(m.name), m.position))
        times.append(t)
    order = np.argsort(times, kind="stable")
    values = np.stack(rows)[order] if rows else np.zeros((0, emb.action_dim))
    return RecordedSeries(f"command {topic}", np.asarray(times)[order], values)


def _pose_topics(types: dict[str, str], emb: Embodiment
                 ) -> tuple[dict[str, str], str, str]:
    """The PoseStamped topics (topic -> end effector) the end-effector truth comes from: the
    pose_stamped outputs (the recorded targets) when the bag has all of them, else the pose
    feedback topics (the poses reached: compared one period later, like future joint states),
    else none (with a note: no end-effector figures)."""
    if not emb.end_effectors:
        return {}, "", ""
    targets = {g.topic: g.end_effector for g in emb.outputs if g.end_effector is not None}
    feedback = {ee.feedback_topic: ee.name for ee in emb.end_effectors if ee.feedback_topic}
    if all(t in types for t in targets):
        return targets, "command", ""
    if len(feedback) == len(emb.end_effectors) and all(t in types for t in feedback):
        return feedback, "feedback", ("end-effector targets " + ", ".join(
            t for t in targets if t not in types) + " not in the bag: end effectors are "
            "compared with the pose feedback one period later")
    return {}, "", ("neither the end-effector targets (" + ", ".join(targets) + ") nor the "
                    "pose feedback (" + ", ".join(feedback) + ") are in the bag: no "
                    "end-effector errors")


def _pose_series(emb: Embodiment, topics: dict[str, str], source: str, msgs
                 ) -> tuple[PoseSeries, list[str]]:
    """PoseStamped messages -> a :class:`PoseSeries` (header stamps, or bag times for a topic
    with any zero stamp, as for commands), and notes on frames other than the configured one."""
    tracks, notes = {}, []
    for topic, name in topics.items():
        ee = emb.end_effector(name)
        stamps = [_header_sec(m) for _, m in msgs[topic]]
        use_header = all(stamps)
        rows = []
        frames = set()
        for (t_bag, m), stamp in zip(msgs[topic], stamps):
            position, q = rot.pose_from_message(m)  # w, x, y, z (messages: x, y, z, w)
            n = float(np.linalg.norm(q))
            if not (np.isfinite(n) and abs(n - 1.0) < 1e-3 and np.isfinite(position).all()):
                continue  # not a pose (the live executor would not publish it)
            rows.append((stamp if use_header else t_bag, *position, *(q / n)))
            frames.add(m.header.frame_id)
        if not rows:
            raise BagError(f"{topic}: no valid pose (finite position, unit quaternion) for "
                           f"end effector {name!r}")
        a = np.array(sorted(rows, key=lambda r: r[0]), dtype=np.float64)
        a[:, 4:] = rot.make_continuous(a[:, 4:])  # one hemisphere along the track
        tracks[name] = (a[:, 0], a[:, 1:4], a[:, 4:])
        other = sorted(f for f in frames if f and f != ee.frame)
        if other:
            notes.append(f"{topic}: poses in frame(s) {', '.join(other)}, the config says "
                         f"{ee.frame}: compared as they are")
    label = "command" if source == "command" else "pose feedback (future)"
    return PoseSeries(f"{label} {', '.join(topics)}", source != "command", tracks), notes
