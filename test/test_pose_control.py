"""End-effector control core (faster_ros.control.pose): policy -> command space, delta
accumulation from the commanded pose, the pose safety gate (workspace, translational and angular
speed, seam jumps in both, unit quaternions), slerp seam blending and interpolation, and the
metrics in metres and radians."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from faster_ros import rotations as rot
from faster_ros.control import Chunk
from faster_ros.control.blending import blend_seam
from faster_ros.control.pose import CommandSpace, PoseChunkExecutor, make_executor
from faster_ros.control.pose_metrics import end_effector_errors
from faster_ros.embodiment import load_embodiment, parse_embodiment
from faster_ros.paths import config_path

EMB = load_embodiment("r1lite_ee")
DT = EMB.control.dt


def _absolute(rotation: str, axes=None):
    import yaml

    data = yaml.safe_load(config_path("r1lite_ee").read_text())
    for ee in data["end_effectors"]:
        ee.update(position="absolute", rotation=rotation)
        for key in ("delta_frame", "max_step_translation", "max_step_rotation"):
            ee.pop(key)
        if axes:
            ee["euler_axes"] = axes
    return parse_embodiment(data, "absolute.yaml")


def _home(ex) -> np.ndarray:
    m = np.zeros(ex.embodiment.action_dim)
    m[:2] = 50.0
    for s in ex.space.slots:
        ee = s.end_effector
        m[list(s.position)] = 0.5 * (np.array(ee.workspace_lower) + np.array(ee.workspace_upper))
        m[list(s.quaternion)] = rot.canonical(rot.to_quat([0.3, -0.2, 2.0], "axis_angle"))
    return m


def _delta_chunk(dp=(0.0, 0.0, 0.0), drv=(0.0, 0.0, 0.0), start=0.0, h=32, seq=0):
    p = np.zeros((h, EMB.action_dim))
    p[:, :2] = 50.0
    for ee in EMB.end_effectors:
        p[:, list(ee.position_indices)] = dp
        p[:, list(ee.rotation_indices)] = drv
    return Chunk(p, start, DT, sequence=seq)


def _executor(emb=EMB):
    ex = make_executor(emb)
    assert isinstance(ex, PoseChunkExecutor)
    ex.set_measured(_home(ex), 0.0)
    return ex


def test_command_space_layout():
    space = CommandSpace(EMB)
    emb = space.embodiment
    assert emb.action_dim == 2 + 2 * 7 and emb.dim_names[2:9] == (
        "left_ee_x", "left_ee_y", "left_ee_z", "left_ee_qw", "left_ee_qx", "left_ee_qy",
        "left_ee_qz")
    out = {g.name: g for g in emb.outputs}
    assert out["left_ee"].indices == tuple(range(2, 9)) and out["left_ee"].kind == "pose_stamped"
    assert out["right_gripper"].indices == (1,)
    assert emb.lower[2] == 0.15 and emb.upper[4] == 0.35  # the workspace box
    assert make_executor(load_embodiment("single_arm")).__class__ is not PoseChunkExecutor


def test_deltas_accumulate_from_the_commanded_pose():
    ex = _executor()
    base = _home(ex)
    chunk = _delta_chunk(dp=(0.004, -0.002, 0.001), drv=(0.0, 0.0, 0.01))
    cmd, problems = ex.space.to_command(chunk, base)
    assert problems == []
    slot = ex.space.slots[0]
    p, q = cmd.positions[:, list(slot.position)], cmd.positions[:, list(slot.quaternion)]
    assert np.allclose(p[-1] - base[list(slot.position)], 32 * np.array([0.004, -0.002, 0.001]))
    assert np.allclose(np.linalg.norm(q, axis=1), 1.0)
    # base-frame deltas about z: 32 steps of 0.01 rad
    expected = rot.multiply(rot.to_quat([0, 0, 0.32], "axis_angle"), base[list(slot.quaternion)])
    assert rot.angle_between(q[-1], expected) < 1e-9
    # tool frame composes on the right: a different pose for a non-coaxial delta
    tool = rot.multiply(base[list(slot.quaternion)], rot.to_quat([0, 0, 0.32], "axis_angle"))
    assert rot.angle_between(q[-1], tool) > 0.05


def test_quaternions_stay_in_the_commands_hemisphere():
    ex = _executor(_absolute("quaternion"))
    base = _home(ex)
    slot = ex.space.slots[0]
    base[list(slot.quaternion)] *= -1  # the same rotation, w < 0
    p = np.tile(base[:2], (4, 1))
    pose = np.r_[base[list(slot.position)], -base[list(slot.quaternion)]]
    rows = np.tile(np.r_[base[:2], pose, pose], (4, 1))
    cmd, _ = ex.space.to_command(Chunk(rows, 0.0, DT), base)
    assert np.dot(cmd.positions[0, list(slot.quaternion)], base[list(slot.quaternion)]) > 0.99
    assert p.shape == (4, 2)


@pytest.mark.parametrize("rotation,axes", [("axis_angle", None), ("euler", "sxyz"),
                                           ("quaternion", None), ("rot6d", None)])
def test_absolute_chunks_in_every_representation_execute(rotation, axes):
    emb = _absolute(rotation, axes)
    ex = _executor(emb)
    home = _home(ex)
    rows = []
    for k in range(32):  # a slow turn about z from the home orientation, 0.3 rad/s
        row = np.zeros(emb.action_dim)
        row[:2] = 50.0
        for slot, ee in zip(ex.space.slots, emb.end_effectors):
            q = rot.multiply(rot.to_quat([0, 0, 0.3 * k * DT], "axis_angle"),
                             home[list(slot.quaternion)])
            row[list(ee.position_indices)] = home[list(slot.position)] + [0.001 * k, 0, 0]
            row[list(ee.rotation_indices)] = rot.from_quat(q, rotation, axes)
        rows.append(row)
    result = ex.submit(Chunk(np.array(rows), 0.0, DT), 0.0)
    assert result.accepted and result.action == "ok", result.summary
    q = ex.command(1.0).positions[list(ex.space.slots[0].quaternion)]
    assert np.isclose(np.linalg.norm(q), 1.0)


def test_gate_checks_workspace_speeds_and_seams_in_metres_and_radians():
    ex = _executor()
    home = _home(ex)
    slot = ex.space.slots[0]
    gate = ex.gate
    base = np.tile(home, (10, 1))
    # far outside the workspace: rejected, naming the dimension
    far = base.copy()
    far[:, slot.position[0]] = 2.0
    r = gate.check(Chunk(far, 0.0, DT), home)
    assert not r.accepted and "left_ee_x" in r.summary
    # 0.45 m/s along the x-y diagonal: each component 0.32 m/s, but the norm is what counts:
    # 1.8x the 0.25 m/s limit -> time-scaled 1.8x
    fast = base.copy()
    fast[:, slot.position[0]] += np.arange(10) * 0.45 / np.sqrt(2) * DT
    fast[:, slot.position[1]] += np.arange(10) * 0.45 / np.sqrt(2) * DT
    r = gate.check(Chunk(fast, 0.0, DT), home)
    assert r.action == "time_scaled" and "translational speed 0.450 m/s" in r.summary
    assert np.isclose(r.time_scale, 1.8, rtol=1e-3)
    # angular speed 3 rad/s > 2x the 1 rad/s limit: rejected
    spin = base.copy()
    for k in range(10):
        spin[k, list(slot.quaternion)] = rot.multiply(rot.to_quat([0, 0, 3.0 * k * DT],
                                                                   "axis_angle"),
                                                      home[list(slot.quaternion)])
    r = gate.check(Chunk(spin, 0.0, DT), home)
    assert not r.accepted and "angular speed 3.000 rad/s above max 1.000 rad/s" in r.summary
    # seam: 5 cm away, or turned 0.2 rad from the current command
    moved = base.copy()
    moved[:, slot.position[2]] += 0.05
    assert "seam jump of 0.0500 m" in gate.check(Chunk(moved, 0.0, DT), home).summary
    turned = base.copy()
    turned[:, list(slot.quaternion)] = rot.multiply(rot.to_quat([0.2, 0, 0], "axis_angle"),
                                                    home[list(slot.quaternion)])
    assert "seam rotation of 0.2000 rad" in gate.check(Chunk(turned, 0.0, DT), home).summary
    # a non-unit quaternion never passes
    bad = base.copy()
    bad[:, slot.quaternion[0]] *= 1.01
    assert "quaternion norm" in gate.check(Chunk(bad, 0.0, DT), home).summary


def test_garbage_policy_values_are_rejected_before_conversion():
    ex = _executor()
    chunk = _delta_chunk(drv=(0, 0, 0.01))
    p = np.array(chunk.positions)
    p[5, EMB.index("left_ee_rx")] = np.inf
    r = ex.submit(chunk.replace(positions=p), 0.0)
    assert not r.accepted and "left_ee_rx step 5: non-finite" in r.summary
    p = np.array(chunk.positions)
    p[:, EMB.index("right_ee_z")] = 0.5  # 10x the per-step bound of 0.05 m
    r = ex.submit(chunk.replace(positions=p), 0.0)
    assert not r.accepted and "right_ee_z" in r.summary
    assert ex.status.rejected == 2


def test_seam_blend_slerps_where_component_wise_would_leave_the_sphere():
    """Blend from the current orientation to a chunk turned 170 degrees: component-wise the
    blended quaternions are far from unit norm; the executor's blend stays on the sphere."""
    q0 = rot.IDENTITY
    q1 = rot.to_quat([0, 0, np.radians(170)], "axis_angle")
    rows = np.tile(np.r_[0.0, 0.0, 0.0, q1], (10, 1))
    chunk = Chunk(rows, 0.0, 0.05)

    def commanded_at(times):
        return np.tile(np.r_[0.0, 0.0, 0.0, q0], (len(times), 1))

    linear = blend_seam(chunk, commanded_at, 0.4)
    norms = np.linalg.norm(linear.positions[:, 3:], axis=1)
    assert norms.min() < 0.75  # component-wise: 26 % off the unit sphere half-way
    sphere = blend_seam(chunk, commanded_at, 0.4, quaternions=((3, 4, 5, 6),))
    q = sphere.positions[:, 3:]
    assert np.allclose(np.linalg.norm(q, axis=1), 1.0)
    # monotone along the short arc, from q0 to q1
    angles = rot.angle_between(q0, q)
    assert angles[0] == 0.0 and np.all(np.diff(angles) >= -1e-12)
    assert np.isclose(angles[-1], np.radians(170))


