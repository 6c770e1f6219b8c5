"""Rotation representations of end-effector actions, and the quaternion arithmetic on them.

Policies output rotations as axis-angle (rotation vector, LIBERO / robosuite), Euler angles in a
given axis order (DROID, Bridge), quaternions, or the continuous 6-D representation of Zhou et al.
2019 ("On the Continuity of Rotation Representations in Neural Networks": the first two columns of
the rotation matrix, Gram-Schmidt back to a matrix). This module converts each of them to and from
unit quaternions with ``transforms3d`` (pinned in requirements/base.txt).

Quaternion order: (w, x, y, z) everywhere in faster_ros, as in transforms3d. ROS messages
(geometry_msgs/Quaternion) order them (x, y, z, w); :func:`quat_to_ros` and :func:`quat_from_ros`
are the only functions that reorder, and nothing else may.

Interpolation between rotations is done on the unit sphere (:func:`slerp`), never component-wise:
a component-wise blend of two unit quaternions is not a unit quaternion (half-way between q and
-q' it can even be zero), and a component-wise blend of Euler angles or rotation vectors is not the
shortest rotation between the two.

No rclpy here.
"""

from __future__ import annotations

import numpy as np
from transforms3d import euler, quaternions

ROTATIONS = ("axis_angle", "euler", "quaternion", "rot6d")
ROTATION_SIZES = {"axis_angle": 3, "euler": 3, "quaternion": 4, "rot6d": 6}
EULER_AXES = tuple(sorted(euler._AXES2TUPLE))  # 'sxyz', 'rzyx', ... (s: static, r: rotating)
IDENTITY = np.array([1.0, 0.0, 0.0, 0.0])  # (w, x, y, z)
MIN_QUAT_NORM = 0.5  # a policy "quaternion" shorter than this (or longer than 1/this) is garbage
MIN_6D_NORM = 1e-6  # 6-D columns shorter than this (or parallel) define no rotation


class RotationError(ValueError):
    """Values that define no rotation (zero quaternion, degenerate 6-D columns, non-finite)."""


# ------------------------------------------------------------------------- ROS message order


def quat_to_ros(q_wxyz: np.ndarray) -> np.ndarray:
    """(..., 4) quaternions (w, x, y, z) -> (..., 4) in ROS message order (x, y, z, w)."""
    q = np.asarray(q_wxyz, dtype=np.float64)
    return np.concatenate([q[..., 1:4], q[..., :1]], axis=-1)


def quat_from_ros(q_xyzw: np.ndarray) -> np.ndarray:
    """(..., 4) quaternions in ROS message order (x, y, z, w) -> (..., 4) (w, x, y, z)."""
    q = np.asarray(q_xyzw, dtype=np.float64)
    return np.concatenate([q[..., 3:4], q[..., :3]], axis=-1)


def pose_from_message(msg) -> tuple[np.ndarray, np.ndarray]:
    """A geometry_msgs/PoseStamped (rclpy's or a rosbags-deserialised one: only the fields are
    read) -> (position (3,) m, quaternion (4,) w, x, y, z), reordered by :func:`quat_from_ros`.
    The one reader of message orientations besides faster_ros.ros.conversions' writer."""
    p, o = msg.pose.position, msg.pose.orientation
    return (np.array([p.x, p.y, p.z], dtype=np.float64),
            quat_from_ros(np.array([o.x, o.y, o.z, o.w], dtype=np.float64)))


# ------------------------------------------------------------------------ quaternion arithmetic


