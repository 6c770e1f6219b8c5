"""Pure conversions between ROS messages and the arrays of the core. No node state here.

Arrays go into messages as bytes (``array.array('f', a.tobytes())`` for float32[] fields):
assigning an ndarray element by element costs tens of ms per image or chunk.
"""

from __future__ import annotations

import array
import math
from collections.abc import Sequence

import numpy as np
from builtin_interfaces.msg import Duration, Time
from geometry_msgs.msg import PoseStamped, TwistStamped
from sensor_msgs.msg import CompressedImage, Image, JointState
from std_msgs.msg import Float64MultiArray
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from faster_msgs.msg import ActionChunk
from faster_ros.control import Chunk
from faster_ros.data.images import compressed_to_rgb as decode_compressed
from faster_ros.data.images import image_to_rgb as decode_raw
from faster_ros.embodiment import OutputGroup
from faster_ros.rotations import pose_from_message, quat_to_ros

# ------------------------------------------------------------------------------------------ time


def to_sec(stamp: Time) -> float:
    return stamp.sec + stamp.nanosec * 1e-9


def to_time(seconds: float) -> Time:
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"cannot convert {seconds!r} s to builtin_interfaces/Time")
    ns = int(round(seconds * 1e9))
    return Time(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)


def to_duration(seconds: float) -> Duration:
    ns = int(round(seconds * 1e9))
    return Duration(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)


# ---------------------------------------------------------------------------------------- images


def image_to_rgb(msg: Image) -> np.ndarray:
    """sensor_msgs/Image in any supported encoding -> (H, W, 3) uint8 RGB."""
    return decode_raw(msg.encoding, msg.height, msg.width, msg.step, msg.data,
                      is_bigendian=bool(msg.is_bigendian))


def compressed_to_rgb(msg: CompressedImage) -> np.ndarray:
    """sensor_msgs/CompressedImage (JPEG/PNG) -> (H, W, 3) uint8 RGB."""
    return decode_compressed(msg.format, msg.data)


def lazy_compressed_to_rgb(msg: CompressedImage):
    """A zero-argument decoder for a CompressedImage (the observation assembler calls it only for
    the frames it uses). Empty data is rejected at once."""
    data, fmt = bytes(msg.data), msg.format
    if not data:
        raise ValueError(f"CompressedImage ({fmt!r}) carries no data")

    def decode() -> np.ndarray:
        return decode_compressed(fmt, data)

    return decode


def rgb_to_image(rgb: np.ndarray, stamp: Time, frame_id: str = "") -> Image:
    msg = Image()
    msg.header.stamp = stamp
    msg.header.frame_id = frame_id
    msg.height, msg.width = int(rgb.shape[0]), int(rgb.shape[1])
    msg.encoding = "rgb8"
    msg.step = msg.width * 3
    msg.data = np.ascontiguousarray(rgb, dtype=np.uint8).tobytes()
    return msg


# ---------------------------------------------------------------------------------------- joints


def joint_state_positions(msg: JointState) -> tuple[list[str], np.ndarray]:
    """Names and positions of a JointState; a length mismatch is an error, not a silent zip."""
    names = list(msg.name)
    positions = np.asarray(msg.position, dtype=np.float64)
    if len(names) != len(positions):
        raise ValueError(
            f"JointState has {len(names)} names but {len(positions)} positions"
        )
    return names, positions


def joint_state(names: Sequence[str], positions: np.ndarray, stamp: Time,
                velocities: np.ndarray | None = None) -> JointState:
    msg = JointState()
    msg.header.stamp = stamp
    msg.name = list(names)
    msg.position = [float(v) for v in positions]
    if velocities is not None:
        msg.velocity = [float(v) for v in velocities]
    return msg


# ---------------------------------------------------------------------------------------- chunks


def chunk_to_msg(
    chunk: Chunk,
    *,
    embodiment: str,
    model_id: str,
    dimension_names: Sequence[str],
    codes: np.ndarray | None = None,
    timing: dict | None = None,
    invalid_tokens: int = 0,
) -> ActionChunk:
    """Core chunk (+ codes (N_c, C_h, C_a) and the policy's timing breakdown) -> ActionChunk."""
    positions = np.asarray(chunk.positions, dtype=np.float32)
    horizon, dims = positions.shape
    if dims != len(dimension_names):
        raise ValueError(f"chunk has {dims} dims but {len(dimension_names)} dimension names")
    msg = ActionChunk()
    msg.header.stamp = to_time(chunk.start_time)
    msg.embodiment = embodiment
    msg.model_id = model_id
    msg.chunk_start = to_time(chunk.start_time)
    msg.step_dt = float(chunk.dt)
    msg.dimension_names = list(dimension_names)
    msg.horizon, msg.dims = horizon, dims
    msg.positions = array.array("f", positions.tobytes())
    msg.sequence = int(chunk.sequence)
    msg.invalid_tokens = int(invalid_tokens)
    if codes is not None:
        codes = np.asarray(codes, dtype=np.int32)
        msg.n_codebooks, msg.code_horizon, msg.code_dims = (int(s) for s in codes.shape)
        msg.codes = array.array("i", codes.tobytes())
    timing = timing or {}
    msg.t_image_ms = float(timing.get("image_ms", 0.0))
    msg.t_context_ms = float(timing.get("context_ms", 0.0))
    msg.t_block_ms = array.array("f", [float(v) for v in timing.get("block_ms", [])])
    msg.t_detokenize_ms = float(timing.get("detokenize_ms", 0.0))
    msg.t_total_ms = float(timing.get("total_ms", 0.0))
    return msg