def _check_stream(ex, samples):
    """Every command: finite, unit quaternions, inside the workspace, per-tick motion within
    max speed x the tick interval (seams included)."""
    lower, upper = ex.embodiment.lower, ex.embodiment.upper
    for (t0, a), (t1, b) in zip(samples, samples[1:]):
        assert np.isfinite(b).all() and np.all(b >= lower - 1e-9) and np.all(b <= upper + 1e-9)
        for s in ex.space.slots:
            q0, q1 = a[list(s.quaternion)], b[list(s.quaternion)]
            assert abs(np.linalg.norm(q1) - 1.0) < 1e-9
            assert np.dot(q0, q1) > 0  # no sign flip in the stream
            gap = t1 - t0
            lin = np.linalg.norm(b[list(s.position)] - a[list(s.position)])
            assert lin <= s.max_linear_speed * gap * (1 + 1e-6) + 1e-12
            assert rot.angle_between(q0, q1) <= s.max_angular_speed * gap * (1 + 1e-6) + 1e-12


@settings(max_examples=25, deadline=None)
@given(speeds=st.lists(st.tuples(st.floats(-0.15, 0.15), st.floats(-0.6, 0.6)), min_size=3,
                       max_size=6),
       latency=st.floats(0.0, 0.25))
def test_property_executed_delta_stream_is_finite_unit_inside_and_within_speed(speeds, latency):
    ex = _executor()
    samples, t, seq = [], 0.0, 0
    for v, w in speeds:
        chunk = _delta_chunk(dp=(v * DT, v * DT / 2, 0.0), drv=(0.0, w * DT, w * DT),
                             start=t, seq=seq)
        ex.submit(chunk, t + latency)
        for k in range(8):
            now = t + latency + k * DT
            samples.append((now, ex.command(now).positions))
        t += 8 * DT
        seq += 1
    assert ex.status.accepted >= 1
    _check_stream(ex, samples)


