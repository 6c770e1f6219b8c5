"""Read rosbag2 recordings (sqlite3 and mcap, through ``rosbags``) into episodes. No rclpy.

One bag is one :class:`Episode` on a fixed-rate grid:

* **Times.** Each message is timed by its ``header.stamp``. A topic whose messages have no
  header, or any zero stamp (e.g. JointTrajectory "start now"), is timed by bag receive time for
  all its messages. The grid runs at ``rate`` Hz (default: the median rate of the action topic,
  snapped to an integer within 0.5 %) over the time span that ALL inputs cover (latest first
  message to earliest last message); no common span raises :class:`BagError`. Every topic is
  resampled onto the grid with :func:`~faster_ros.data.resample.resample_at` (``interpolation``
  "zoh" by default, or "linear"); camera frames are always the latest frame at or before the
  step (zero-order hold).
* **State** is the ``position`` of ``sensor_msgs/JointState`` topics gathered BY JOINT NAME into
  ``joint_names`` order: several topics may each carry a subset (arms / grippers / torso), and
  a joint reported by several topics is taken from the first topic listed. Velocity and effort
  are ignored; a message with an empty ``position`` array contributes no sample. Default
  topics: all JointState topics; default joints: every joint name, in order of first appearance.
* **Actions** come from command topics (``trajectory_msgs/JointTrajectory`` or a JointState
  setpoint stream), gathered by joint name like the state. For a JointTrajectory,
  ``points="first"`` (default) takes the first point's positions at the message time;
  ``points="all"`` expands every point at ``stamp + time_from_start`` (a later message overrides
  the remaining points of the one before). With no command topic (``actions_from="state"``, or
  "auto" with no JointTrajectory in the bag) the action at step t is the state at step t + 1
  (the grid ends one step early).
* **Cameras**: ``sensor_msgs/Image`` (any encoding of :mod:`faster_ros.data.images`) and
  ``sensor_msgs/CompressedImage``, as lazy :class:`BagFrames` fetched from the bag on demand.

Bad bags (missing path or topics, unreadable/truncated files, unsupported message types, no time
overlap, missing joints) raise :class:`BagError` naming the file and the problem. Opening,
iterating (:func:`iter_bag_messages`) and lazy frames live in :mod:`faster_ros.data.bag_io`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from faster_ros.data.bag_io import (
    CAMERA_TYPES,
    COMMAND_TYPES,
    JOINT_STATE,
    TRAJECTORY,
    BagError,
    BagFrames,
    BagMessage,
    check_topics,
    iter_bag_messages,
    open_reader,
    topic_types,
)
from faster_ros.data.episode import Episode, FrameSource
from faster_ros.data.resample import (
    EPS_S,
    METHODS,
    estimate_rate,
    make_grid,
    resample_at,
    resample_to_rate,
    sample_index,
)

__all__ = ["BagError", "BagFrames", "BagMessage", "iter_bag_messages", "read_rosbag",
           "resample_to_rate"]

_CAMERA_SUFFIXES = ("compressed", "image_raw", "image_rect_color", "image_rect", "image_color",
                    "image", "color")

# -------------------------------------------------------------------------------------------------
# episode assembly


class _Series:
    """Times (seconds, relative to the bag start) and samples of one input stream."""

    def __init__(self, topic: str, times: np.ndarray, values: np.ndarray, names=()):
        self.topic, self.times, self.values, self.names = topic, times, values, tuple(names)


def _gather(messages: list[BagMessage], t0: int, extract) -> tuple[np.ndarray, list, bool]:
    """Times (s) for one topic's messages, header stamps unless any is zero/missing."""
    stamps = [m.stamp_ns for m in messages]
    use_header = all(s for s in stamps)
    times = np.array([(s if use_header else m.t_bag_ns) - t0 for s, m in zip(stamps, messages)],
                     dtype=np.float64) / 1e9
    return times, [extract(m.msg) for m in messages], use_header


