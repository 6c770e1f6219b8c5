"""Pure tests of the TELEOP / POLICY / HOLD mode manager, the teleop input state and the handoff
controller (no DDS): every transition, its reason, and bounded command steps at every switch."""

from dataclasses import replace

import numpy as np
import pytest

from faster_ros.control import Chunk
from faster_ros.control.handoff import HandoffController
from faster_ros.control.modes import Mode, ModeManager
from faster_ros.control.teleop import (
    TeleopState,
    limit_step,
    map_joint_values,
    map_twist,
    shadow_divergence,
)
from faster_ros.embodiment import load_embodiment

EMB = load_embodiment("r1lite_wbc")
SPEC = EMB.handoff
DT = EMB.control.dt


# ------------------------------------------------------------------------------ mode manager


def test_initial_mode_from_config_or_override():
    assert ModeManager(SPEC, 0.0).mode == Mode(SPEC.initial_mode)
    m = ModeManager(SPEC, 3.0, initial="TELEOP")
    (t,) = m.drain()
    assert (t.from_mode, t.to_mode, t.stamp, t.requested_by) == (None, Mode.TELEOP, 3.0,
                                                                "startup")
    assert m.drain() == []


def test_requests_teleop_and_hold_always_granted_policy_needs_a_live_policy():
    m = ModeManager(SPEC, 0.0, initial="TELEOP")
    m.drain()
    ok, msg = m.request("POLICY", "go", 1.0)
    assert not ok and "not producing chunks" in msg and m.mode == Mode.TELEOP
    m.policy_seen(1.0)
    ok, msg = m.request("POLICY", "operator hands over", 1.1, "console")
    assert ok and m.mode == Mode.POLICY
    (t,) = m.drain()
    assert (t.from_mode, t.to_mode, t.reason, t.requested_by, t.stamp) == (
        Mode.TELEOP, Mode.POLICY, "operator hands over", "console", 1.1)
    assert m.request("HOLD", "", 1.2)[0] and m.mode == Mode.HOLD
    assert m.drain()[0].reason == "requested"
    assert m.request("TELEOP", "take over", 1.3)[0] and m.mode == Mode.TELEOP
    ok, msg = m.request("TELEOP", "again", 1.4)
    assert ok and "already" in msg and m.drain() == [m.history[-1]]  # no new transition
    ok, msg = m.request("SHADOW", "x", 1.5)
    assert not ok and "unknown mode 'SHADOW'" in msg and m.mode == Mode.TELEOP


def test_stale_policy_refused():
    m = ModeManager(SPEC, 0.0, initial="TELEOP")
    m.policy_seen(0.0)
    ok, msg = m.request("POLICY", "", SPEC.policy_timeout_s + 0.1)
    assert not ok and "last one" in msg


def test_deadman_press_release_and_silence():
    m = ModeManager(SPEC, 0.0, initial="TELEOP")
    m.policy_seen(0.0)
    m.teleop_seen(0.0)
    assert m.deadman(True, 0.1)[0] and m.mode == Mode.POLICY
    assert m.drain()[-1].requested_by == "deadman"
    m.deadman(True, 0.2)  # held: no new transition
    assert m.drain() == []
    m.teleop_seen(0.25)
    assert m.deadman(False, 0.3)[0] and m.mode == Mode.TELEOP  # teleop live -> TELEOP
    assert m.drain()[-1].reason == "deadman released"
    # press again, then the pedal goes silent while pressed: leave POLICY (no teleop -> HOLD)
    m.policy_seen(0.8)
    m.deadman(False, 0.8)
    m.deadman(True, 0.85)
    assert m.mode == Mode.POLICY
    m.policy_seen(1.1)
    m.update(0.85 + SPEC.deadman_timeout_s + 0.01)
    assert m.mode == Mode.HOLD and "deadman silent" in m.reason


def test_a_stream_of_not_pressed_is_no_release():
    m = ModeManager(SPEC, 0.0, initial="TELEOP")
    m.policy_seen(0.0)
    m.deadman(False, 0.05)
    assert m.request("POLICY", "console", 0.1)[0]
    m.deadman(False, 0.15)
    m.deadman(False, 0.2)
    assert m.mode == Mode.POLICY
    m.deadman(True, 0.25)
    assert m.deadman(False, 0.3)[0] and m.mode == Mode.HOLD  # released; no teleop -> HOLD