def test_metrics_report_metres_and_radians():
    rng = np.random.default_rng(0)
    true = np.zeros((4, 32, EMB.action_dim))
    true[..., 2:] = rng.normal(scale=0.01, size=true[..., 2:].shape)
    pred = true.copy()
    ee = EMB.end_effector("left_ee")
    pred[..., ee.position_indices[0]] += 0.003  # 3 mm off in x
    pred[..., ee.rotation_indices[2]] += 0.005  # ~5 mrad about z
    out = end_effector_errors(pred, true, EMB)
    assert np.isclose(out["left_ee/translation/mean_m"], 0.003)
    assert out["left_ee/translation/vrr@0.001"] == 0.0
    assert out["left_ee/translation/vrr@0.01"] == 1.0
    assert 0.004 < out["left_ee/rotation/mean_rad"] < 0.006
    assert out["right_ee/rotation/max_rad"] < 1e-9 and out["right_ee/rotation/vrr@0.001"] == 1.0
    assert out["joint/vrr@0.001"] == 1.0
    # a quaternion and its negative are the same rotation: no error
    qemb = _absolute("quaternion")
    q = rot.to_quat([0.1, 0.2, 0.3], "axis_angle")
    a = np.zeros((1, qemb.action_dim))
    a[:, :2] = 50
    for e in qemb.end_effectors:
        a[:, list(e.rotation_indices)] = q
    b = a.copy()
    for e in qemb.end_effectors:
        b[:, list(e.rotation_indices)] = -q
    assert end_effector_errors(a, b, qemb)["left_ee/rotation/max_rad"] < 1e-9