def _named_series(topic: str, times: np.ndarray, samples: list[tuple[Sequence[str], Any]]):
    """Per-message (names, values) -> (M, J) float64 with NaN where a message lacks a joint."""
    names: list[str] = []
    for msg_names, _ in samples:
        for n in msg_names:
            if n not in names:
                names.append(n)
    col = {n: i for i, n in enumerate(names)}
    values = np.full((len(samples), len(names)), np.nan)
    for row, (msg_names, vals) in enumerate(samples):
        vals = np.asarray(vals, dtype=np.float64)
        if len(vals) == 0:
            continue  # e.g. a velocity-only JointState: no position sample in this message
        if len(vals) != len(msg_names):
            raise BagError(f"{topic}: message {row} has {len(msg_names)} names but "
                           f"{len(vals)} positions")
        values[row, [col[n] for n in msg_names]] = vals
    return _Series(topic, times, values, names)


def _trajectory_samples(msgs: list[BagMessage], t0: int, points: str):
    times, _, _ = _gather(msgs, t0, lambda m: None)
    out_t, out = [], []
    for i, (t, m) in enumerate(zip(times, msgs)):
        pts = m.msg.points
        if len(pts) == 0:
            continue
        if points == "first":
            out_t.append(t)
            out.append((list(m.msg.joint_names), pts[0].positions))
            continue
        nxt = times[i + 1] if i + 1 < len(times) else np.inf
        for p in pts:
            tp = t + p.time_from_start.sec + p.time_from_start.nanosec / 1e9
            if tp < nxt - EPS_S or tp == t:
                out_t.append(tp)
                out.append((list(m.msg.joint_names), p.positions))
    return np.asarray(out_t, dtype=np.float64), out


def _assemble(path: Path, series: list[_Series], wanted: Sequence[str] | None, grid: np.ndarray,
              method: str, what: str) -> tuple[np.ndarray, tuple[str, ...]]:
    """Columns of ``wanted`` joints (default all, first-seen order) resampled onto ``grid``."""
    owner: dict[str, tuple[_Series, int]] = {}
    for s in series:
        for j, n in enumerate(s.names):
            owner.setdefault(n, (s, j))
    names = tuple(wanted) if wanted is not None else tuple(owner)
    missing = [n for n in names if n not in owner]
    if missing:
        raise BagError(
            f"{path}: {what} joint(s) {missing} not found on {[s.topic for s in series]} "
            f"(available: {list(owner)})"
        )
    out = np.empty((len(grid), len(names)), dtype=np.float32)
    for c, n in enumerate(names):
        s, j = owner[n]
        ok = ~np.isnan(s.values[:, j])
        if not ok.any() or s.times[ok][0] > grid[0] + EPS_S:
            raise BagError(f"{path}: joint {n!r} on {s.topic} has no sample at the grid start")
        out[:, c] = resample_at(s.times[ok], s.values[ok, j], grid, method)
    return out, names


def _camera_name(topic: str, taken: set[str]) -> str:
    parts = [p for p in topic.strip("/").split("/") if p]
    while len(parts) > 1 and parts[-1] in _CAMERA_SUFFIXES:
        parts.pop()
    name = parts[-1] if parts else topic
    return name if name not in taken else "_".join(p for p in topic.strip("/").split("/") if p)


def _as_list(x: str | Sequence[str] | None) -> list[str] | None:
    return [x] if isinstance(x, str) else (None if x is None else list(x))


