"""The frozen, validated description of one robot, loaded from ``config/<name>.yaml``.

Everything robot-specific lives in that YAML: action dimensions with units and limits, the
tokenizer's patch groups and code shape (FASTer Table 4), cameras, joint-state inputs and the
routing of each action group to its controller. Nodes, launch files, the tokenizer and the
policy all read the same object, so a wrong file fails once, at load, with the file, the field
and the value.

No rclpy here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from faster_ros.paths import config_path
from faster_ros.rotations import EULER_AXES, ROTATION_SIZES, ROTATIONS

DIMENSION_KINDS = ("position", "velocity")
INTERFACE_KINDS = (
    "joint_trajectory",  # trajectory_msgs/JointTrajectory to a ros2_control JTC
    "joint_state_stream",  # sensor_msgs/JointState setpoints at the control rate (R1 Lite)
    "gripper_position",  # sensor_msgs/JointState with position[0], streamed (R1 Lite grippers)
    "forward_command",  # std_msgs/Float64MultiArray to a ros2_control forward_command_controller
    "twist_base",  # geometry_msgs/TwistStamped velocity command for a mobile base
    "pose_stamped",  # geometry_msgs/PoseStamped end-effector target, streamed (R1 Lite arms)
)
EE_POSITIONS = ("absolute", "delta")
DELTA_FRAMES = ("base", "tool")
TWIST_FIELDS = ("linear.x", "linear.y", "linear.z", "angular.x", "angular.y", "angular.z")
CAMERA_TYPES = ("Image", "CompressedImage")
MODES = ("TELEOP", "POLICY", "HOLD")  # faster_msgs/PolicyStatus MODE_* values the runtime takes
TELEOP_TYPES = (
    "JointState",  # sensor_msgs/JointState from a leader arm, matched to dimensions by joint name
    "JointTrajectory",  # trajectory_msgs/JointTrajectory (its first point), matched by joint name
    "Twist",  # geometry_msgs/Twist for a mobile base, mapped through the twist_base fields
)
# Default handoff topics (faster_ros.graph re-exports them; launch files and bringup read both).
DEFAULT_DEADMAN_TOPIC = "/faster/deadman"
DEFAULT_TELEOP_JOINT_TOPIC = "/faster/teleop/joint_command"
DEFAULT_TELEOP_TWIST_TOPIC = "/faster/teleop/cmd_vel"


class EmbodimentConfigError(ValueError):
    """A config file is wrong; the message names the file, the field and the bad value."""


@dataclass(frozen=True)
class Dimension:
    """One action dimension. ``kind`` says whether the action is a position (joint angle, gripper
    opening) or a velocity (base twist); ``max_rate`` bounds its rate of change in ``unit``/s (a
    joint speed limit for positions, an acceleration limit for velocities). ``joint`` is the name
    under which the robot reports it in its joint states (None for velocities);
    ``max_seam_jump`` bounds a jump between consecutive commands in this dimension's unit
    (default: ``control.max_seam_jump``). ``home`` is the robot's nominal start value, where the
    mock robot starts without a recording (like ros2_control mock hardware's ``initial_value``;
    default: the middle of the limits, 0 for velocities). ``latch`` (close_below, open_above,
    holding_gap): a gripper latch on this dimension's commands
    (:mod:`faster_ros.control.latch`)."""

    name: str
    unit: str
    kind: str
    lower: float
    upper: float
    max_rate: float
    joint: str | None
    max_seam_jump: float | None = None  # overrides control.max_seam_jump (in this unit)
    home: float | None = None
    latch: tuple[float, float, float] | None = None  # close_below, open_above, holding_gap


@dataclass(frozen=True)
class PatchGroup:
    """A tokenizer patch group: action dimensions of one physical meaning (FASTer section 3.1)."""

    name: str
    dims: tuple[str, ...]
    indices: tuple[int, ...]


@dataclass(frozen=True)
class TokenizerSpec:
    """FASTerVQ shape for this robot: chunk of ``chunk_size`` steps cut into time patches of
    ``time_patch`` steps, latent ``code_horizon`` (C_h) x ``code_dims`` (C_a), ``codebooks`` (N_c)
    residual levels of ``codebook_size`` (K) codes each."""

    chunk_size: int
    time_patch: int
    code_horizon: int
    code_dims: int
    codebooks: int
    codebook_size: int
    latent_dim: int
    patch_groups: tuple[PatchGroup, ...]

    @property
    def tokens_per_chunk(self) -> int:
        return self.codebooks * self.code_horizon * self.code_dims


@dataclass(frozen=True)
class PolicySpec:
    """Which model runs this robot and how it decodes (BAR block size, sampling)."""

    model: str | None
    tokenizer: str | None
    block_size: int
    instruction: str
    top_k: int
    temperature: float
    greedy: bool


@dataclass(frozen=True)
class ControlSpec:
    """Timing and safety of chunk execution (see faster_ros.control)."""

    rate_hz: float
    execute_steps: int
    blend_time_s: float
    max_seam_jump: float
    watchdog_s: float
    min_lead_s: float
    slop_s: float

    @property
    def dt(self) -> float:
        return 1.0 / self.rate_hz


@dataclass(frozen=True)
class CameraInput:
    name: str
    topic: str
    msg_type: str
    rate_hz: float
    max_age_s: float


@dataclass(frozen=True)
class JointInput:
    topic: str
    joints: tuple[str, ...]
    max_age_s: float


@dataclass(frozen=True)
class OutputGroup:
    """Route action dimensions ``dims`` to one controller: interface ``kind`` on ``topic``.
    ``joints`` are the controller's joint names (default: the dimension names); ``fields`` map each
    dimension of a ``twist_base`` group to a TwistStamped field."""

    name: str
    kind: str
    topic: str
    dims: tuple[str, ...]
    indices: tuple[int, ...]
    joints: tuple[str, ...]
    fields: tuple[str, ...]
    end_effector: str | None = None  # pose_stamped: the end effector whose pose it carries
    frame_id: str = ""  # pose_stamped: header.frame_id of the targets


@dataclass(frozen=True)
class EndEffector:
    """An end-effector action group: a pose target in ``frame`` (PoseStamped header.frame_id).

    Its action dimensions are derived and appended after the config's ``dimensions``, in the
    order of ``end_effectors``: ``<name>_x/_y/_z`` (m), then the rotation in the ``rotation``
    representation (faster_ros.rotations): ``<name>_rx/_ry/_rz`` (axis_angle),
    ``<name>_euler0..2`` (euler, axis order ``euler_axes``), ``<name>_qw/_qx/_qy/_qz``
    (quaternion) or ``<name>_r6d0..5`` (rot6d). ``position`` "absolute": targets in ``frame``;
    "delta": per-step increments accumulated from the commanded pose (translations added in
    ``frame``; rotations composed in ``frame`` with ``delta_frame`` "base", in the end-effector
    frame with "tool"), each bounded by ``max_step_translation`` (m) / ``max_step_rotation``
    (rad). ``gripper`` names its gripper dimension (declared in ``dimensions``). The safety gate
    keeps the commanded pose inside ``workspace_lower``..``workspace_upper`` (m, in ``frame``),
    its speeds under ``max_linear_speed`` (m/s) / ``max_angular_speed`` (rad/s) and seam jumps
    under ``max_seam_translation`` (m) / ``max_seam_rotation`` (rad). The robot reports the pose
    on ``feedback_topic`` (PoseStamped)."""

    name: str
    frame: str
    position: str
    rotation: str
    euler_axes: str | None
    delta_frame: str
    workspace_lower: tuple[float, float, float]
    workspace_upper: tuple[float, float, float]
    max_linear_speed: float
    max_angular_speed: float
    max_seam_translation: float
    max_seam_rotation: float
    max_step_translation: float | None
    max_step_rotation: float | None
    feedback_topic: str
    feedback_max_age_s: float
    gripper: str | None
    position_dims: tuple[str, ...]
    rotation_dims: tuple[str, ...]
    position_indices: tuple[int, ...]
    rotation_indices: tuple[int, ...]

    @property
    def is_delta(self) -> bool:
        return self.position == "delta"

    @property
    def pose_dims(self) -> tuple[str, ...]:
        return self.position_dims + self.rotation_dims

    @property
    def pose_indices(self) -> tuple[int, ...]:
        return self.position_indices + self.rotation_indices


@dataclass(frozen=True)
class TeleopInput:
    """One operator command stream. ``dims`` are the action dimensions it drives (``indices`` in
    action order); ``names`` are, per dimension, the joint name looked up in the message
    (JointState / JointTrajectory) or the Twist field (``linear.x`` ...)."""

    topic: str
    msg_type: str
    dims: tuple[str, ...]
    indices: tuple[int, ...]
    names: tuple[str, ...]


@dataclass(frozen=True)
class HandoffSpec:
    """Teleop <-> policy handoff (see faster_ros.control.modes and .handoff).

    ``initial_mode``: mode at start. ``blend_time_s``: the first policy chunk after a switch to
    POLICY is cross-faded from the current command over this time. ``catchup_rate_scale``: on a
    switch to TELEOP the command moves to the operator's at this fraction of each dimension's
    ``max_rate`` (and never by more than its seam bound per tick), then follows it unchanged.
    ``activity_threshold``: the operator "moves" (POLICY/HOLD -> TELEOP) when a teleop value
    leaves its value at the switch by more than this fraction of the dimension's range (a twist:
    exceeds it). ``teleop_timeout_s`` / ``policy_timeout_s``: an input silent for longer is lost
    (both lost -> HOLD). ``deadman_topic`` (std_msgs/Bool, empty: none): a press asks for POLICY,
    a release or ``deadman_timeout_s`` of silence while pressed leaves it; with
    ``require_deadman`` POLICY is only entered and kept while it is pressed."""

    initial_mode: str
    blend_time_s: float
    catchup_rate_scale: float
    activity_threshold: float
    teleop_timeout_s: float
    policy_timeout_s: float
    deadman_topic: str
    deadman_timeout_s: float
    require_deadman: bool
    teleop_inputs: tuple[TeleopInput, ...]


@dataclass(frozen=True)
class Embodiment:
    """One robot. Build it with :func:`load_embodiment`."""

    name: str
    description: str
    source: str
    dimensions: tuple[Dimension, ...]
    state_joints: tuple[str, ...]
    tokenizer: TokenizerSpec
    policy: PolicySpec
    control: ControlSpec
    cameras: tuple[CameraInput, ...]
    joint_inputs: tuple[JointInput, ...]
    outputs: tuple[OutputGroup, ...]
    replay: dict[str, str] = field(default_factory=dict)
    end_effectors: tuple[EndEffector, ...] = ()  # pose action groups (their dims come last)
    handoff: HandoffSpec | None = None  # always set by parse_embodiment (defaults if absent)

    def end_effector(self, name: str) -> EndEffector:
        for ee in self.end_effectors:
            if ee.name == name:
                return ee
        raise KeyError(f"embodiment {self.name!r} has no end effector {name!r}")

    @property
    def action_dim(self) -> int:
        return len(self.dimensions)

    @property
    def state_dim(self) -> int:
        return len(self.state_joints)

    @property
    def dim_names(self) -> tuple[str, ...]:
        return tuple(d.name for d in self.dimensions)

    @property
    def lower(self) -> np.ndarray:
        return np.array([d.lower for d in self.dimensions], dtype=np.float64)

    @property
    def upper(self) -> np.ndarray:
        return np.array([d.upper for d in self.dimensions], dtype=np.float64)

    @property
    def max_rate(self) -> np.ndarray:
        return np.array([d.max_rate for d in self.dimensions], dtype=np.float64)

    @property
    def seam_bound(self) -> np.ndarray:
        """(D,) largest allowed jump between consecutive commands, per dimension."""
        default = self.control.max_seam_jump
        return np.array([default if d.max_seam_jump is None else d.max_seam_jump
                         for d in self.dimensions], dtype=np.float64)

    @property
    def is_velocity(self) -> np.ndarray:
        return np.array([d.kind == "velocity" for d in self.dimensions], dtype=bool)

    @property
    def home(self) -> np.ndarray:
        """(D,) nominal start values: each dimension's ``home``, else the middle of its limits
        (0 for velocities)."""
        return np.array([d.home if d.home is not None else
                         0.0 if d.kind == "velocity" else 0.5 * (d.lower + d.upper)
                         for d in self.dimensions], dtype=np.float64)

    @property
    def latches(self) -> tuple[Any, ...]:
        """The :class:`~faster_ros.control.latch.GripperLatch` of each dimension that has one;
        after a release an opening rises at most ``max_rate`` (per control step), so the rate
        gate never sees the jump."""
        from faster_ros.control.latch import GripperLatch  # control imports this module

        dt = self.control.dt
        return tuple(GripperLatch(i, *d.latch, max_step=d.max_rate * dt)
                     for i, d in enumerate(self.dimensions) if d.latch is not None)

    def index(self, name: str) -> int:
        return self.dim_names.index(name)

    @property
    def position_joint_indices(self) -> dict[str, int]:
        """Joint-state name -> action index, for the dimensions that are joint positions."""
        return {d.joint: i for i, d in enumerate(self.dimensions) if d.joint is not None}


# ------------------------------------------------------------------------------------------------
# Loading and validation


class _Reader:
    """Reads a nested mapping, tracking the field path for error messages."""

    def __init__(self, source: str, data: Any, path: str = ""):
        self.source, self.data, self.path = source, data, path

    def fail(self, message: str, key: str | None = None) -> EmbodimentConfigError:
        where = self._join(key) if key is not None else (self.path or "<top level>")
        return EmbodimentConfigError(f"{self.source}: {where}: {message}")

    def _join(self, key: str | int) -> str:
        if isinstance(key, int):
            return f"{self.path}[{key}]"
        return f"{self.path}.{key}" if self.path else key

    def mapping(self, allowed: set[str], required: set[str]) -> _Reader:
        if not isinstance(self.data, dict):
            raise self.fail(f"expected a mapping, got {type(self.data).__name__} {self.data!r}")
        unknown = sorted(set(self.data) - allowed)
        if unknown:
            raise self.fail(f"unknown key {unknown[0]!r} (allowed: {', '.join(sorted(allowed))})")
        missing = sorted(required - set(self.data))
        if missing:
            raise self.fail(f"missing required key {missing[0]!r}")
        return self

    def child(self, key: str | int) -> _Reader:
        return _Reader(self.source, self.data[key], self._join(key))

    def items(self, key: str, allow_empty: bool = False) -> list[_Reader]:
        value = self.data.get(key, [])
        if not isinstance(value, list) or (not value and not allow_empty):
            raise self.fail(f"expected a non-empty list, got {value!r}", key)
        sub = self.child(key)
        return [sub.child(i) for i in range(len(value))]

    def get(self, key: str, kind: type | tuple, default: Any = ...) -> Any:
        if key not in self.data:
            if default is ...:
                raise self.fail("missing required key", key)
            return default
        value = self.data[key]
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if isinstance(value, bool) and kind in (int, float):
            raise self.fail(f"expected {kind.__name__}, got {value!r}", key)
        if not isinstance(value, kind):
            name = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
            raise self.fail(f"expected {name}, got {value!r}", key)
        return value

    def positive(self, key: str, kind: type = float, default: Any = ...) -> Any:
        value = self.get(key, kind, default)
        if value is not None and (not math.isfinite(value) or value <= 0):
            raise self.fail(f"must be a positive finite number, got {value!r}", key)
        return value

    def names(self, key: str) -> tuple[str, ...]:
        value = self.get(key, list)
        if not value or not all(isinstance(v, str) and v for v in value):
            raise self.fail(f"expected a non-empty list of names, got {value!r}", key)
        seen = set()
        for v in value:
            if v in seen:
                raise self.fail(f"duplicate name {v!r}", key)
            seen.add(v)
        return tuple(value)

    def choice(self, key: str, options: tuple[str, ...], default: Any = ...) -> str:
        value = self.get(key, str, default)
        if value not in options:
            expected = ", ".join(options)
            raise self.fail(f"unknown value {value!r} (expected one of: {expected})", key)
        return value


def _dimensions(top: _Reader) -> tuple[Dimension, ...]:
    dims: list[Dimension] = []
    seen: set[str] = set()
    for r in top.items("dimensions", allow_empty="end_effectors" in top.data):
        r.mapping({"name", "unit", "kind", "limits", "max_rate", "joint", "max_seam_jump",
                   "home", "latch"}, {"name", "limits"})
        name = r.get("name", str)
        if name in seen:
            raise r.fail(f"duplicate dimension name {name!r}", "name")
        seen.add(name)
        kind = r.choice("kind", DIMENSION_KINDS, "position")
        limits = r.get("limits", list)
        if len(limits) != 2 or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in limits
        ):
            raise r.fail(f"expected [lower, upper], got {limits!r}", "limits")
        lower, upper = float(limits[0]), float(limits[1])
        if not (math.isfinite(lower) and math.isfinite(upper)):
            raise r.fail(f"limits must be finite, got {limits!r}", "limits")
        if lower >= upper:
            raise r.fail(f"inverted limits: lower {lower} >= upper {upper}", "limits")
        default_joint = name if kind == "position" else None
        joint = r.get("joint", (str, type(None)), default_joint)
        home = r.get("home", (int, float, type(None)), None)
        if isinstance(home, bool):
            raise r.fail(f"expected a number, got {home!r}", "home")
        if home is not None and kind == "velocity":
            raise r.fail("a velocity dimension starts at 0: home is for positions", "home")
        if home is not None and not lower <= float(home) <= upper:
            raise r.fail(f"home {home!r} is outside the limits [{lower}, {upper}]", "home")
        latch = r.get("latch", (dict, type(None)), None)
        if latch is not None:
            if kind != "position":
                raise r.fail("a latch is for a gripper's position, not a velocity", "latch")
            keys = {"close_below", "open_above", "holding_gap"}
            if set(latch) != keys or not all(isinstance(v, (int, float))
                                             and not isinstance(v, bool)
                                             for v in latch.values()):
                raise r.fail(f"expected numbers for exactly {sorted(keys)}, got {latch!r}",
                             "latch")
            lo, hi, gap = (float(latch[k]) for k in ("close_below", "open_above",
                                                     "holding_gap"))
            if not lower < lo < hi < upper:
                raise r.fail(f"expected lower < close_below < open_above < upper "
                             f"({lower} .. {upper}), got {latch!r}", "latch")
            if not 0 < gap < upper - lower:
                raise r.fail(f"holding_gap {gap} must be positive and inside the range", "latch")
            latch = (lo, hi, gap)
        dims.append(
            Dimension(
                name=name,
                unit=r.get("unit", str, "rad"),
                kind=kind,
                lower=lower,
                upper=upper,
                max_rate=r.positive("max_rate"),
                joint=joint,
                max_seam_jump=r.positive("max_seam_jump", float, None),
                home=None if home is None else float(home),
                latch=latch,
            )
        )
    return tuple(dims)


def _resolve(
    r: _Reader, key: str, names: tuple[str, ...], index: dict[str, int]
) -> tuple[int, ...]:
    unknown = [n for n in names if n not in index]
    if unknown:
        raise r.fail(f"unknown dimension {unknown[0]!r}", key)
    return tuple(index[n] for n in names)


def _check_partition(
    r: _Reader, key: str, groups: list[tuple[str, tuple[int, ...]]], dim_names: tuple[str, ...]
) -> None:
    owner: dict[int, str] = {}
    for group_name, idx in groups:
        for i in idx:
            if i in owner:
                raise r.fail(
                    f"dimension {dim_names[i]!r} is in both {owner[i]!r} and {group_name!r}", key
                )
            owner[i] = group_name
    missing = [dim_names[i] for i in range(len(dim_names)) if i not in owner]
    if missing:
        raise r.fail(f"dimension {missing[0]!r} is in no group (groups must cover all)", key)


def _tokenizer(top: _Reader, dim_names: tuple[str, ...],
               derived: tuple[PatchGroup, ...] = ()) -> TokenizerSpec:
    r = top.child("tokenizer").mapping(
        {"chunk_size", "time_patch", "code_horizon", "code_dims", "codebooks", "codebook_size",
         "latent_dim", "patch_groups"},
        {"chunk_size", "time_patch", "code_horizon", "code_dims", "codebooks", "patch_groups"},
    )
    index = {n: i for i, n in enumerate(dim_names)}
    groups: list[PatchGroup] = []
    seen: set[str] = set()
    owned = {dim_names[i]: g.name for g in derived for i in g.indices}
    for g in r.items("patch_groups", allow_empty=bool(derived)):
        g.mapping({"name", "dims"}, {"name", "dims"})
        name = g.get("name", str)
        if name in seen:
            raise g.fail(f"duplicate group name {name!r}", "name")
        seen.add(name)
        dims = g.names("dims")
        taken = [n for n in dims if n in owned]
        if taken:
            raise g.fail(f"dimension {taken[0]!r} is in the derived patch group "
                         f"{owned[taken[0]]!r} of its end effector; leave it out here", "dims")
        groups.append(PatchGroup(name, dims, _resolve(g, "dims", dims, index)))
    for d in derived:
        if d.name in seen:
            raise r.fail(f"group name {d.name!r} is taken by an end effector's derived group",
                         "patch_groups")
        groups.append(d)
    _check_partition(r, "patch_groups", [(g.name, g.indices) for g in groups], dim_names)
    chunk = r.positive("chunk_size", int)
    time_patch = r.positive("time_patch", int)
    if chunk % time_patch:
        raise r.fail(f"time_patch {time_patch} does not divide chunk_size {chunk}", "time_patch")
    spec = TokenizerSpec(
        chunk_size=chunk,
        time_patch=time_patch,
        code_horizon=r.positive("code_horizon", int),
        code_dims=r.positive("code_dims", int),
        codebooks=r.positive("codebooks", int),
        codebook_size=r.positive("codebook_size", int, 4096),
        latent_dim=r.positive("latent_dim", int, 128),
        patch_groups=tuple(groups),
    )
    if spec.code_horizon > chunk:
        raise r.fail(
            f"code_horizon {spec.code_horizon} exceeds chunk_size {chunk}", "code_horizon"
        )
    return spec


def _policy(top: _Reader, tokens_per_chunk: int) -> PolicySpec:
    r = top.child("policy").mapping(
        {"model", "tokenizer", "block_size", "instruction", "top_k", "temperature", "greedy"},
        {"block_size"},
    )
    block = r.positive("block_size", int)
    if block > tokens_per_chunk:
        raise r.fail(
            f"block_size {block} exceeds the {tokens_per_chunk} tokens of one chunk", "block_size"
        )
    return PolicySpec(
        model=r.get("model", (str, type(None)), None),
        tokenizer=r.get("tokenizer", (str, type(None)), None),
        block_size=block,
        instruction=r.get("instruction", str, ""),
        top_k=r.positive("top_k", int, 50),
        temperature=r.positive("temperature", float, 0.8),
        greedy=r.get("greedy", bool, False),
    )


def _control(top: _Reader, chunk_size: int) -> ControlSpec:
    r = top.child("control").mapping(
        {"rate_hz", "execute_steps", "blend_time_s", "max_seam_jump", "watchdog_s", "min_lead_s",
         "slop_s"},
        {"rate_hz"},
    )
    rate = r.positive("rate_hz")
    execute = r.positive("execute_steps", int, chunk_size // 2)
    if execute > chunk_size:
        raise r.fail(f"execute_steps {execute} exceeds chunk_size {chunk_size}", "execute_steps")
    blend = r.get("blend_time_s", float, 0.2)
    if not 0 <= blend < chunk_size / rate:
        raise r.fail(f"blend_time_s must be in [0, chunk duration), got {blend}", "blend_time_s")
    return ControlSpec(
        rate_hz=rate,
        execute_steps=execute,
        blend_time_s=blend,
        max_seam_jump=r.positive("max_seam_jump", float, 0.15),
        watchdog_s=r.positive("watchdog_s", float, 0.5),
        min_lead_s=r.get("min_lead_s", float, 1.0 / rate),
        slop_s=r.positive("slop_s", float, 0.05),
    )


def _cameras(top: _Reader) -> tuple[CameraInput, ...]:
    cams, names = [], set()
    for r in top.items("cameras", allow_empty=True):
        r.mapping({"name", "topic", "type", "rate_hz", "max_age_s"}, {"name", "topic", "type"})
        name = r.get("name", str)
        if name in names:
            raise r.fail(f"duplicate camera name {name!r}", "name")
        names.add(name)
        cams.append(
            CameraInput(
                name=name,
                topic=r.get("topic", str),
                msg_type=r.choice("type", CAMERA_TYPES),
                rate_hz=r.positive("rate_hz", float, 30.0),
                max_age_s=r.positive("max_age_s", float, 0.2),
            )
        )
    return tuple(cams)


def _joint_inputs(top: _Reader) -> tuple[tuple[JointInput, ...], tuple[str, ...]]:
    inputs, state, topics = [], [], set()
    for r in top.items("joint_inputs"):
        r.mapping({"topic", "joints", "max_age_s"}, {"topic", "joints"})
        topic = r.get("topic", str)
        if topic in topics:
            raise r.fail(f"duplicate joint input topic {topic!r}", "topic")
        topics.add(topic)
        joints = r.names("joints")
        for j in joints:
            if j in state:
                raise r.fail(f"joint {j!r} is read from two inputs", "joints")
            state.append(j)
        inputs.append(JointInput(topic, joints, r.positive("max_age_s", float, 0.1)))
    return tuple(inputs), tuple(state)


def _outputs(top: _Reader, dim_names: tuple[str, ...],
             end_effectors: tuple[EndEffector, ...] = ()) -> tuple[OutputGroup, ...]:
    index = {n: i for i, n in enumerate(dim_names)}
    groups: list[OutputGroup] = []
    for r in top.items("outputs"):
        r.mapping({"name", "kind", "topic", "dims", "joints", "fields", "end_effector"},
                  {"name", "kind", "topic"})
        kind = r.choice("kind", INTERFACE_KINDS)
        if kind == "pose_stamped" or "end_effector" in r.data:
            groups.append(_pose_output(r, kind, end_effectors))
            continue
        if "dims" not in r.data:
            raise r.fail("missing required key 'dims'")
        dims = r.names("dims")
        indices = _resolve(r, "dims", dims, index)
        joints = r.names("joints") if "joints" in r.data else dims
        if len(joints) != len(dims):
            raise r.fail(f"{len(joints)} joints for {len(dims)} dims", "joints")
        fields: tuple[str, ...] = ()
        if kind == "twist_base":
            fields = r.names("fields")
            bad = [f for f in fields if f not in TWIST_FIELDS]
            if bad:
                raise r.fail(f"unknown twist field {bad[0]!r}", "fields")
            if len(fields) != len(dims):
                raise r.fail(f"{len(fields)} fields for {len(dims)} dims", "fields")
        elif "fields" in r.data:
            raise r.fail(f"'fields' only applies to twist_base outputs, not {kind}", "fields")
        if kind == "gripper_position" and len(dims) != 1:
            raise r.fail(f"a gripper_position output takes one dimension, got {len(dims)}",
                         "dims")
        groups.append(OutputGroup(r.get("name", str), kind, r.get("topic", str), dims, indices,
                                  joints, fields))
    names = [g.name for g in groups]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise top.fail(f"duplicate output group name {sorted(dup)[0]!r}", "outputs")
    _check_partition(top, "outputs", [(g.name, g.indices) for g in groups], dim_names)
    return tuple(groups)


def _vector3(r: _Reader, key: str) -> tuple[float, float, float]:
    value = r.get(key, list)
    if len(value) != 3 or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                  and math.isfinite(v) for v in value):
        raise r.fail(f"expected [x, y, z] (three finite numbers), got {value!r}", key)
    return (float(value[0]), float(value[1]), float(value[2]))


def _rotation_dim_names(name: str, rotation: str) -> tuple[str, ...]:
    suffixes = {"axis_angle": ("rx", "ry", "rz"), "euler": ("euler0", "euler1", "euler2"),
                "quaternion": ("qw", "qx", "qy", "qz"),
                "rot6d": tuple(f"r6d{i}" for i in range(6))}[rotation]
    return tuple(f"{name}_{s}" for s in suffixes)


def _end_effectors(top: _Reader, explicit: tuple[Dimension, ...]
                   ) -> tuple[tuple[EndEffector, ...], tuple[Dimension, ...],
                              tuple[PatchGroup, ...]]:
    """Parse ``end_effectors``: the groups, their derived dimensions (appended after
    ``explicit``) and their derived patch groups (position, rotation, gripper separately, as
    FASTer groups action dims by physical meaning)."""
    if "end_effectors" not in top.data:
        return (), (), ()
    explicit_index = {d.name: i for i, d in enumerate(explicit)}
    names: set[str] = set(explicit_index)
    ees: list[EndEffector] = []
    dims: list[Dimension] = []
    groups: list[PatchGroup] = []
    grippers: dict[str, str] = {}
    for r in top.items("end_effectors"):
        r.mapping({"name", "frame", "position", "rotation", "euler_axes", "delta_frame",
                   "gripper", "workspace", "max_linear_speed", "max_angular_speed",
                   "max_seam_translation", "max_seam_rotation", "max_step_translation",
                   "max_step_rotation", "feedback"},
                  {"name", "position", "rotation", "workspace", "max_linear_speed",
                   "max_angular_speed", "feedback"})
        name = r.get("name", str)
        if any(ee.name == name for ee in ees):
            raise r.fail(f"duplicate end effector name {name!r}", "name")
        position = r.choice("position", EE_POSITIONS)
        rotation = r.choice("rotation", ROTATIONS)
        axes = r.get("euler_axes", (str, type(None)), None)
        if rotation == "euler" and axes not in EULER_AXES:
            raise r.fail(f"Euler angles need an axis order: unknown value {axes!r} (expected "
                         f"one of: {', '.join(EULER_AXES)})", "euler_axes")
        if rotation != "euler" and axes is not None:
            raise r.fail(f"'euler_axes' only applies to rotation: euler, not {rotation}",
                         "euler_axes")
        delta = position == "delta"
        for key in ("delta_frame", "max_step_translation", "max_step_rotation"):
            if not delta and key in r.data:
                raise r.fail(f"{key!r} only applies to position: delta", key)
        step_t = r.positive("max_step_translation") if delta else None
        step_r = r.positive("max_step_rotation") if delta else None
        w = r.child("workspace").mapping({"lower", "upper"}, {"lower", "upper"})
        lower, upper = _vector3(w, "lower"), _vector3(w, "upper")
        bad = [a for a, lo, hi in zip("xyz", lower, upper) if lo >= hi]
        if bad:
            raise w.fail(f"inverted workspace in {bad[0]}: lower {list(lower)} upper "
                         f"{list(upper)}")
        lin, ang = r.positive("max_linear_speed"), r.positive("max_angular_speed")
        fb = r.child("feedback").mapping({"topic", "max_age_s"}, {"topic"})
        gripper = r.get("gripper", (str, type(None)), None)
        if gripper is not None:
            if gripper not in explicit_index:
                raise r.fail(f"unknown gripper dimension {gripper!r} (declare it in "
                             f"'dimensions')", "gripper")
            if gripper in grippers:
                raise r.fail(f"gripper {gripper!r} is already the gripper of "
                             f"{grippers[gripper]!r}", "gripper")
            grippers[gripper] = name
        pos_names = tuple(f"{name}_{a}" for a in "xyz")
        rot_names = _rotation_dim_names(name, rotation)
        for n in pos_names + rot_names:
            if n in names:
                raise r.fail(f"derived dimension {n!r} clashes with another dimension", "name")
            names.add(n)
        start = len(explicit) + len(dims)
        pos_idx = tuple(range(start, start + 3))
        rot_idx = tuple(range(start + 3, start + 3 + ROTATION_SIZES[rotation]))
        for n, lo, hi in zip(pos_names, lower, upper):
            lo, hi = (-step_t, step_t) if delta else (lo, hi)
            dims.append(Dimension(n, "m", "position", lo, hi, math.inf if delta else lin, None))
        unit = "rad" if rotation in ("axis_angle", "euler") else "1"
        bound = step_r if (delta and unit == "rad") else math.pi if unit == "rad" else 1.0
        for n in rot_names:
            dims.append(Dimension(n, unit, "position", -bound, bound,
                                  math.inf if delta else ang, None))
        groups.append(PatchGroup(f"{name}_position", pos_names, pos_idx))
        groups.append(PatchGroup(f"{name}_rotation", rot_names, rot_idx))
        if gripper is not None:
            groups.append(PatchGroup(f"{name}_gripper", (gripper,), (explicit_index[gripper],)))
        ees.append(EndEffector(
            name=name, frame=r.get("frame", str, "base_link"), position=position,
            rotation=rotation, euler_axes=axes,
            delta_frame=r.choice("delta_frame", DELTA_FRAMES, "base"),
            workspace_lower=lower, workspace_upper=upper, max_linear_speed=lin,
            max_angular_speed=ang,
            max_seam_translation=r.positive("max_seam_translation", float, 0.02),
            max_seam_rotation=r.positive("max_seam_rotation", float, 0.1),
            max_step_translation=step_t, max_step_rotation=step_r,
            feedback_topic=fb.get("topic", str),
            feedback_max_age_s=fb.positive("max_age_s", float, 0.1),
            gripper=gripper, position_dims=pos_names, rotation_dims=rot_names,
            position_indices=pos_idx, rotation_indices=rot_idx))
    return tuple(ees), tuple(dims), tuple(groups)


def _check_end_effectors(top: _Reader, emb: Embodiment) -> None:
    """End-effector dims go to their own pose_stamped output (exactly one per end effector), and
    no pose feedback topic is also a joint input."""
    owner = {i: ee.name for ee in emb.end_effectors for i in ee.pose_indices}
    for g in emb.outputs:
        for i in g.indices:
            if i in owner and g.end_effector != owner[i]:
                raise top.fail(f"dimension {emb.dimensions[i].name!r} belongs to end effector "
                               f"{owner[i]!r}; route it with a pose_stamped output "
                               f"(end_effector: {owner[i]})", "outputs")
    joint_topics = {j.topic for j in emb.joint_inputs}
    for ee in emb.end_effectors:
        if ee.feedback_topic in joint_topics:
            raise top.fail(f"end effector {ee.name!r}: feedback topic {ee.feedback_topic!r} is "
                           f"also a joint input", "end_effectors")


def _pose_output(r: _Reader, kind: str, end_effectors: tuple[EndEffector, ...]) -> OutputGroup:
    """A ``pose_stamped`` output: ``end_effector`` names the group; its dims are derived."""
    if kind != "pose_stamped":
        raise r.fail(f"'end_effector' only applies to pose_stamped outputs, not {kind}",
                     "end_effector")
    for key in ("dims", "joints", "fields"):
        if key in r.data:
            raise r.fail(f"a pose_stamped output takes no {key!r}: its dimensions are those of "
                         f"its end_effector", key)
    name = r.get("end_effector", str)
    known = {ee.name: ee for ee in end_effectors}
    if name not in known:
        listed = ", ".join(known) or "none declared"
        raise r.fail(f"unknown end effector {name!r} (end_effectors: {listed})", "end_effector")
    ee = known[name]
    return OutputGroup(r.get("name", str), kind, r.get("topic", str), ee.pose_dims,
                       ee.pose_indices, ee.pose_dims, (), end_effector=name, frame_id=ee.frame)


def _check_kinds(top: _Reader, emb: Embodiment) -> None:
    """Velocity dimensions go to twist outputs, positions to position interfaces, and every
    position dimension is observed in some joint input (the executor must know where it is)."""
    for g in emb.outputs:
        for i in g.indices:
            dim = emb.dimensions[i]
            if (dim.kind == "velocity") != (g.kind == "twist_base"):
                raise top.fail(
                    f"dimension {dim.name!r} of kind {dim.kind} cannot go to a {g.kind} output "
                    f"({g.name!r})",
                    "outputs",
                )
    observed = set(emb.state_joints)
    for d in emb.dimensions:
        if d.joint is not None and d.joint not in observed:
            raise top.fail(
                f"dimension {d.name!r} commands joint {d.joint!r}, which no joint input reports",
                "joint_inputs",
            )


def _default_teleop_inputs(dims: tuple[Dimension, ...],
                           outputs: tuple[OutputGroup, ...]) -> list[dict]:
    """One JointState stream for every joint-position dimension (end-effector pose dimensions
    are not joints) and, with a twist_base output, one Twist for the base."""
    out = [{"topic": DEFAULT_TELEOP_JOINT_TOPIC, "type": "JointState"}]
    if any(g.kind == "twist_base" for g in outputs):
        out.append({"topic": DEFAULT_TELEOP_TWIST_TOPIC, "type": "Twist"})
    return out


def _teleop_input(r: _Reader, dims: tuple[Dimension, ...],
                  outputs: tuple[OutputGroup, ...]) -> TeleopInput:
    r.mapping({"topic", "type", "dims", "joints", "fields"}, {"topic", "type"})
    msg_type = r.choice("type", TELEOP_TYPES)
    index = {d.name: i for i, d in enumerate(dims)}
    twist_fields = {dims[i].name: f for g in outputs if g.kind == "twist_base"
                    for i, f in zip(g.indices, g.fields)}
    if msg_type == "Twist":
        if not twist_fields:
            raise r.fail("a Twist teleop input needs a twist_base output to map its fields",
                         "type")
        if "joints" in r.data:
            raise r.fail("'joints' applies to JointState/JointTrajectory inputs, not Twist",
                         "joints")
        names = r.names("dims") if "dims" in r.data else tuple(twist_fields)
        indices = _resolve(r, "dims", names, index)
        for n in names:
            if dims[index[n]].kind != "velocity":
                raise r.fail(f"dimension {n!r} is a position; a Twist drives velocities", "dims")
        fields = r.names("fields") if "fields" in r.data else tuple(twist_fields[n]
                                                                     for n in names)
        bad = [f for f in fields if f not in TWIST_FIELDS]
        if bad:
            raise r.fail(f"unknown twist field {bad[0]!r}", "fields")
        if len(fields) != len(names):
            raise r.fail(f"{len(fields)} fields for {len(names)} dims", "fields")
        return TeleopInput(r.get("topic", str), msg_type, names, indices, fields)
    if "fields" in r.data:
        raise r.fail(f"'fields' only applies to Twist inputs, not {msg_type}", "fields")
    names = r.names("dims") if "dims" in r.data else tuple(
        d.name for d in dims if d.kind == "position" and d.joint is not None)
    indices = _resolve(r, "dims", names, index)
    for n in names:
        if dims[index[n]].kind != "position":
            raise r.fail(f"dimension {n!r} is a velocity; a {msg_type} drives positions", "dims")
    joints = r.names("joints") if "joints" in r.data else tuple(
        dims[index[n]].joint or n for n in names)
    if len(joints) != len(names):
        raise r.fail(f"{len(joints)} joints for {len(names)} dims", "joints")
    return TeleopInput(r.get("topic", str), msg_type, names, indices, joints)


def _handoff(top: _Reader, dims: tuple[Dimension, ...], outputs: tuple[OutputGroup, ...],
             control: ControlSpec, chunk_size: int) -> HandoffSpec:
    data = top.data.get("handoff", {})
    r = _Reader(top.source, {} if data is None else data, "handoff").mapping(
        {"initial_mode", "blend_time_s", "catchup_rate_scale", "activity_threshold",
         "teleop_timeout_s", "policy_timeout_s", "deadman_topic", "deadman_timeout_s",
         "require_deadman", "teleop_inputs"},
        set(),
    )
    chunk_s = chunk_size / control.rate_hz
    blend = r.positive("blend_time_s", float, 0.5)
    if blend >= chunk_s:
        raise r.fail(f"blend_time_s must be shorter than a chunk ({chunk_s:.3f} s), got {blend}",
                     "blend_time_s")
    scale = r.positive("catchup_rate_scale", float, 0.5)
    if scale > 1.0:
        raise r.fail(f"catchup_rate_scale is a fraction of max_rate in (0, 1], got {scale}",
                     "catchup_rate_scale")
    threshold = r.positive("activity_threshold", float, 0.02)
    if threshold >= 1.0:
        raise r.fail(f"activity_threshold is a fraction of each dimension's range in (0, 1), "
                     f"got {threshold}", "activity_threshold")
    if "teleop_inputs" in r.data:
        readers = r.items("teleop_inputs", allow_empty=True)
    else:
        readers = [_Reader(top.source, item, f"handoff.teleop_inputs (default)[{i}]")
                   for i, item in enumerate(_default_teleop_inputs(dims, outputs))]
    inputs, topics, owner = [], set(), {}
    for t in readers:
        item = _teleop_input(t, dims, outputs)
        if item.topic in topics:
            raise t.fail(f"duplicate teleop topic {item.topic!r}", "topic")
        topics.add(item.topic)
        for n in item.dims:
            if n in owner:
                raise t.fail(f"dimension {n!r} is driven by two teleop inputs ({owner[n]!r} and "
                             f"{item.topic!r})", "dims")
            owner[n] = item.topic
        inputs.append(item)
    deadman = r.get("deadman_topic", str, DEFAULT_DEADMAN_TOPIC)
    require = r.get("require_deadman", bool, False)
    if require and not deadman:
        raise r.fail("require_deadman needs a deadman_topic", "require_deadman")
    return HandoffSpec(
        initial_mode=r.choice("initial_mode", MODES, "POLICY"),
        blend_time_s=blend,
        catchup_rate_scale=scale,
        activity_threshold=threshold,
        teleop_timeout_s=r.positive("teleop_timeout_s", float, 0.5),
        policy_timeout_s=r.positive("policy_timeout_s", float, 1.5),
        deadman_topic=deadman,
        deadman_timeout_s=r.positive("deadman_timeout_s", float, 0.3),
        require_deadman=require,
        teleop_inputs=tuple(inputs),
    )


def parse_embodiment(data: Any, source: str = "<memory>") -> Embodiment:
    """Validate a parsed YAML mapping and build the frozen :class:`Embodiment`."""
    top = _Reader(source, data).mapping(
        {"name", "description", "dimensions", "tokenizer", "policy", "control", "cameras",
         "joint_inputs", "outputs", "replay", "end_effectors", "handoff"},
        {"name", "dimensions", "tokenizer", "policy", "control", "joint_inputs", "outputs"},
    )
    dims = _dimensions(top)
    end_effectors, ee_dims, ee_groups = _end_effectors(top, dims)
    dims = dims + ee_dims
    dim_names = tuple(d.name for d in dims)
    tokenizer = _tokenizer(top, dim_names, ee_groups)
    joint_inputs, state = _joint_inputs(top)
    replay = top.get("replay", dict, {})
    control = _control(top, tokenizer.chunk_size)
    outputs = _outputs(top, dim_names, end_effectors)
    emb = Embodiment(
        name=top.get("name", str),
        description=top.get("description", str, ""),
        source=source,
        dimensions=dims,
        state_joints=state,
        tokenizer=tokenizer,
        policy=_policy(top, tokenizer.tokens_per_chunk),
        control=control,
        cameras=_cameras(top),
        joint_inputs=joint_inputs,
        outputs=outputs,
        replay={str(k): str(v) for k, v in replay.items()},
        end_effectors=end_effectors,
        handoff=_handoff(top, dims, outputs, control, tokenizer.chunk_size),
    )
    _check_kinds(top, emb)
    _check_end_effectors(top, emb)
    return emb


def load_embodiment(name_or_path: str | Path) -> Embodiment:
    """Load ``config/<name>.yaml`` (or a YAML path) into a validated :class:`Embodiment`."""
    path = config_path(name_or_path)
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise EmbodimentConfigError(f"{path}: not valid YAML: {exc}") from exc
    return parse_embodiment(data, str(path))