def test_deadman_press_refused_without_policy():
    m = ModeManager(SPEC, 0.0, initial="TELEOP")
    switched, msg = m.deadman(True, 0.1)
    assert not switched and "refused" in msg and m.mode == Mode.TELEOP


def test_require_deadman():
    m = ModeManager(replace(SPEC, require_deadman=True), 0.0, initial="TELEOP")
    m.policy_seen(0.0)
    ok, msg = m.request("POLICY", "", 0.1)
    assert not ok and "deadman must be pressed" in msg
    m.deadman(True, 0.2)
    assert m.mode == Mode.POLICY
    m.request("TELEOP", "", 0.3)
    m.deadman(True, 0.35)  # still pressed: no edge, no switch
    assert m.mode == Mode.TELEOP
    assert m.request("POLICY", "", 0.4)[0]


def test_operator_motion_takes_over_from_policy_and_hold():
    m = ModeManager(SPEC, 0.0, initial="POLICY")
    assert m.operator_moved("left_arm_joint1 moved by 0.2 rad", 1.0)
    assert m.mode == Mode.TELEOP and "operator moved: left_arm_joint1" in m.reason
    assert not m.operator_moved("again", 1.1)  # already TELEOP
    m.request("HOLD", "pause", 1.2)
    assert m.operator_moved("torso", 1.3) and m.mode == Mode.TELEOP


def test_loss_of_every_input_holds_and_the_lost_input_brings_it_back():
    m = ModeManager(SPEC, 0.0, initial="POLICY")
    m.update(10.0)
    assert m.mode == Mode.POLICY  # nothing ever seen: startup, not a loss
    m.policy_seen(10.0)
    m.update(10.0 + SPEC.policy_timeout_s)
    assert m.mode == Mode.POLICY
    m.update(10.0 + SPEC.policy_timeout_s + 0.01)
    assert m.mode == Mode.HOLD and m.reason.startswith("watchdog: lost every input")
    assert m.drain()[-1].requested_by == "watchdog"
    m.teleop_seen(12.0)  # teleop returning does not resume a POLICY that was lost
    assert m.mode == Mode.HOLD
    m.policy_seen(12.5)
    assert m.mode == Mode.POLICY and "policy input back" in m.reason
    # lost in TELEOP: the policy coming back never switches to POLICY, teleop does
    m.request("TELEOP", "", 13.0)
    m.update(20.0)
    assert m.mode == Mode.HOLD
    m.policy_seen(20.1)
    assert m.mode == Mode.HOLD
    m.teleop_seen(20.2)
    assert m.mode == Mode.TELEOP and "teleop input back" in m.reason


def test_requested_hold_is_sticky():
    m = ModeManager(SPEC, 0.0, initial="POLICY")
    m.policy_seen(0.0)
    m.request("HOLD", "operator pause", 0.1)
    m.policy_seen(0.2)
    m.teleop_seen(0.3)
    m.update(0.4)
    assert m.mode == Mode.HOLD and m.reason == "operator pause"


def test_teleop_alive_in_policy_prevents_loss_hold():
    m = ModeManager(SPEC, 0.0, initial="POLICY")
    for k in range(40):
        m.teleop_seen(k * 0.1)
        m.update(k * 0.1)
    assert m.mode == Mode.POLICY


# ------------------------------------------------------------------------------ teleop input


def test_joint_and_twist_mapping():
    arm, base = SPEC.teleop_inputs
    values, problems = map_joint_values(arm, ["torso_joint2", "extra", "left_gripper"],
                                        [0.3, 9.0, 40.0])
    assert values == {EMB.index("torso_joint2"): 0.3, EMB.index("left_gripper"): 40.0}
    assert problems == []
    assert map_joint_values(arm, ["a"], [1.0, 2.0])[1][0].endswith("2 positions")
    assert "none of the joints" in map_joint_values(arm, ["nope"], [1.0])[1][0]
    values, _ = map_twist(base, {"linear.x": 0.2, "linear.y": 0.0, "angular.z": -0.4})
    assert values == {EMB.index("chassis_vx"): 0.2, EMB.index("chassis_vy"): 0.0,
                      EMB.index("chassis_wz"): -0.4}