def read_rosbag(
    path: str | Path,
    *,
    state_topics: str | Sequence[str] | None = None,
    joint_names: Sequence[str] | None = None,
    action_topics: str | Sequence[str] | None = None,
    action_joint_names: Sequence[str] | None = None,
    actions_from: str = "auto",
    points: str = "first",
    camera_topics: Sequence[str] | Mapping[str, str] | None = None,
    rate: float | None = None,
    interpolation: str = "zoh",
    instruction: str = "",
    load_frames: bool = True,
    max16: float = 65535.0,
) -> list[Episode]:
    """Read one bag (a rosbag2 directory or a .db3 / .mcap file) into one :class:`Episode`, or a
    directory of bag directories into one episode per bag (sorted by name).

    state_topics        JointState topics (default all JointState topics in the bag)
    joint_names         state joints in order (default every joint, first-seen order)
    action_topics       command topics, JointTrajectory or JointState (default: all
                        JointTrajectory topics)
    action_joint_names  action joints in order (default every commanded joint, first-seen order)
    actions_from        "auto", "command" (require a command topic) or "state" (next state)
    points              JointTrajectory points: "first" or "all" (see the module docstring)
    camera_topics       Image / CompressedImage topics, or {camera name: topic} (default all)
    rate                grid rate in Hz (default: estimated from the action or state topic)
    interpolation       "zoh" or "linear" for state and actions
    """
    path = Path(path)
    if path.is_dir() and not (path / "metadata.yaml").is_file() and not any(
            path.glob("*.db3")) and not any(path.glob("*.mcap")):
        bags = sorted(p for p in path.iterdir() if (p / "metadata.yaml").is_file())
        if not bags:
            raise BagError(f"{path}: no rosbag2 recording here (no metadata.yaml, .db3, .mcap)")
        kw = dict(state_topics=state_topics, joint_names=joint_names,
                  action_topics=action_topics, action_joint_names=action_joint_names,
                  actions_from=actions_from, points=points, camera_topics=camera_topics,
                  rate=rate, interpolation=interpolation, instruction=instruction,
                  load_frames=load_frames, max16=max16)
        return [ep for bag in bags for ep in read_rosbag(bag, **kw)]
    if interpolation not in METHODS:
        raise ValueError(f"interpolation must be one of {METHODS}, got {interpolation!r}")
    if actions_from not in ("auto", "command", "state"):
        raise ValueError(f"actions_from must be auto, command or state, got {actions_from!r}")
    if points not in ("first", "all"):
        raise ValueError(f"points must be 'first' or 'all', got {points!r}")

    reader = open_reader(path)
    try:
        types = topic_types(reader)
    finally:
        reader.close()

    def require(topics: list[str], allowed: tuple[str, ...], role: str) -> None:
        check_topics(path, _TopicView(types), topics)
        bad = [f"{t} ({types[t]})" for t in topics if types[t] not in allowed]
        if bad:
            raise BagError(f"{path}: {role} topic(s) of unsupported message type: "
                           f"{', '.join(bad)} (expected {' or '.join(allowed)})")

    by_type = lambda wanted: sorted(t for t, m in types.items() if m in wanted)  # noqa: E731
    st_topics = _as_list(state_topics) or by_type((JOINT_STATE,))
    if state_topics is None and not st_topics and actions_from != "command":
        raise BagError(f"{path}: no sensor_msgs/JointState topic (topics: {sorted(types)})")
    require(st_topics, (JOINT_STATE,), "state")
    act_topics = _as_list(action_topics)
    if act_topics is None:
        act_topics = by_type((TRAJECTORY,)) if actions_from != "state" else []
    if actions_from == "state":
        act_topics = []
    elif actions_from == "command" and not act_topics:
        raise BagError(f"{path}: no JointTrajectory command topic (topics: {sorted(types)})")
    require(act_topics, COMMAND_TYPES, "action")
    if isinstance(camera_topics, Mapping):
        cameras = dict(camera_topics)
    else:
        cams = _as_list(camera_topics)
        cams = by_type(CAMERA_TYPES) if cams is None else cams
        cameras = {}
        for t in cams:
            cameras[_camera_name(t, set(cameras))] = t
    if not load_frames:
        cameras = {}
    require(list(cameras.values()), CAMERA_TYPES, "camera")
    if not st_topics and not act_topics:
        raise BagError(f"{path}: neither state nor action topics to read")

    per_topic: dict[str, list[BagMessage]] = {t: [] for t in {*st_topics, *act_topics}}
    cam_times: dict[str, list[tuple[int, int]]] = {t: [] for t in cameras.values()}
    for m in iter_bag_messages(path, sorted({*per_topic, *cam_times})):
        if m.topic in per_topic:
            per_topic[m.topic].append(m)
        if m.topic in cam_times:
            cam_times[m.topic].append((m.stamp_ns or 0, m.t_bag_ns))
    empty = [t for t, v in [*per_topic.items(), *cam_times.items()] if not v]
    if empty:
        raise BagError(f"{path}: topic(s) without messages: {', '.join(sorted(empty))}")
    t0 = min(v[0].t_bag_ns for v in per_topic.values())

    state_series = []
    for t in st_topics:
        times, samples, _ = _gather(per_topic[t], t0, lambda m: (list(m.name), m.position))
        state_series.append(_named_series(t, times, samples))
    action_series = []
    for t in act_topics:
        if types[t] == TRAJECTORY:
            times, samples = _trajectory_samples(per_topic[t], t0, points)
        else:
            times, samples, _ = _gather(per_topic[t], t0, lambda m: (list(m.name), m.position))
        if not samples:
            raise BagError(f"{path}: {t} has no trajectory points")
        action_series.append(_named_series(t, times, samples))
    cam_series = {}
    for t, stamps in cam_times.items():
        arr = np.array(stamps, dtype=np.int64)
        use_header = bool(np.all(arr[:, 0] != 0))
        cam_series[t] = _Series(t, (arr[:, 0 if use_header else 1] - t0) / 1e9, arr[:, 1])

    inputs = [*state_series, *action_series, *cam_series.values()]
    first = max(s.times.min() for s in inputs)
    last = min(s.times.max() for s in inputs)
    if rate is None:
        basis = action_series[0] if action_series else state_series[0]
        try:
            rate = estimate_rate(basis.times)
        except ValueError as exc:
            raise BagError(f"{path}: cannot estimate a rate from {basis.topic}: {exc}") from exc
    future = not action_series
    grid = make_grid(first, last - (1.0 / rate if future else 0.0), rate)
    if len(grid) < 1:
        spans = ", ".join(f"{s.topic} [{s.times.min():.3f}, {s.times.max():.3f}] s"
                          for s in inputs)
        raise BagError(f"{path}: no time overlap between inputs ({spans})")

    state = state_names = None
    if state_series:
        state, state_names = _assemble(path, state_series, joint_names, grid, interpolation,
                                       "state")
    if future:
        actions, action_names = _assemble(path, state_series, joint_names, grid + 1.0 / rate,
                                          interpolation, "state")
    else:
        actions, action_names = _assemble(path, action_series, action_joint_names, grid,
                                          interpolation, "action")
    frames: dict[str, FrameSource] = {}
    for name, topic in cameras.items():
        s = cam_series[topic]
        order = np.argsort(s.times, kind="stable")
        t_bag = s.values  # already in bag order
        rank = _ranks(t_bag)
        shown = order[sample_index(s.times[order], grid)]
        frames[name] = BagFrames(path, topic, types[topic], t_bag, rank, shown, max16=max16)
    return [Episode(
        name=path.stem if path.is_file() else path.name,
        fps=rate,
        actions=actions,
        action_names=action_names,
        state=state,
        state_names=state_names or (),
        timestamps=grid - grid[0],
        instruction=instruction,
        frames=frames,
        source=f"{path}#t0={(t0 + int(round(grid[0] * 1e9))) / 1e9:.9f}",
    )]


class _TopicView:
    """The ``connections`` of a closed reader, enough for :func:`check_topics`."""

    def __init__(self, types: dict[str, str]):
        self.connections = [_Conn(t, m) for t, m in types.items()]


class _Conn(NamedTuple):
    topic: str
    msgtype: str


def _ranks(t_bag: np.ndarray) -> np.ndarray:
    """Position of each message among earlier messages with the same bag time."""
    rank = np.zeros(len(t_bag), dtype=np.int64)
    for i in range(1, len(t_bag)):
        if t_bag[i] == t_bag[i - 1]:
            rank[i] = rank[i - 1] + 1
    return rank
