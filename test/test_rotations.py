"""Rotation representations (faster_ros.rotations): round trips between every pair, including the
near-singular cases (rotations of pi, gimbal lock of every Euler order, tiny angles), the single
ROS quaternion-order helper, slerp, and degenerate input refused."""

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from transforms3d import axangles, euler, quaternions

from faster_ros import rotations as rot

AXES = ["sxyz", "rzyx", "szxz", "rxyx"]  # Tait-Bryan and proper, static and rotating
REPS = [("axis_angle", None), ("quaternion", None), ("rot6d", None)] + [("euler", a)
                                                                         for a in AXES]


def _q(axis, angle):
    return rot.canonical(quaternions.axangle2quat(np.asarray(axis, float), angle))


def special_rotations():
    """Identity, tiny angles, rotations of pi (and just under) about axes and diagonals, and
    the gimbal-lock orientation of each Euler order."""
    out = [rot.IDENTITY, _q([0, 0, 1], 1e-12), _q([1, 2, 3], 1e-7)]
    for axis in ([1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0], [1, -2, 3]):
        out += [_q(axis, np.pi), _q(axis, np.pi - 1e-9), _q(axis, np.pi - 1e-4)]
    for axes in rot.EULER_AXES:  # middle angle at pi/2 (Tait-Bryan) or 0 / pi (proper)
        for mid in (np.pi / 2, -np.pi / 2, 0.0, np.pi):
            out.append(rot.canonical(euler.euler2quat(0.3, mid, -0.7, axes)))
    rng = np.random.default_rng(0)
    out += list(rot.normalize(rng.normal(size=(20, 4))))
    return np.array(out)


SPECIAL = special_rotations()


@pytest.mark.parametrize("a,b", list(itertools.product(REPS, REPS)),
                         ids=lambda r: f"{r[0]}-{r[1]}" if r[1] else r[0])
def test_round_trip_between_every_pair_of_representations(a, b):
    worst = 0.0
    for q in SPECIAL:
        va = rot.from_quat(q, *a)
        vb = rot.from_quat(rot.to_quat(va, *a), *b)
        back = rot.to_quat(rot.from_quat(rot.to_quat(vb, *b), *a), *a)
        worst = max(worst, float(rot.angle_between(back, q)))
    assert worst < 1e-6, f"{a} -> {b} -> {a}: worst error {worst:.2e} rad"


@pytest.mark.parametrize("axes", rot.EULER_AXES)
def test_every_euler_order_round_trips_at_gimbal_lock(axes):
    proper = axes[1] == axes[3]
    for mid in ((0.0, np.pi) if proper else (np.pi / 2, -np.pi / 2)):
        for first, last in ((0.4, -1.1), (2.5, 3.0)):
            m = euler.euler2mat(first, mid, last, axes)
            angles = rot.from_quat(rot.to_quat([first, mid, last], "euler", axes), "euler", axes)
            assert np.allclose(euler.euler2mat(*angles, axes), m, atol=1e-6)


def test_conversions_agree_with_transforms3d_matrices():
    rng = np.random.default_rng(1)
    for _ in range(20):
        v = rng.normal(size=3)
        q = rot.to_quat(v, "axis_angle")
        angle = np.linalg.norm(v)
        assert np.allclose(quaternions.quat2mat(q), axangles.axangle2mat(v / angle, angle))
        six = rot.from_quat(q, "rot6d")
        assert np.allclose(six, quaternions.quat2mat(q)[:, :2].T.reshape(6))
        # a 6-D rotation off the manifold (scaled, skewed columns) is Gram-Schmidt projected
        noisy = six * 3.0 + np.r_[0, 0, 0, six[:3] * 0.5]
        assert rot.angle_between(rot.to_quat(noisy, "rot6d"), q) < 1e-9


def test_axis_angle_of_pi_and_tiny_angles():
    v = rot.from_quat(_q([0, 0, 1], np.pi), "axis_angle")
    assert np.isclose(np.linalg.norm(v), np.pi) and np.allclose(np.abs(v), [0, 0, np.pi])
    assert np.allclose(rot.from_quat(rot.IDENTITY, "axis_angle"), 0.0)
    tiny = rot.from_quat(_q([1, 0, 0], 1e-12), "axis_angle")
    assert np.allclose(tiny, [1e-12, 0, 0], atol=1e-15)
    assert np.allclose(rot.rotation_vector(_q([0, 1, 0], 3.0)), [0, 3.0, 0])