def test_teleop_state_validates_and_detects_activity():
    st = TeleopState(EMB)
    i, g, vx = EMB.index("left_arm_joint1"), EMB.index("left_gripper"), EMB.index("chassis_vx")
    problems, moved = st.update({i: 0.1, g: float("nan"), vx: 9.0}, 0.0)
    assert any("non-finite" in p for p in problems) and any("clipped" in p for p in problems)
    assert st.values[vx] == EMB.upper[vx] and np.isnan(st.values[g])
    assert "chassis_vx commands" in moved  # a twist above the threshold is activity
    st.update({vx: 0.0}, 0.05)
    st.set_reference()
    threshold = SPEC.activity_threshold * (EMB.upper[i] - EMB.lower[i])
    assert st.update({i: 0.1 + 0.9 * threshold}, 0.1)[1] == ""
    assert "left_arm_joint1 moved by" in st.update({i: 0.1 + 1.1 * threshold}, 0.2)[1]
    fresh = st.fresh(0.2 + SPEC.teleop_timeout_s + 0.01)
    assert not fresh[i]
    hold = np.full(EMB.action_dim, 0.5)
    target = st.target(1.0, hold)
    assert target[i] == 0.5 and target[vx] == 0.0  # stale: hold positions, stop the base


def test_shadow_divergence_interpolates_the_plan_at_now():
    pos = np.zeros((4, 2))
    pos[:, 0] = [0.0, 0.1, 0.2, 0.3]
    chunk = Chunk(pos, start_time=10.0, dt=0.1)
    np.testing.assert_allclose(shadow_divergence(chunk, np.array([0.0, 0.5]), 10.15),
                               [0.15, 0.5])
    np.testing.assert_allclose(shadow_divergence(chunk, np.zeros(2), 99.0), [0.3, 0.0])


def test_limit_step_bounds_every_step():
    cur, tgt = np.zeros(3), np.array([1.0, -1.0, 0.01])
    out = limit_step(cur, tgt, np.array([2.0, 2.0, 2.0]), 10.0, np.array([0.1, 0.05, 0.1]))
    assert np.allclose(out, [0.1, -0.05, 0.01])


# ------------------------------------------------------------------------------ handoff


class Sim:
    """A HandoffController driven at the control rate, with a policy producing wave chunks and
    an operator streaming a leader arm; records every command."""

    def __init__(self, initial="TELEOP", **spec_changes):
        self.emb = replace(EMB, handoff=replace(SPEC, **spec_changes))
        self.h = HandoffController(self.emb, 0.0, initial=initial)
        self.t = 0.0
        self.state = 0.5 * (self.emb.lower + self.emb.upper)
        self.state[self.emb.is_velocity] = 0.0
        self.operator = self.state.copy()
        self.commands: list[tuple[float, Mode, np.ndarray]] = []
        self.seq = 0
        self.h.set_measured(self.state, 0.0)

    def chunk(self, offset: float = 0.0) -> Chunk:
        """A wave around the measured state (what builtin:wave does), observed now."""
        self.seq += 1
        steps = np.arange(self.emb.tokenizer.chunk_size) * DT
        phase = 2 * np.pi * self.t / 3.0
        wave = 0.15 * (np.sin(phase + 2 * np.pi * steps / 3.0) - np.sin(phase))[:, None]
        pos = self.state[None, :] + offset + wave
        pos[:, self.emb.is_velocity] = 0.05
        return Chunk(np.clip(pos, self.emb.lower, self.emb.upper), self.t, DT, self.seq)

    def run(self, seconds: float, policy: bool = True, teleop: bool = True, every: int = 8):
        for _ in range(round(seconds / DT)):
            self.t = round(self.t + DT, 9)
            k = round(self.t / DT)
            if teleop:
                self.h.teleop_input({i: self.operator[i] for i in
                                     SPEC.teleop_inputs[0].indices}, self.t)
            if policy and k % every == 0:
                if self.h.mode == Mode.POLICY:
                    self.h.submit(self.chunk(), self.t)
                else:
                    self.h.policy_seen(self.t)  # shadow
            cmd = self.h.command(self.t)
            if cmd is not None:
                self.commands.append((self.t, self.h.mode, cmd.positions.copy()))
                self.state += 0.5 * (cmd.positions - self.state)  # a lagging robot
                self.state[self.emb.is_velocity] = 0.0

    def max_step_ratio(self) -> float:
        values = np.stack([c for _, _, c in self.commands])
        return float((np.abs(np.diff(values, axis=0)) / self.emb.seam_bound).max())