def msg_to_chunk(msg: ActionChunk, dimension_names: Sequence[str]) -> Chunk:
    """ActionChunk -> core Chunk, checking it is meant for this embodiment's dimensions."""
    if list(msg.dimension_names) != list(dimension_names):
        raise ValueError(
            "ActionChunk dimension names do not match the embodiment: "
            f"got {list(msg.dimension_names)[:4]}..., expected {list(dimension_names)[:4]}..."
        )
    positions = np.frombuffer(bytes(np.asarray(msg.positions, dtype=np.float32)), np.float32)
    if positions.size != msg.horizon * msg.dims or msg.dims != len(dimension_names):
        raise ValueError(
            f"ActionChunk holds {positions.size} values, header says {msg.horizon} x {msg.dims}"
        )
    if not msg.step_dt > 0:
        raise ValueError(f"ActionChunk step_dt must be > 0, got {msg.step_dt}")
    return Chunk(
        positions=positions.reshape(msg.horizon, msg.dims).astype(np.float64),
        start_time=to_sec(msg.chunk_start),
        dt=float(msg.step_dt),
        sequence=int(msg.sequence),
    )


# -------------------------------------------------------------------------------------- commands


def joint_trajectory(
    group: OutputGroup,
    start_time: float,
    times: np.ndarray,
    positions: np.ndarray,
    velocities: np.ndarray,
) -> JointTrajectory:
    """Points (K,) absolute ``times`` and (K, D_full) ``positions``/``velocities`` -> the group's
    JointTrajectory with header.stamp = start_time and time_from_start = times - start_time."""
    msg = JointTrajectory()
    msg.header.stamp = to_time(start_time)
    msg.joint_names = list(group.joints)
    idx = list(group.indices)
    for t, p, v in zip(times, positions[:, idx], velocities[:, idx]):
        point = JointTrajectoryPoint()
        point.positions = [float(x) for x in p]
        point.velocities = [float(x) for x in v]
        point.time_from_start = to_duration(float(t) - start_time)
        msg.points.append(point)
    return msg


def pose_stamped(position: np.ndarray, quat_wxyz: np.ndarray, stamp: Time,
                 frame_id: str = "") -> PoseStamped:
    """Position (3,) in m and a quaternion (w, x, y, z) -> geometry_msgs/PoseStamped (whose
    orientation is x, y, z, w: reordered by faster_ros.rotations.quat_to_ros, nowhere else)."""
    msg = PoseStamped()
    msg.header.stamp = stamp
    msg.header.frame_id = frame_id
    p = msg.pose.position
    p.x, p.y, p.z = (float(v) for v in position)
    o = msg.pose.orientation
    o.x, o.y, o.z, o.w = (float(v) for v in quat_to_ros(quat_wxyz))
    return msg


def pose_from_msg(msg: PoseStamped) -> tuple[np.ndarray, np.ndarray]:
    """geometry_msgs/PoseStamped -> (position (3,) m, quaternion (4,) w, x, y, z)."""
    return pose_from_message(msg)


def group_command(group: OutputGroup, positions: np.ndarray, velocities: np.ndarray,
                  stamp: Time):
    """One streamed setpoint of a non-trajectory group, from full-width (D,) arrays."""
    idx = list(group.indices)
    values, vel = positions[idx], velocities[idx]
    if group.kind in ("joint_state_stream", "gripper_position"):
        return joint_state(group.joints, values, stamp, vel)
    if group.kind == "forward_command":
        msg = Float64MultiArray()
        msg.data = [float(v) for v in values]
        return msg
    if group.kind == "twist_base":
        msg = TwistStamped()
        msg.header.stamp = stamp
        for name, value in zip(group.fields, values):
            part, axis = name.split(".")
            setattr(getattr(msg.twist, part), axis, float(value))
        return msg
    if group.kind == "pose_stamped":  # command space: x, y, z, qw, qx, qy, qz
        return pose_stamped(values[:3], values[3:7], stamp, group.frame_id)
    raise ValueError(f"group {group.name!r} of kind {group.kind} is not streamed")


MESSAGE_TYPES = {
    "joint_trajectory": JointTrajectory,
    "joint_state_stream": JointState,
    "gripper_position": JointState,
    "forward_command": Float64MultiArray,
    "twist_base": TwistStamped,
    "pose_stamped": PoseStamped,
}


def command_values(group: OutputGroup, msg) -> np.ndarray | None:
    """The group's values carried by a command message (mock robot, teleop, recording checks);
    for a JointTrajectory, its first point."""
    if group.kind == "joint_trajectory":
        if not msg.points:
            return None
        order = [list(msg.joint_names).index(j) for j in group.joints]
        return np.asarray(msg.points[0].positions, dtype=np.float64)[order]
    if group.kind in ("joint_state_stream", "gripper_position"):
        order = [list(msg.name).index(j) for j in group.joints] if msg.name else None
        values = np.asarray(msg.position, dtype=np.float64)
        return values[order] if order is not None else values[: len(group.joints)]
    if group.kind == "forward_command":
        return np.asarray(msg.data, dtype=np.float64)
    if group.kind == "twist_base":
        return np.array([getattr(getattr(msg.twist, f.split(".")[0]), f.split(".")[1])
                         for f in group.fields], dtype=np.float64)
    if group.kind == "pose_stamped":  # x, y, z, qw, qx, qy, qz (the command space's order)
        position, quat = pose_from_msg(msg)
        return np.concatenate([position, quat])
    raise ValueError(f"unknown group kind {group.kind}")
