"""Observation assembly: alignment, slop, staleness and every failure's specific reason."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from faster_ros.embodiment import load_embodiment
from faster_ros.observation import ObservationAssembler

ARM = load_embodiment("single_arm")  # cameras scene + wrist, /joint_states with 7 joints
R1 = load_embodiment("r1lite_wbc")  # 3 cameras, 5 joint topics
JOINTS = ARM.joint_inputs[0].joints


def _img(value=0):
    return np.full((4, 6, 3), value, dtype=np.uint8)


def _feed_arm(asm, t_cam=(), t_joint=(), cams=("scene", "wrist"), value=lambda t: t):
    for t in t_cam:
        for cam in cams:
            asm.add_image(cam, t, _img(int(t * 100) % 256))
    for t in t_joint:
        asm.add_joints("/joint_states", t, JOINTS, [value(t)] * len(JOINTS))


def test_aligned_observation_picks_the_right_frames_and_interpolates_joints():
    asm = ObservationAssembler(ARM)
    _feed_arm(asm, t_cam=[1.0, 1.0333, 1.0667], t_joint=[0.95 + 0.01 * k for k in range(15)])
    asm.add_image("wrist", 1.08, _img(200))  # a wrist frame 13 ms newer than the head frame
    r = asm.assemble(now=1.1, instruction="pick")
    assert r.ok, r.reason
    obs = r.observation
    assert obs.stamp == 1.0667 and obs.instruction == "pick"
    assert obs.input_stamps["scene"] == 1.0667
    assert obs.input_stamps["wrist"] == 1.0667  # nearest to the reference time
    np.testing.assert_allclose(obs.state, 1.0667, atol=1e-9)  # interpolated at the reference
    assert obs.state.shape == (ARM.state_dim,)
    assert obs.images["scene"][0, 0, 0] == 106
    assert r.ages["scene"] == pytest.approx(1.1 - 1.0667)
    assert r.ages["/joint_states"] == pytest.approx(1.1 - 1.09, abs=1e-9)
    assert obs.input_stamps["/joint_states"] == pytest.approx(1.07)  # newest message used


def test_slop_respected_and_older_consistent_set_used():
    asm = ObservationAssembler(ARM, slop_s=0.01)
    asm.add_image("scene", 1.00, _img(1))
    asm.add_image("scene", 1.05, _img(2))
    asm.add_image("wrist", 1.005, _img(3))
    asm.add_image("wrist", 1.07, _img(4))  # 0.02 s from the newest scene frame: beyond slop
    _feed_arm(asm, t_joint=np.arange(0.99, 1.1, 0.005))
    r = asm.assemble(now=1.08)
    assert r.ok and r.observation.stamp == 1.00  # the newest time where all agree
    assert r.observation.images["wrist"][0, 0, 0] == 3
    asm = ObservationAssembler(ARM, slop_s=0.01)
    asm.add_image("scene", 1.05, _img(2))
    asm.add_image("wrist", 1.07, _img(4))
    _feed_arm(asm, t_joint=np.arange(0.99, 1.1, 0.005))
    r = asm.assemble(now=1.1)
    assert not r.ok
    assert r.reason.startswith("camera 'wrist': no frame within slop 0.010 s of the reference "
                               "time 1.050 (camera 'scene'): nearest 0.020 s away")


def test_stale_camera_reason():
    asm = ObservationAssembler(R1)
    now = 10.0
    for cam in ("head", "wrist_right"):
        asm.add_image(cam, now - 0.02, _img())
    asm.add_image("wrist_left", now - 0.41, _img())
    for ji in R1.joint_inputs:
        asm.add_joints(ji.topic, now - 0.01, ji.joints, np.zeros(len(ji.joints)))
    r = asm.assemble(now)
    assert not r.ok
    assert r.reason == "camera 'wrist_left' stale: last frame 0.41 s old (budget 0.20 s)"
    assert r.ages["wrist_left"] == pytest.approx(0.41)


def test_missing_and_never_received_joints():
    asm = ObservationAssembler(ARM)
    _feed_arm(asm, t_cam=[1.0])
    r = asm.assemble(1.01)
    assert r.reason.startswith("joint input '/joint_states' never received")
    assert r.ages["/joint_states"] == np.inf
    asm.add_joints("/joint_states", 1.0, JOINTS[:-1], [0.0] * 6)  # drive_joint missing
    r = asm.assemble(1.01)
    assert r.reason == ("joint input '/joint_states': joints 'drive_joint' never received "
                        "(messages on the topic do not contain them)")
    # another driver publishes the gripper on the same topic: gathered by name
    asm.add_joints("/joint_states", 1.0, ["drive_joint", "unknown_joint"], [0.4, 9.0])
    r = asm.assemble(1.01)
    assert r.ok, r.reason
    assert r.observation.state[-1] == 0.4


def test_nan_joints_rejected():
    asm = ObservationAssembler(ARM)
    _feed_arm(asm, t_cam=[1.0], t_joint=[0.99, 1.0])
    asm.add_joints("/joint_states", 1.01, JOINTS, [0.0, np.nan, 0, 0, 0, 0, 0])
    r = asm.assemble(1.02)
    assert not r.ok
    assert r.reason == ("joint input '/joint_states': non-finite position for 'joint2' (nan) in "
                        "the newest message (stamp 1.010)")


def test_future_stamp_reports_clock_jump_and_is_dropped():
    asm = ObservationAssembler(ARM)
    _feed_arm(asm, t_cam=[1.0], t_joint=[0.99, 1.0, 1.01])
    asm.add_image("wrist", 3.0, _img())  # garbage stamp from the future
    r = asm.assemble(1.02)
    assert not r.ok and r.reason.startswith("camera 'wrist': sample stamped 1.98 s in the future")
    assert "clock jump?" in r.reason
    r = asm.assemble(1.02)  # the garbage frame was dropped: the good ones still work
    assert r.ok, r.reason


def test_out_of_order_and_duplicate_stamps():
    asm = ObservationAssembler(ARM)
    _feed_arm(asm, t_joint=np.arange(0.9, 1.11, 0.01))
    asm.add_image("scene", 1.1, _img(11))
    asm.add_image("wrist", 1.1, _img(12))
    asm.add_image("scene", 1.0, _img(1))  # late arrival: inserted in order
    asm.add_image("scene", 1.1, _img(99))  # exact duplicate: dropped
    r = asm.assemble(1.11)
    assert r.ok and r.observation.stamp == 1.1
    assert r.observation.images["scene"][0, 0, 0] == 11
    assert any("camera 'scene': 1 duplicate stamps dropped" in n for n in r.notes)
    asm.add_image("scene", 0.2, _img())  # older than anything usable: dropped, noted
    r = asm.assemble(1.11)
    assert r.ok and any("older than the retention window" in n for n in r.notes)


def test_clock_jump_back_clears_buffers():
    asm = ObservationAssembler(ARM)
    _feed_arm(asm, t_cam=[10.0], t_joint=[9.99, 10.0])
    assert asm.assemble(10.01).ok
    r = asm.assemble(2.0)
    assert not r.ok and r.reason.startswith("clock jumped back 8.01 s")
    assert all(a == np.inf for a in r.ages.values())


def test_r1lite_multi_topic_gathering_in_state_order():
    asm = ObservationAssembler(R1)
    now = 5.0
    for cam in ("head", "wrist_left", "wrist_right"):
        asm.add_image(cam, now - 0.03, _img())
    for k, ji in enumerate(R1.joint_inputs):
        for t in (now - 0.05, now - 0.01):
            asm.add_joints(ji.topic, t, ji.joints[::-1],  # names in any order
                           [100 * k + i for i in range(len(ji.joints))][::-1])
    r = asm.assemble(now)
    assert r.ok, r.reason
    expected = [100 * k + i for k, ji in enumerate(R1.joint_inputs)
                for i in range(len(ji.joints))]
    np.testing.assert_allclose(r.observation.state, expected)
    assert r.observation.state.shape == (R1.state_dim,) == (18,)
    assert set(r.observation.input_stamps) == {"head", "wrist_left", "wrist_right",
                                               *(ji.topic for ji in R1.joint_inputs)}


def test_buffer_memory_bounded_over_a_long_run():
    asm = ObservationAssembler(ARM)
    frame = _img()
    for i in range(10 * 60 * 30):  # 10 minutes at 30 Hz, assembling at 3 Hz
        t = i / 30
        asm.add_image("scene", t, frame)
        asm.add_image("wrist", t, frame)
        asm.add_joints("/joint_states", t, JOINTS, [0.0] * 7)
        if i % 10 == 0:
            assert asm.assemble(t + 0.01).ok
    sizes = {name: len(inp.buffer) for name, inp in asm._inputs.items()}
    assert sizes["scene"] <= 20 and sizes["wrist"] <= 20 and sizes["/joint_states"] <= 40
    for i in range(2000):  # a minute without any assemble: bounded by count
        asm.add_image("scene", 600 + i / 30, frame)
        asm.add_joints("/joint_states", 600 + i / 30, JOINTS, [0.0] * 7)
    assert len(asm._inputs["scene"].buffer) <= asm._inputs["scene"].buffer.max_len <= 40
    assert len(asm._inputs["/joint_states"].buffer) <= 1000


def test_lazy_frames_and_bad_frames():
    asm = ObservationAssembler(ARM)
    calls = []

    def decode():
        calls.append(1)
        return _img(7)

    asm.add_image("scene", 1.0, decode)
    asm.add_image("wrist", 1.0, np.zeros((4, 6), dtype=np.uint8))  # mono: dropped, noted
    asm.add_image("wrist", 1.0, _img(8))
    _feed_arm(asm, t_joint=[0.99, 1.0])
    r = asm.assemble(1.01)
    assert r.ok and r.observation.images["scene"][0, 0, 0] == 7 and len(calls) == 1
    assert any("bad frames dropped" in n for n in r.notes)
    with pytest.raises(ValueError, match="unknown camera"):
        asm.add_image("nope", 1.0, _img())


def test_small_step_back_of_now_is_no_time_passing():
    asm = ObservationAssembler(ARM)
    _feed_arm(asm, t_cam=[1.0], t_joint=[0.99, 1.0, 1.04])
    assert asm.assemble(1.05).ok
    r = asm.assemble(0.95)  # 0.1 s back: below clock_jump_s, samples at 1.0 are not "future"
    assert r.ok, r.reason


def test_joint_only_embodiment_uses_the_joint_topic_as_reference():
    import yaml

    from faster_ros.embodiment import parse_embodiment
    from faster_ros.paths import config_path

    data = yaml.safe_load(config_path("single_arm").read_text())
    data["cameras"] = []
    emb = parse_embodiment(data)
    asm = ObservationAssembler(emb)
    assert asm.reference == "/joint_states"
    asm.add_joints("/joint_states", 1.0, JOINTS, list(range(7)))
    asm.add_joints("/joint_states", 1.01, JOINTS, list(range(1, 8)))
    r = asm.assemble(1.02)
    assert r.ok and r.observation.stamp == 1.01 and r.observation.images == {}
    np.testing.assert_allclose(r.observation.state, range(1, 8))


def test_stale_at_the_aligned_time_names_the_lagging_reference():
    asm = ObservationAssembler(ARM)
    _feed_arm(asm, t_cam=[1.0], t_joint=[0.99 + 0.01 * k for k in range(20)])
    r = asm.assemble(1.15)  # frame 0.15 s old (budget 0.2), joints at that time 0.15 s (0.1)
    assert not r.ok
    assert r.reason.startswith("joint input '/joint_states' stale at the reference time 1.000")
    assert "joint values 0.15 s old (budget 0.10 s)" in r.reason


@st.composite
def _streams(draw):
    """Random, partly garbage, sample streams for single_arm."""
    events = []
    n = draw(st.integers(1, 60))
    for _ in range(n):
        kind = draw(st.sampled_from(["scene", "wrist", "joints", "joints_nan", "joints_part",
                                     "assemble"]))
        dt = draw(st.sampled_from([0.0, 0.005, 0.02, 0.033, 0.1, -0.05, 0.3, -2.0]))
        events.append((kind, dt))
    return events


@settings(max_examples=80, deadline=None)
@given(events=_streams(), slop=st.sampled_from([0.01, 0.05]))
def test_any_observation_built_satisfies_the_rules(events, slop):
    asm = ObservationAssembler(ARM, slop_s=slop)
    t = 10.0
    budgets = {c.name: c.max_age_s for c in ARM.cameras} | {"/joint_states": 0.1}
    now = None  # the assembler's "now": a step back smaller than clock_jump_s is no time passing
    for kind, dt in events:
        t += dt
        stamp = t - 0.01
        if kind in ("scene", "wrist"):
            asm.add_image(kind, stamp, _img())
        elif kind == "joints":
            asm.add_joints("/joint_states", stamp, JOINTS, [0.1] * 7)
        elif kind == "joints_nan":
            asm.add_joints("/joint_states", stamp, JOINTS, [np.nan] + [0.1] * 6)
        elif kind == "joints_part":
            asm.add_joints("/joint_states", stamp, JOINTS[:3], [0.1] * 3)
        else:
            if now is None or t >= now or now - t > asm.clock_jump_s:
                now = t
            r = asm.assemble(t)
            assert r.ok == (r.reason == "")
            if not r.ok:
                continue
            obs = r.observation
            assert np.all(np.isfinite(obs.state)) and obs.state.shape == (7,)
            assert set(obs.images) == {"scene", "wrist"}
            for used in obs.input_stamps.values():
                assert abs(used - obs.stamp) <= slop + 1e-9
                assert used <= now + asm.future_tolerance_s
            for cam in ("scene", "wrist"):
                assert now - obs.input_stamps[cam] <= budgets[cam] + 1e-9


def test_state_history_interpolated_at_each_lag_and_clamped_to_the_oldest_sample():
    """state_history_s: the state L s before the observation, linear between samples; just
    after start-up (buffer shorter than L) the oldest value, as training clamps to step 0."""
    asm = ObservationAssembler(ARM)
    assert asm.state_history_s == ()
    _feed_arm(asm, t_cam=[1.0], t_joint=[0.9 + 0.01 * k for k in range(15)])
    assert asm.assemble(now=1.05).observation.state_history is None  # no lags: no history
    asm = ObservationAssembler(ARM, state_history_s=(0.105, 0.5))
    _feed_arm(asm, t_cam=[1.0], t_joint=[0.2 + 0.01 * k for k in range(86)],
              value=lambda t: 2.0 * t)
    obs = asm.assemble(now=1.05).observation
    assert obs.state_history.shape == (2, ARM.state_dim)
    np.testing.assert_allclose(obs.state_history[0], 2.0 * 0.895, atol=1e-9)  # interpolated
    np.testing.assert_allclose(obs.state_history[1], 2.0 * 0.5, atol=1e-9)
    asm = ObservationAssembler(ARM)
    asm.set_state_history((0.5,))  # e.g. set by the policy node once the model is loaded
    _feed_arm(asm, t_cam=[1.0], t_joint=[0.8 + 0.01 * k for k in range(25)])
    asm.add_joints("/joint_states", 0.85, JOINTS, [np.nan] * len(JOINTS))  # a bad old sample
    obs = asm.assemble(now=1.05).observation
    np.testing.assert_allclose(obs.state_history[0], 0.8, atol=1e-9)  # oldest finite, no NaN
    for bad in ((0.5, 0.1), (0.0,), (float("nan"),)):
        with pytest.raises(ValueError, match="state_history_s"):
            asm.set_state_history(bad)


@settings(max_examples=60, deadline=None)
@given(gaps=st.lists(st.sampled_from([0.004, 0.01, 0.02, 0.06]), min_size=2, max_size=40),
       back=st.floats(0.0, 0.09), slop=st.sampled_from([0.01, 0.05]))
def test_one_lookup_for_all_joints_equals_the_per_joint_walk(gaps, back, slop):
    """Messages that carry every joint take one row lookup for all of them; it must give what
    the per-joint walk gives (values, stamps, reason), interpolated or held, in slop or not."""
    import faster_ros.observation as observation

    stamps = 1.0 + np.cumsum(gaps)
    rng = np.random.default_rng(len(gaps))
    values = rng.normal(size=(len(stamps), len(JOINTS)))
    t_cam = float(stamps[-1] - back)  # between or beside the joint samples
    now = float(stamps[-1]) + 0.005

    def run(dense: bool):
        asm = ObservationAssembler(ARM, slop_s=slop, state_history_s=(0.03,))
        asm.add_image("scene", t_cam, _img())
        asm.add_image("wrist", t_cam, _img())
        for t, v in zip(stamps, values):
            asm.add_joints("/joint_states", float(t), JOINTS, v)
        init = observation._JointTable.__init__

        def patched(table, inp):
            init(table, inp)
            table.dense = table.dense and dense

        observation._JointTable.__init__ = patched
        try:
            return asm.assemble(now)
        finally:
            observation._JointTable.__init__ = init

    fast, walk = run(True), run(False)
    assert fast.reason == walk.reason
    if walk.ok:
        np.testing.assert_array_equal(fast.observation.state, walk.observation.state)
        np.testing.assert_array_equal(fast.observation.state_history,
                                      walk.observation.state_history)
        assert fast.observation.input_stamps == walk.observation.input_stamps


def test_cameras_pending_names_the_cameras_triggered_with_the_reference():
    """single_arm: scene (the reference) and wrist at 30 Hz, sync window 1/120 s. A wrist frame
    a whole period before the scene frame means the wrist frame of the same trigger is on its
    way: wait. A wrist frame inside the window completes the set; a free-running wrist camera
    whose next frame is due well after the window is not waited for."""
    asm = ObservationAssembler(ARM)
    asm.add_image("scene", 1.0, _img())
    assert asm.newest_stamp("scene") == 1.0
    assert asm.cameras_pending(1.0) == ()  # never received: nothing is due (reported as such)
    asm.add_image("wrist", 1.0 - 1 / 30 + 0.001, _img())  # triggered with the previous scene
    assert asm.cameras_pending(1.0) == ("wrist",)
    assert asm.frame_wait_s(("wrist",)) == pytest.approx(0.5 / 30)
    asm.add_image("wrist", 1.001, _img())  # the same trigger's frame
    assert asm.cameras_pending(1.0) == ()
    other = ObservationAssembler(ARM)
    other.add_image("scene", 1.0, _img())
    other.add_image("wrist", 0.98, _img())  # out of phase: the next is due at 1.013
    assert other.cameras_pending(1.0) == ()
    assert asm.frame_wait_s(()) == 0.0