def test_teleop_passes_the_operator_through_and_policy_takes_over_bumplessly():
    s = Sim()
    s.operator[: 6] += 0.3  # the operator moves the left arm away from the start
    s.run(3.0)
    assert s.h.mode == Mode.TELEOP
    assert np.allclose(s.commands[-1][2], s.operator)  # caught up: the operator's, unchanged
    before = s.commands[-1][2]
    assert s.h.request("POLICY", "hand over", s.t)[0]
    s.run(0.2)  # before the first chunk: hold the operator's command
    assert np.allclose(s.commands[-1][2][~EMB.is_velocity], before[~EMB.is_velocity])
    s.run(3.0)
    assert s.h.executor.status.accepted >= 3
    assert s.max_step_ratio() <= 1.0 + 1e-9
    # the policy drove: commands moved away from the operator's
    assert np.abs(s.commands[-1][2] - before).max() > 0.01


def test_operator_motion_takes_over_with_a_bounded_catch_up():
    s = Sim(initial="POLICY")
    s.operator = s.state.copy()
    s.run(2.0)  # the leader arm streams, still: the policy keeps control
    assert s.h.mode == Mode.POLICY and s.h.executor.status.accepted >= 2
    s.operator[EMB.index("right_arm_joint2")] += 0.6  # far: needs a catch-up
    n = len(s.commands)
    s.run(3.0)
    assert "operator moved: right_arm_joint2" in s.h.modes.history[-1].reason
    assert all(m == Mode.TELEOP for _, m, _ in s.commands[n:])
    assert s.max_step_ratio() <= 1.0 + 1e-9
    # in TELEOP every command moves monotonically towards the operator: nothing of the policy
    values = np.stack([c for _, _, c in s.commands[n - 1:]])
    dist = np.abs(values - s.operator)
    assert np.all(np.diff(dist, axis=0) <= 1e-12)
    assert np.allclose(values[-1], s.operator) and not s.h.catching_up
    result = s.h.submit(s.chunk(), s.t)
    assert not result.accepted and "mode TELEOP" in result.reasons[0]


def test_hold_keeps_positions_and_ramps_the_twist_down():
    s = Sim(initial="POLICY")
    s.run(2.0, teleop=False)
    last = s.commands[-1][2]
    assert np.all(last[EMB.is_velocity] > 0)  # the wave's base twist
    s.h.request("HOLD", "pause", s.t)
    n = len(s.commands)
    s.run(1.5)
    held = np.stack([c for _, _, c in s.commands[n:]])
    assert np.allclose(held[:, ~EMB.is_velocity], last[~EMB.is_velocity])
    twist = held[:, EMB.is_velocity]
    assert np.all(np.diff(np.abs(twist), axis=0) <= 1e-12) and np.allclose(twist[-1], 0.0)
    assert s.max_step_ratio() <= 1.0 + 1e-9


def test_loss_of_every_input_holds_then_resumes_policy():
    s = Sim(initial="POLICY")
    s.run(1.5, teleop=False)
    s.run(SPEC.policy_timeout_s + 0.3, policy=False, teleop=False)
    assert s.h.mode == Mode.HOLD
    s.run(2.0, teleop=False)
    assert s.h.mode == Mode.POLICY and s.max_step_ratio() <= 1.0 + 1e-9