def normalize(q: np.ndarray) -> np.ndarray:
    """(..., 4) unit quaternions; a zero or non-finite quaternion becomes NaN (never identity)."""
    q = np.asarray(q, dtype=np.float64)
    n = np.linalg.norm(q, axis=-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where((n > 0) & np.isfinite(n), q / n, np.nan)


def canonical(q: np.ndarray) -> np.ndarray:
    """(..., 4) the same rotations with w >= 0 (q and -q are the same rotation)."""
    q = np.asarray(q, dtype=np.float64)
    return np.where(q[..., :1] < 0, -q, q)


def make_continuous(q: np.ndarray, reference: np.ndarray | None = None) -> np.ndarray:
    """(K, 4) the same rotations, signs flipped so that consecutive quaternions (and the first one
    and ``reference``) lie in the same hemisphere: no jump of the components from q to -q."""
    out = np.array(q, dtype=np.float64)
    prev = None if reference is None else np.asarray(reference, dtype=np.float64)
    for k in range(len(out)):
        if prev is not None and np.dot(out[k], prev) < 0:
            out[k] = -out[k]
        prev = out[k]
    return out


def multiply(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(..., 4) Hamilton products ``a * b`` (the rotation b, then a, in a fixed frame)."""
    a, b = np.broadcast_arrays(np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64))
    w1, x1, y1, z1 = np.moveaxis(a, -1, 0)
    w2, x2, y2, z2 = np.moveaxis(b, -1, 0)
    return np.stack([
        w1 * w2 - x1 * x2 - y1 * y2 - z1 * z2,
        w1 * x2 + x1 * w2 + y1 * z2 - z1 * y2,
        w1 * y2 - x1 * z2 + y1 * w2 + z1 * x2,
        w1 * z2 + x1 * y2 - y1 * x2 + z1 * w2,
    ], axis=-1)


def conjugate(q: np.ndarray) -> np.ndarray:
    """(..., 4) inverse rotations of unit quaternions."""
    return np.asarray(q, dtype=np.float64) * np.array([1.0, -1.0, -1.0, -1.0])


def angle_between(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(...) geodesic angle in [0, pi] between the rotations of unit quaternions ``a`` and ``b``:
    ``4 atan2(|a - s b|, |a + s b|)`` with s the sign of their dot product (the arc between the
    quaternions on the unit sphere is half the rotation angle, and the chord gives a quarter of
    it), accurate for tiny and near-pi angles alike (``2 acos(|a . b|)`` loses half the digits
    near 0)."""
    a, b = np.broadcast_arrays(np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64))
    s = np.where(np.sum(a * b, axis=-1, keepdims=True) < 0, -1.0, 1.0)
    return 4.0 * np.arctan2(np.linalg.norm(a - s * b, axis=-1),
                            np.linalg.norm(a + s * b, axis=-1))


def slerp(q0: np.ndarray, q1: np.ndarray, t: np.ndarray | float) -> np.ndarray:
    """(..., 4) spherical linear interpolation from unit ``q0`` (t = 0) to ``q1`` (t = 1) along the
    shorter arc, at constant angular speed. Arrays broadcast (``t`` over the leading axes). The
    result is a unit quaternion for every t in [0, 1]; q1's sign is flipped when needed."""
    q0 = np.asarray(q0, dtype=np.float64)
    q1 = np.asarray(q1, dtype=np.float64)
    t = np.asarray(t, dtype=np.float64)[..., None]
    dot = np.sum(q0 * q1, axis=-1, keepdims=True)
    q1 = np.where(dot < 0, -q1, q1)
    dot = np.abs(dot)
    theta = 0.5 * angle_between(q0, q1)[..., None]  # half the rotation angle, in [0, pi/2]
    sin_theta = np.sin(theta)
    small = sin_theta < 1e-9
    safe = np.where(small, 1.0, sin_theta)
    w0 = np.where(small, 1.0 - t, np.sin((1.0 - t) * theta) / safe)
    w1 = np.where(small, t, np.sin(t * theta) / safe)
    return normalize(w0 * q0 + w1 * q1)


# ---------------------------------------------------------------------------- representations


def rotation_size(representation: str) -> int:
    if representation not in ROTATION_SIZES:
        raise ValueError(f"unknown rotation representation {representation!r} (expected one of: "
                         f"{', '.join(ROTATIONS)})")
    return ROTATION_SIZES[representation]


def _check_axes(representation: str, axes: str | None) -> None:
    if representation == "euler" and axes not in euler._AXES2TUPLE:
        raise ValueError(f"Euler angles need an axis order, one of {', '.join(EULER_AXES)}; got "
                         f"{axes!r}")


def to_quat(values: np.ndarray, representation: str, axes: str | None = None) -> np.ndarray:
    """One rotation in ``representation`` -> unit quaternion (w, x, y, z) with w >= 0.

    axis_angle: rotation vector (axis * angle, rad); euler: three angles (rad) in the transforms3d
    axis order ``axes`` (e.g. 'sxyz': static x, then y, then z); quaternion: (w, x, y, z), any
    norm in [0.5, 2] (normalised); rot6d: the first two columns of the rotation matrix,
    ``[R00, R10, R20, R01, R11, R21]`` (Gram-Schmidt orthonormalised).
    Raises :class:`RotationError` for values that define no rotation.
    """
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    if v.size != rotation_size(representation):
        raise ValueError(f"{representation} takes {ROTATION_SIZES[representation]} values, got "
                         f"{v.size}")
    _check_axes(representation, axes)
    if not np.all(np.isfinite(v)):
        raise RotationError(f"non-finite {representation} values {v.tolist()}")
    if representation == "axis_angle":
        angle = float(np.linalg.norm(v))
        q = IDENTITY.copy() if angle == 0.0 else quaternions.axangle2quat(v / angle, angle)
    elif representation == "euler":
        q = euler.euler2quat(v[0], v[1], v[2], axes)
    elif representation == "quaternion":
        n = float(np.linalg.norm(v))
        if not MIN_QUAT_NORM <= n <= 1.0 / MIN_QUAT_NORM:
            raise RotationError(f"quaternion {v.tolist()} has norm {n:.3g}, not close to 1")
        q = v / n
    else:
        q = quaternions.mat2quat(_rot6d_to_matrix(v))
    return canonical(normalize(q))


def from_quat(q: np.ndarray, representation: str, axes: str | None = None) -> np.ndarray:
    """Unit quaternion (w, x, y, z) -> the rotation in ``representation`` (see :func:`to_quat`).

    Rotation vectors come out with angle in [0, pi] (at exactly pi, r and -r are both right);
    Euler angles as transforms3d returns them (at gimbal lock one angle is set to 0); quaternions
    with w >= 0."""
    _check_axes(representation, axes)
    q = canonical(normalize(np.asarray(q, dtype=np.float64).reshape(4)))
    if not np.all(np.isfinite(q)):
        raise RotationError(f"not a quaternion: {np.asarray(q).tolist()}")
    if representation == "axis_angle":
        # not transforms3d's quat2axangle: its acos loses small angles (1e-7 rad comes back 1 %
        # short, 1e-9 rad as 0), and small per-step deltas are what delta policies output
        return rotation_vector(q)
    if representation == "euler":
        return _quat_to_euler(q, axes)
    if representation == "quaternion":
        return q
    if representation == "rot6d":
        return quaternions.quat2mat(q)[:, :2].T.reshape(6)
    raise ValueError(f"unknown rotation representation {representation!r}")


GIMBAL_LOCK_TOL = 1e-8  # cos(middle angle) below this is treated as exactly at gimbal lock


def _quat_to_euler(q: np.ndarray, axes: str) -> np.ndarray:
    """transforms3d's matrix -> Euler angles, with a wider gimbal-lock band. transforms3d takes
    its lock branch only when cos(middle angle) is below 4 machine epsilons; just above that, the
    first and last angles come from atan2 of rounding noise and the rotation is wrong (seen: a
    rotation at pitch pi/2 that went through a 6-D representation came back 0.10 rad off). Here
    the entries that scale with cos(middle angle) are zeroed when it is below
    GIMBAL_LOCK_TOL, which costs at most about that much (rad) of accuracy."""
    m = quaternions.quat2mat(q)
    first, parity, repetition, _ = euler._AXES2TUPLE[axes]
    i = first
    j = euler._NEXT_AXIS[i + parity]
    k = euler._NEXT_AXIS[i - parity + 1]
    a, b = (m[i, j], m[i, k]) if repetition else (m[i, i], m[j, i])
    if 0.0 < np.hypot(a, b) < GIMBAL_LOCK_TOL:
        if repetition:
            m[i, j] = m[i, k] = 0.0
        else:
            m[i, i] = m[j, i] = 0.0
    return np.array(euler.mat2euler(m, axes), dtype=np.float64)


def _rot6d_to_matrix(v: np.ndarray) -> np.ndarray:
    a1, a2 = v[:3], v[3:]
    n1 = np.linalg.norm(a1)
    if n1 < MIN_6D_NORM:
        raise RotationError(f"6-D rotation {v.tolist()}: first column is zero")
    b1 = a1 / n1
    u2 = a2 - np.dot(b1, a2) * b1
    n2 = np.linalg.norm(u2)
    if n2 < MIN_6D_NORM:
        raise RotationError(f"6-D rotation {v.tolist()}: columns are parallel or the second is "
                            f"zero")
    b2 = u2 / n2
    return np.stack([b1, b2, np.cross(b1, b2)], axis=1)


def to_quats(values: np.ndarray, representation: str, axes: str | None = None
             ) -> tuple[np.ndarray, list[tuple[int, str]]]:
    """(K, k) rotations -> (K, 4) unit quaternions, NaN rows where a step defines no rotation,
    and the (step, reason) list of those steps."""
    values = np.asarray(values, dtype=np.float64)
    out = np.full((len(values), 4), np.nan)
    problems: list[tuple[int, str]] = []
    for k, v in enumerate(values):
        try:
            out[k] = to_quat(v, representation, axes)
        except RotationError as exc:
            problems.append((k, str(exc)))
    return out, problems


def from_quats(q: np.ndarray, representation: str, axes: str | None = None) -> np.ndarray:
    """(K, 4) unit quaternions -> (K, k) in ``representation``."""
    return np.stack([from_quat(row, representation, axes) for row in np.asarray(q)])


def rotation_vector(q: np.ndarray) -> np.ndarray:
    """(..., 4) unit quaternions -> (..., 3) rotation vectors with angle in [0, pi]."""
    q = canonical(np.asarray(q, dtype=np.float64))
    v = q[..., 1:]
    s = np.linalg.norm(v, axis=-1, keepdims=True)
    angle = 2.0 * np.arctan2(s, q[..., :1])
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(s > 1e-12, v / np.where(s > 0, s, 1.0) * angle, 2.0 * v)