def test_ros_order_helper_is_the_one_reordering():
    q = np.array([0.1, 0.2, 0.3, 0.9])  # w, x, y, z
    assert rot.quat_to_ros(q).tolist() == [0.2, 0.3, 0.9, 0.1]  # x, y, z, w
    assert rot.quat_from_ros(rot.quat_to_ros(q)).tolist() == q.tolist()
    assert rot.quat_to_ros(rot.IDENTITY).tolist() == [0.0, 0.0, 0.0, 1.0]
    batch = rot.normalize(np.random.default_rng(2).normal(size=(5, 4)))
    assert np.array_equal(rot.quat_from_ros(rot.quat_to_ros(batch)), batch)


@pytest.mark.parametrize("rep,values,match", [
    ("quaternion", [0, 0, 0, 0], "norm 0, not close to 1"),
    ("quaternion", [0.1, 0.1, 0, 0], "not close to 1"),
    ("rot6d", [1, 0, 0, 2, 0, 0], "parallel"),
    ("rot6d", [0, 0, 0, 0, 1, 0], "first column is zero"),
    ("axis_angle", [np.nan, 0, 0], "non-finite"),
])
def test_values_that_define_no_rotation_are_refused(rep, values, match):
    with pytest.raises(rot.RotationError, match=match):
        rot.to_quat(values, rep)
    quats, problems = rot.to_quats(np.array([values, rot.from_quat(rot.IDENTITY, rep)]), rep)
    assert [k for k, _ in problems] == [0] and np.isnan(quats[0]).all()
    assert np.allclose(quats[1], rot.IDENTITY)


def test_euler_needs_a_known_axis_order():
    with pytest.raises(ValueError, match="axis order"):
        rot.to_quat([0, 0, 0], "euler", "xyz")


def test_slerp_moves_on_the_sphere_at_constant_speed_along_the_short_arc():
    q0, q1 = _q([0, 0, 1], 0.2), _q([1, 1, 0], 2.5)
    total = rot.angle_between(q0, q1)
    t = np.linspace(0, 1, 11)
    path = rot.slerp(q0, q1, t)
    assert np.allclose(np.linalg.norm(path, axis=1), 1.0, atol=1e-12)
    assert np.allclose(rot.angle_between(q0, path), t * total, atol=1e-9)
    assert rot.angle_between(path[-1], q1) < 1e-9
    # -q1 is the same rotation: the same path (short arc), not the long way round
    assert np.allclose(rot.angle_between(rot.slerp(q0, -q1, t), path), 0.0, atol=1e-9)
    # nearly equal rotations: no division by ~0
    near = rot.slerp(q0, rot.normalize(q0 + 1e-13), 0.5)
    assert np.isfinite(near).all() and rot.angle_between(near, q0) < 1e-9


def test_component_wise_interpolation_leaves_the_unit_sphere_slerp_does_not():
    """The reason every rotation blend goes through slerp."""
    q0, q1 = rot.IDENTITY, _q([0, 0, 1], np.radians(170))
    half = 0.5 * q0 + 0.5 * q1
    assert np.linalg.norm(half) < 0.75  # 0.54: far off the sphere, and not a rotation step
    flipped = 0.5 * q0 + 0.5 * (-rot.IDENTITY)  # q and -q: the same rotation, blended to 0
    assert np.linalg.norm(flipped) == 0.0
    assert np.isclose(np.linalg.norm(rot.slerp(q0, q1, 0.5)), 1.0)
    assert np.isclose(rot.angle_between(rot.slerp(q0, q1, 0.5), q0), np.radians(85))


unit_quats = st.lists(st.floats(-1, 1, allow_nan=False), min_size=4, max_size=4).filter(
    lambda v: np.linalg.norm(v) > 0.1).map(lambda v: rot.normalize(np.array(v)))


@settings(max_examples=150, deadline=None)
@given(q=unit_quats, rep=st.sampled_from(REPS + [("euler", a) for a in rot.EULER_AXES]))
def test_property_every_representation_round_trips(q, rep):
    back = rot.to_quat(rot.from_quat(q, *rep), *rep)
    assert np.isclose(np.linalg.norm(back), 1.0)
    assert rot.angle_between(back, q) < 1e-6


@settings(max_examples=100, deadline=None)
@given(a=unit_quats, b=unit_quats, t=st.floats(0, 1))
def test_property_slerp_stays_unit_and_between(a, b, t):
    q = rot.slerp(a, b, t)
    assert np.isclose(np.linalg.norm(q), 1.0)
    total = rot.angle_between(a, b)
    assert np.isclose(rot.angle_between(a, q) + rot.angle_between(q, b), total, atol=1e-6)