def test_rapid_toggling_and_mid_chunk_switches_keep_steps_bounded():
    s = Sim()
    s.operator[6] = 80.0  # gripper far from the policy's
    s.run(2.0)
    for k in range(30):  # switch every 1-4 ticks, i.e. in the middle of chunks
        s.h.request("POLICY" if k % 2 == 0 else "TELEOP", f"toggle {k}", s.t)
        s.run(DT * (1 + k % 4))
    s.run(2.0)
    assert s.max_step_ratio() <= 1.0 + 1e-9
    assert len([t for t in s.h.modes.history if t.reason.startswith("toggle")]) == 30


def test_leaving_policy_starts_trajectory_dims_from_the_plan_ahead():
    single = load_embodiment("single_arm")
    lead = np.array([0.05] * 6 + [0.0])  # the arm goes to a JTC, the gripper is streamed
    # a 0.3 rad/s ramp from the measured state
    h = HandoffController(single, 0.0, initial="POLICY", lead=lead)
    x = 0.5 * (single.lower + single.upper)
    h.set_measured(x, 0.0)
    steps = np.arange(single.tokenizer.chunk_size)[:, None] * single.control.dt
    assert h.submit(Chunk(x + 0.3 * steps, 0.0, single.control.dt, 1), 0.0).accepted
    for k in range(1, 6):
        h.teleop_input({0: float(x[0])}, k * single.control.dt)  # the leader, still
        last = h.command(k * single.control.dt).positions
    now = 5 * single.control.dt + 0.03  # the operator takes over between two ticks
    h.teleop_input({0: float(x[0]) + 1.0}, now)
    assert h.mode == Mode.TELEOP
    tick = 6 * single.control.dt  # the first teleop command, a tick later
    cmd = h.command(tick).positions
    # the arm: from the plan at tick + lead (where the JTC is by then), the operator's joint
    # catching up from there; the gripper: from the last value sent
    np.testing.assert_allclose(cmd[1:6], x[1:6] + 0.3 * (tick + 0.05), atol=1e-9)
    step = cmd[0] - (x[0] + 0.3 * (tick + 0.05))
    assert 0 < step <= single.seam_bound[0] + 1e-12
    np.testing.assert_allclose(cmd[6], last[6], atol=1e-12)


def test_no_command_before_anything_is_known():
    h = HandoffController(EMB, 0.0, initial="TELEOP")
    assert h.command(0.1) is None  # no measurement, no operator: the robot's controller holds
    h2 = HandoffController(EMB, 0.0, initial="HOLD")
    assert h2.command(0.1) is None
    h2.set_measured(np.zeros(EMB.action_dim), 0.2)
    cmd = h2.command(0.3)
    assert cmd is not None and cmd.holding and np.all(cmd.positions == 0.0)


@pytest.mark.parametrize("bad,pattern", [
    ({"blend_time_s": 5.0},
     r"handoff\.blend_time_s: blend_time_s must be shorter than a chunk \(2\.133 s\), got 5\.0"),
    ({"catchup_rate_scale": 2.0}, r"handoff\.catchup_rate_scale: .* in \(0, 1\]"),
    ({"initial_mode": "SHADOW"}, r"handoff\.initial_mode: unknown value 'SHADOW'"),
    ({"teleop_inputs": [{"topic": "/t", "type": "Twist", "dims": ["torso_joint1"]}]},
     r"handoff\.teleop_inputs\[0\]\.dims: dimension 'torso_joint1' is a position"),
    ({"teleop_inputs": [{"topic": "/a", "type": "JointState", "dims": ["torso_joint1"]},
                        {"topic": "/b", "type": "JointState", "dims": ["torso_joint1"]}]},
     r"teleop_inputs\[1\]\.dims: dimension 'torso_joint1' is driven by two teleop inputs"),
    ({"teleop_inputs": [{"topic": "/a", "type": "Joy"}]},
     r"teleop_inputs\[0\]\.type: unknown value 'Joy'"),
    ({"require_deadman": True, "deadman_topic": ""}, r"require_deadman needs a deadman_topic"),
    ({"colour": 1}, r"handoff: unknown key 'colour'"),
])
def test_bad_handoff_config_names_the_field(bad, pattern):
    import yaml

    from faster_ros.embodiment import EmbodimentConfigError, parse_embodiment
    from faster_ros.paths import config_path

    data = yaml.safe_load(config_path("r1lite_wbc").read_text())
    data["handoff"] = bad
    with pytest.raises(EmbodimentConfigError, match=pattern):
        parse_embodiment(data, "config/broken.yaml")