def test_late_steps_of_a_delta_chunk_are_dropped_not_caught_up():
    """Inference latency made the first steps late: the executed motion starts from the current
    command with the first kept step's delta, instead of jumping by the sum of the late ones."""
    ex = _executor()
    home = _home(ex)
    slot = ex.space.slots[0]
    chunk = _delta_chunk(dp=(0.01, 0.0, 0.0), start=0.0)
    result = ex.submit(chunk, 0.2)  # 0.2 s late at 15 Hz: steps 0..3 (+ lead) are past
    assert result.accepted, result.summary
    kept = result.chunk
    assert kept.first_step >= 3
    x = kept.positions[:, slot.position[0]] - home[slot.position[0]]
    assert x[0] == 0.0  # the blend starts exactly at the current command
    # after the blend window, kept step i is i + 1 deltas away (not first_step + i + 1)
    assert np.allclose(x[6:10], 0.01 * np.arange(7, 11))


def test_accumulate_rotations_backwards_matches_forwards():
    from faster_ros.control.pose import accumulate_rotations

    rng = np.random.default_rng(3)
    deltas = np.array([rot.to_quat(v, "axis_angle") for v in rng.normal(scale=0.1, size=(6, 3))])
    start = rot.to_quat([0.1, 0.2, 0.3], "axis_angle")
    for frame in ("base", "tool"):
        forward = accumulate_rotations(start, deltas, frame)
        rebased = accumulate_rotations(forward[2], deltas, frame, first=3)
        assert np.allclose(rot.angle_between(forward, rebased), 0.0, atol=1e-9)


def test_euler_gimbal_lock_crossing_is_smooth_for_the_gate():
    """A slow pitch through +90 degrees: the 'sxyz' Euler triple jumps (roll and yaw swap at the
    singularity) but the rotation does not, and the gate measures rotations, not triples."""
    emb = _absolute("euler", "sxyz")
    ex = _executor(emb)
    home = _home(ex)
    ee = emb.end_effectors[0]
    slot = ex.space.slots[0]
    start = rot.to_quat([0.0, np.pi / 2 - 0.1, 0.0], "euler", "sxyz")
    home[list(slot.quaternion)] = start
    ex.reset()
    ex.set_measured(home, 0.0)
    rows, triples = [], []
    for k in range(32):
        q = rot.multiply(rot.to_quat([0.0, 0.2 * k * DT, 0.0], "axis_angle"), start)
        row = np.zeros(emb.action_dim)
        row[:2] = 50.0
        for e, s in zip(emb.end_effectors, ex.space.slots):
            row[list(e.position_indices)] = home[list(s.position)]
            row[list(e.rotation_indices)] = rot.from_quat(
                q if e is ee else home[list(s.quaternion)], "euler", "sxyz")
        triples.append(row[list(ee.rotation_indices)])
        rows.append(row)
    assert np.abs(np.diff(np.array(triples), axis=0)).max() > 1.0  # the representation jumps
    result = ex.submit(Chunk(np.array(rows), 0.0, DT), 0.0)
    assert result.accepted and result.action == "ok", result.summary


@pytest.mark.parametrize("position,rotation,axes,frame", [
    ("delta", "axis_angle", None, "base"), ("delta", "euler", "rzyx", "tool"),
    ("delta", "quaternion", None, "base"), ("delta", "rot6d", None, "tool"),
    ("absolute", "euler", "sxyz", None), ("absolute", "rot6d", None, None)])
def test_recorded_pose_targets_map_back_to_policy_actions(position, rotation, axes, frame):
    """CommandSpace.to_policy inverts to_command (what replay needs to compare a policy with
    recorded PoseStamped targets, in the policy's own action space)."""
    import yaml

    data = yaml.safe_load(config_path("r1lite_ee").read_text())
    for ee in data["end_effectors"]:
        ee.update(position=position, rotation=rotation)
        if axes:
            ee["euler_axes"] = axes
        if position == "absolute":
            for key in ("delta_frame", "max_step_translation", "max_step_rotation"):
                ee.pop(key)
        else:
            ee["delta_frame"] = frame
    emb = parse_embodiment(data, "variant.yaml")
    ex = _executor(emb)
    home = _home(ex)
    rng = np.random.default_rng(4)
    rows = np.tile(home, (12, 1))
    for slot in ex.space.slots:
        rows[:, list(slot.position)] += np.cumsum(rng.normal(scale=0.004, size=(12, 3)), axis=0)
        for k in range(12):
            rows[k, list(slot.quaternion)] = rot.multiply(
                rot.to_quat(rng.normal(scale=0.3, size=3), "axis_angle"),
                home[list(slot.quaternion)])
    actions = ex.space.to_policy(rows, previous=home)
    back, problems = ex.space.to_command(Chunk(actions, 0.0, DT), home)
    assert problems == []
    for slot in ex.space.slots:
        assert np.allclose(back.positions[:, list(slot.position)], rows[:, list(slot.position)])
        assert rot.angle_between(back.positions[:, list(slot.quaternion)],
                                 rows[:, list(slot.quaternion)]).max() < 1e-9
    assert np.allclose(back.positions[:, :2], rows[:, :2])