def test_handoff_section_parses_custom_inputs():
    import yaml

    from faster_ros.embodiment import parse_embodiment
    from faster_ros.paths import config_path

    data = yaml.safe_load(config_path("r1lite_wbc").read_text())
    data["handoff"] = {"teleop_inputs": [
        {"topic": "/leader_left", "type": "JointTrajectory",
         "dims": ["left_arm_joint1", "left_arm_joint2"], "joints": ["l1", "l2"]},
        {"topic": "/joy_twist", "type": "Twist", "dims": ["chassis_vx"], "fields": ["linear.y"]},
    ], "initial_mode": "TELEOP", "require_deadman": True}
    h = parse_embodiment(data, "x.yaml").handoff
    assert h.initial_mode == "TELEOP" and h.require_deadman
    arm, joy = h.teleop_inputs
    assert arm.names == ("l1", "l2") and arm.indices == (0, 1)
    assert joy.names == ("linear.y",) and joy.indices == (EMB.index("chassis_vx"),)


def test_graph_declares_the_handoff_topics_and_initial_mode():
    from faster_ros import graph

    g = graph.build_graph("r1lite_wbc", initial_mode="TELEOP")
    assert g.node("faster_executor").parameters["initial_mode"] == "TELEOP"
    assert graph.build_graph("r1lite_wbc").node("faster_executor").parameters[
        "initial_mode"] == ""  # the config's handoff.initial_mode
    topics = graph.robot_topics(EMB)
    assert topics["teleop"] == [f"{graph.TELEOP_JOINT_TOPIC} (JointState)",
                                f"{graph.TELEOP_TWIST_TOPIC} (Twist)"]
    assert topics["deadman"] == [graph.DEADMAN_TOPIC]
    arm_only = graph.handoff_topics(load_embodiment("single_arm"))
    assert arm_only["teleop"] == [f"{graph.TELEOP_JOINT_TOPIC} (JointState)"]


def test_initial_mode_override_is_case_insensitive_and_a_bad_one_is_named():
    """The executor node's ``initial_mode`` parameter comes from a command line or launch file."""
    assert ModeManager(SPEC, 0.0, "policy").mode == Mode.POLICY
    assert ModeManager(SPEC, 0.0, Mode.HOLD).mode == Mode.HOLD
    with pytest.raises(ValueError, match=r"initial mode 'auto': expected one of TELEOP, POLICY"):
        ModeManager(SPEC, 0.0, "auto")


def test_reanchor_after_the_robot_was_moved_outside_the_stack():
    """A scene reset moves the robot away from the held command: every chunk from the new
    state is refused for its seam jump until the executor is re-anchored; then the first
    chunk starts from the measured position, and a chunk observed before the reset is refused."""
    s = Sim(initial="POLICY")
    s.run(2.0, teleop=False)
    assert s.h.executor.status.accepted >= 2
    old = s.chunk()  # observed before the reset
    s.state[: 6] += 0.5  # the reset puts the left arm elsewhere; it does not follow commands
    s.h.set_measured(s.state, s.t)
    for _ in range(3):
        s.t = round(s.t + 8 * DT, 9)
        result = s.h.submit(s.chunk(), s.t)
        assert not result.accepted and "seam jump" in result.summary
    s.h.reanchor("sim episode 1 reset", s.t)
    assert s.h.command(s.t) is None  # nothing is commanded before a measurement and a chunk
    s.t = round(s.t + DT, 9)
    s.h.set_measured(s.state, s.t)
    late = s.h.submit(old, s.t)
    assert not late.accepted and "predates" in late.summary
    assert s.h.command(s.t) is None  # measured, but still no chunk: nothing is commanded
    result = s.h.submit(s.chunk(), s.t)
    assert result.accepted, result.summary
    first = s.h.command(s.t)
    assert first is not None and not first.holding
    pos = ~EMB.is_velocity
    assert np.abs(first.positions - s.state)[pos].max() <= EMB.seam_bound.max()
