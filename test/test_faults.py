"""Fault injection on the running multi-process stack (issue 8).

The policy and executor nodes run as child processes, as on a robot; the mock robot, a monitor
and (for sim time) a /clock publisher run in this process, so that the test can cut a sensor
topic, jump the clock or drive the ``builtin:faults`` policy (which misbehaves on request through
its instruction) and then restore it. Every case asserts:

* the hold: from ``execute_steps * dt + watchdog_s`` (the executor's own budget) plus
  ``SLACK_S`` (timers and DDS on a loaded 2-core machine) after the fault, every streamed position
  command is one constant value, every twist is zero and every trajectory is the one-point hold;
  nothing non-finite or out of limits is ever published;
* the reason: PolicyStatus (or the executor's status) names the fault;
* the recovery: once the fault is cleared, chunks are accepted again and the commands move.

One stack is shared by the cases of each embodiment (xdist_group keeps them on one worker).
"""

from __future__ import annotations

import dataclasses
import re
import shutil
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from faster_ros import graph as topics
from faster_ros.embodiment import load_embodiment
from faster_ros.graph import build_graph
from faster_ros.ros import conversions as conv

pytestmark = [pytest.mark.ros, pytest.mark.multiprocess, pytest.mark.slow,
              pytest.mark.xdist_group("faults")]

SLACK_S = 0.75  # scheduling + DDS latency allowed on top of the executor's own budget
ACCEPTED = ("ok", "clipped", "time_scaled")
SIM_T0 = 1000.0


class _Switch:
    """A publisher that can be cut or made to send garbage (the fault) and restored."""

    def __init__(self, publisher):
        self.publisher = publisher
        self.on = True
        self.mangle = None  # msg -> msg

    def publish(self, msg) -> None:
        if self.on:
            self.publisher.publish(self.mangle(msg) if self.mangle else msg)


class Stack:
    """policy + executor as child processes; mock robot, monitor, fault driver in-process."""

    def __init__(self, embodiment: str, *, model: str = "builtin:faults", sim_time: bool = False,
                 image_size=(48, 64), robot: dict | None = None):
        self.emb = load_embodiment(embodiment)
        self.sim_time = sim_time
        self.graph = build_graph(self.emb, model=model, use_sim_time=sim_time)
        self.image_size = list(image_size)
        self.robot_params = dict(robot or {})
        self._clock_offset = 0.0
        self.executor_down: list[tuple[float, float]] = []  # no executor to give verdicts
        self._stop = threading.Event()

    # ------------------------------------------------------------------------------ life

    def start(self) -> Stack:
        import rclpy
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.parameter import Parameter
        from rosgraph_msgs.msg import Clock
        from std_msgs.msg import String

        from faster_ros.ros.bringup import ProcessGraph
        from faster_ros.ros.mock_robot import MockRobotNode
        from faster_ros.ros.monitor import MonitorNode

        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.driver = rclpy.create_node("fault_driver", context=self.context)
        self._instruction_pub = self.driver.create_publisher(String, topics.INSTRUCTION_TOPIC, 10)
        self._threads = []
        if self.sim_time:
            self._clock_pub = self.driver.create_publisher(Clock, "/clock", 10)
            self._wall0 = time.monotonic()
            self._publish_clock()
            self._threads.append(threading.Thread(target=self._clock_loop, daemon=True))
        self.robot = MockRobotNode(context=self.context, parameter_overrides=[
            Parameter("embodiment", value=self.emb.source),
            Parameter("use_sim_time", value=self.sim_time),
            Parameter("image_size", value=self.image_size),
            *(Parameter(k, value=v) for k, v in self.robot_params.items())])
        self.switches: dict[str, _Switch] = {}
        for table in (self.robot._camera_pubs, self.robot._joint_pubs):  # the robot's sensors
            for topic, publisher in table.items():
                table[topic] = self.switches[topic] = _Switch(publisher)
        assert self.switches, "mock robot publishes no sensor topic"
        self.monitor = MonitorNode(self.emb, context=self.context)
        self.rec = self.monitor.rec
        self.executor = SingleThreadedExecutor(context=self.context)
        for node in (self.driver, self.robot, self.monitor):
            self.executor.add_node(node)
        self._threads.append(threading.Thread(target=self.executor.spin, daemon=True))
        for thread in self._threads:
            thread.start()
        self.pg = ProcessGraph(self.graph).start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self.pg.stop()
        self.executor.shutdown()
        for thread in self._threads:
            thread.join(timeout=5)
        for node in (self.driver, self.robot, self.monitor):
            node.destroy_node()
        self.context.try_shutdown()

    # ------------------------------------------------------------------------------ clock

    def sim_now(self) -> float:
        return SIM_T0 + time.monotonic() - self._wall0 + self._clock_offset

    def _publish_clock(self) -> None:
        from rosgraph_msgs.msg import Clock

        self._clock_pub.publish(Clock(clock=conv.to_time(self.sim_now())))

    def _clock_loop(self) -> None:
        while not self._stop.is_set():
            self._publish_clock()
            time.sleep(0.005)

    def jump_clock(self, seconds: float) -> None:
        self._clock_offset += seconds

    # ------------------------------------------------------------------------------ faults

    def cut(self, *names: str, on: bool = False) -> None:
        for name in names:
            self.switches[name].on = on

    def garble(self, name: str, mangle) -> None:
        self.switches[name].mangle = mangle

    def restore(self) -> None:
        for switch in self.switches.values():
            switch.on = True
            switch.mangle = None

    def instruct(self, text: str, timeout: float = 10.0) -> None:
        """Set the policy's instruction (the fault selector of builtin:faults) and wait until
        its status echoes it."""
        from std_msgs.msg import String

        def echoed():
            self._instruction_pub.publish(String(data=text))
            st = self.rec.policy_status
            return st is not None and st.instruction == text

        self.wait_for(echoed, timeout, f"instruction {text!r} echoed by PolicyStatus",
                      poll=0.3)

    # ------------------------------------------------------------------------------ waiting

    def diagnosis(self) -> str:
        ps, es = self.rec.policy_status, self.rec.executor_status
        logs = "\n".join(f"--- {n}\n{self.pg.log(n)[-2500:]}" for n in ("faster_policy",
                                                                         "faster_executor"))
        return (f"policy status: {ps.reason if ps else None!r}\nexecutor status: "
                f"{es.reason if es else None!r}\nalive: {self.pg.alive()}\n{logs}")

    def wait_for(self, predicate, timeout: float, what: str, poll: float = 0.05):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            value = predicate()
            if value:
                return value
            time.sleep(poll)
        pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}\n{self.diagnosis()}")

    def accepted_since(self, t: float) -> list:
        with self.monitor.lock:
            return [m for rt, m in self.rec.executions if rt >= t and m.verdict in ACCEPTED]

    def running(self) -> bool:
        st = self.rec.policy_status
        return st is not None and st.reason == "running"

    def wait_running(self, since: float | None = None, timeout: float = 30.0) -> float:
        """Wait until chunks are accepted (after ``since``) and the policy reports running;
        return the time the first such chunk was seen."""
        since = time.time() if since is None else since
        self.wait_for(lambda: len(self.accepted_since(since)) >= 2 and self.running(), timeout,
                      "the stack to run (chunks accepted, PolicyStatus 'running')")
        with self.monitor.lock:
            return min(rt for rt, m in self.rec.executions if rt >= since
                       and m.verdict in ACCEPTED)

    def reengage(self, timeout: float = 20.0) -> None:
        """If the runtime left POLICY because every input was lost (the handoff's HOLD mode,
        left only on request), ask for POLICY again as an operator would (SetMode)."""
        st = self.rec.executor_status
        if st is None or not st.reason.startswith("HOLD:"):
            return
        from faster_msgs.srv import SetMode

        client = self.driver.create_client(SetMode, topics.SET_MODE_SERVICE)
        try:
            def granted():
                if not client.wait_for_service(timeout_sec=1.0):
                    return False
                future = client.call_async(SetMode.Request(mode="POLICY", reason="test"))
                end = time.monotonic() + 3.0
                while not future.done() and time.monotonic() < end:
                    time.sleep(0.02)
                return future.done() and future.result().accepted

            self.wait_for(granted, timeout, "SetMode POLICY granted", poll=0.5)
        finally:
            self.driver.destroy_client(client)

    def budget(self) -> float:
        c = self.emb.control
        return c.execute_steps * c.dt + c.watchdog_s + SLACK_S

    def commands(self, t0: float, t1: float) -> dict[str, list]:
        with self.monitor.lock:
            return {name: [(rt, m) for rt, m in msgs if t0 <= rt < t1]
                    for name, msgs in self.rec.commands.items()}


@pytest.fixture(scope="class")
def arm_stack():
    stack = Stack("single_arm").start()
    try:
        stack.wait_running(since=0.0, timeout=60.0)
        yield stack
    finally:
        stack.stop()


# ---------------------------------------------------------------------------------- checks


def assert_safe(emb, rec) -> None:
    """Everything ever published to a controller is finite and within the limits."""
    lower, upper, tol = emb.lower, emb.upper, 1e-9
    for group in emb.outputs:
        idx = list(group.indices)
        for _, msg in list(rec.commands.get(group.name, [])):
            points = ([np.asarray(p.positions) for p in msg.points]
                      if group.kind == "joint_trajectory" else [conv.command_values(group, msg)])
            for values in points:
                assert np.isfinite(values).all(), f"non-finite command on {group.topic}"
                assert np.all(values >= lower[idx] - tol) and np.all(values <= upper[idx] + tol)


def assert_held(stack: Stack, t_fault: float, t_end: float, case: str) -> None:
    """From the budget after ``t_fault`` until ``t_end``: the hold, and only the hold."""
    emb, t_hold = stack.emb, t_fault + stack.budget()
    assert t_end - t_hold > 0.5, f"{case}: fault too short to observe the hold"
    window = stack.commands(t_hold, t_end)
    before = stack.commands(0.0, t_hold)
    for group in emb.outputs:
        msgs = window.get(group.name, [])
        velocity = emb.is_velocity[list(group.indices)]
        if group.kind == "joint_trajectory":
            # the hold is one trajectory of one point, sent on entering it; nothing after it
            last = before[group.name][-1][1]
            assert len(last.points) == 1, (
                f"{case}: {group.topic} still executing a {len(last.points)}-point trajectory "
                f"{stack.budget():.2f} s after the fault\n{stack.diagnosis()}")
            held = np.asarray(last.points[0].positions)
            for _, msg in msgs:
                assert len(msg.points) == 1
                np.testing.assert_allclose(msg.points[0].positions, held, atol=1e-12)
            continue
        assert len(msgs) >= 3, f"{case}: the executor stopped streaming holds to {group.topic}"
        values = np.stack([conv.command_values(group, m) for _, m in msgs])
        moving = np.abs(values - values[0]).max(axis=0)[~velocity]
        assert np.all(moving <= 1e-12), (
            f"{case}: {group.topic} not held: moved by {moving.max():.3g} between "
            f"{stack.budget():.2f} s after the fault and its end\n{stack.diagnosis()}")
        assert np.all(values[:, velocity] == 0.0), f"{case}: {group.topic} twist not zero"


def assert_resumed(stack: Stack, t_clear: float, case: str) -> None:
    stack.wait_for(stack.running, 20.0, f"{case}: PolicyStatus 'running' again")
    stack.reengage()
    t_run = stack.wait_running(since=t_clear, timeout=20.0)
    time.sleep(1.0)
    window = stack.commands(t_run, time.time())
    for group in stack.emb.outputs:
        msgs = window.get(group.name, [])
        assert msgs, f"{case}: no command to {group.topic} after recovery"
        if group.kind == "joint_trajectory":
            assert any(len(m.points) > 1 for _, m in msgs), f"{case}: {group.topic} not moving"
        else:
            values = np.stack([conv.command_values(group, m) for _, m in msgs])
            assert np.ptp(values, axis=0).max() > 1e-6, f"{case}: {group.topic} not moving"


WATCHDOG = ("watchdog", "lost every input")  # the executor's watchdog, the handoff's loss


def run_fault(stack: Stack, case: str, inject, clear, policy_says: str | None,
              executor_says: tuple[str, ...] = WATCHDOG, hold_s: float = 1.2) -> None:
    """Inject, wait for the status to name the fault, hold past the budget, clear, resume."""
    stack.wait_running()
    t_fault = time.time()
    inject()
    try:
        if policy_says is not None:
            hold = stack.rec.policy_status.MODE_HOLD
            stack.wait_for(lambda: policy_says in (stack.rec.policy_status.reason or "")
                           and stack.rec.policy_status.mode == hold, stack.budget() + 10.0,
                           f"{case}: PolicyStatus in HOLD saying {policy_says!r}")
        time.sleep(max(0.0, t_fault + stack.budget() + hold_s - time.time()))
        stack.wait_for(lambda: any(s in stack.rec.executor_status.reason for s in executor_says),
                       3.0, f"{case}: executor status saying one of {executor_says}")
    finally:
        t_clear = time.time()
        clear()  # also when failing: the next case starts from a healthy stack
    assert_held(stack, t_fault, t_clear, case)
    assert_resumed(stack, t_clear, case)
    assert_safe(stack.emb, stack.rec)


# ---------------------------------------------------------------------------------- cases


class TestArmFaults:
    """single_arm (a JointTrajectory arm and a streamed gripper), one stack for all cases,
    in this order; it is stopped before the other stacks start."""

    def test_one_camera_drops(self, arm_stack):
        wrist = "/wrist_camera/color/image_raw"
        run_fault(arm_stack, "one camera drops", lambda: arm_stack.cut(wrist), arm_stack.restore,
                  "camera 'wrist' stale")

    def test_all_cameras_drop(self, arm_stack):
        cams = [c.topic for c in arm_stack.emb.cameras]
        run_fault(arm_stack, "all cameras drop", lambda: arm_stack.cut(*cams), arm_stack.restore,
                  "stale: last frame")

    def test_joint_state_topic_dies(self, arm_stack):
        run_fault(arm_stack, "joint states die", lambda: arm_stack.cut("/joint_states"),
                  arm_stack.restore, "joint input '/joint_states' stale")

    def test_camera_sends_garbage(self, arm_stack):
        """Frames whose step is shorter than a row: dropped with the decoder's reason."""

        def short_step(msg):
            msg.step = 5
            return msg

        run_fault(arm_stack, "garbage frames",
                  lambda: arm_stack.garble("/camera/color/image_raw", short_step),
                  arm_stack.restore, "bad frame dropped: 'rgb8' 64x48: step 5 is smaller")

    def test_joint_states_carry_nan(self, arm_stack):
        def nan_joint(msg):
            msg.position = [float("nan")] + list(msg.position[1:])
            return msg

        run_fault(arm_stack, "NaN joint states", lambda: arm_stack.garble("/joint_states",
                                                                          nan_joint),
                  arm_stack.restore, "non-finite position for 'joint1'")

    def test_policy_raises(self, arm_stack):
        run_fault(arm_stack, "policy raises", lambda: arm_stack.instruct("fault:raise"),
                  lambda: arm_stack.instruct("wave"), "inference failed: RuntimeError: injected")

    def test_policy_returns_nan(self, arm_stack):
        run_fault(arm_stack, "NaN actions", lambda: arm_stack.instruct("fault:nan"),
                  lambda: arm_stack.instruct("wave"), "non-finite actions")

    def test_inference_slower_than_the_chunk(self, arm_stack):
        """1.5 s per inference, the chunk spans 0.95 s: every chunk arrives entirely late."""
        run_fault(arm_stack, "slow inference", lambda: arm_stack.instruct("fault:slow=1.5"),
                  lambda: arm_stack.instruct("wave"), "inference too slow",
                  executor_says=("entirely late",), hold_s=2.5)
        with arm_stack.monitor.lock:
            late = [m for _, m in arm_stack.rec.executions if m.verdict == "rejected"
                    and any("entirely late" in r for r in m.reasons)]
        assert late, "no late chunk was rejected with its reason"

    def test_policy_plan_far_from_the_robot(self, arm_stack):
        """Chunks that would jump the robot are rejected at the seam; the robot holds."""
        run_fault(arm_stack, "seam jump", lambda: arm_stack.instruct("fault:jump"),
                  lambda: arm_stack.instruct("wave"), None, executor_says=("seam jump",))

    def test_executor_restarts_mid_chunk(self, arm_stack):
        stack = arm_stack
        stack.wait_running()
        t_kill = time.time()
        stack.pg.stop_node("faster_executor", sig=signal.SIGKILL)
        time.sleep(1.0)
        # nothing reaches a controller while the executor is down (the robot's controller holds)
        silent = stack.commands(t_kill + 0.2, time.time())
        assert not any(silent.values()), {k: len(v) for k, v in silent.items()}
        t_restart = time.time()
        stack.pg.start_node(stack.graph.node("faster_executor"))
        assert_resumed(stack, t_restart, "executor restart")
        with stack.monitor.lock:
            t_up = min(rt for rt, _ in stack.rec.executions if rt >= t_restart)
        stack.executor_down.append((t_kill, t_up))
        # the new executor starts from the measured position, not from its predecessor's plan
        gripper = next(g for g in stack.emb.outputs if g.kind == "forward_command")
        j = list(gripper.indices)[0]
        name = stack.emb.dimensions[j].joint
        n_before = len(stack.commands(0, t_restart)[gripper.name])
        with stack.monitor.lock:
            first_t, first = stack.rec.commands[gripper.name][n_before]
            measured = [js[name] for rt, _, js in stack.rec.joints if rt <= first_t and name in js]
        jump = abs(conv.command_values(gripper, first)[0] - measured[-1])
        assert jump <= stack.emb.seam_bound[j], f"restart jumped the gripper by {jump:.4f}"
        assert stack.pg.log("faster_executor").count("joint states complete") >= 2  # both runs

    def test_no_chunk_lost_without_a_reason(self, arm_stack):
        """Over all the cases above: every chunk the policy published got a verdict, and every
        command ever published was finite, in limits and continuous."""
        from test_closed_loop import check_commands

        stack = arm_stack
        time.sleep(0.5)
        with stack.monitor.lock:
            reported = {m.sequence for _, m in stack.rec.executions}
            seen = [(rt, m.sequence) for rt, m in stack.rec.chunks]
        assert reported and len(seen) > 50
        # chunks published while the executor was down (killed or starting) reach nobody
        down = [(rt, s) for rt, s in seen if any(a <= rt <= b for a, b in stack.executor_down)]
        missing = [s for rt, s in seen[:-2] if s not in reported and s >= min(reported)
                   and (rt, s) not in down]
        assert not missing, f"chunks without a verdict: {missing}"
        with stack.monitor.lock:  # a snapshot: the stack still runs
            snapshot = dataclasses.replace(
                stack.rec, commands={k: list(v) for k, v in stack.rec.commands.items()})
        check_commands(stack.emb, snapshot)


# ------------------------------------------------------------------------ clock jumps (sim time)


def test_sim_clock_jumps_forward_and_backward():
    """use_sim_time everywhere and a /clock from this test; r1lite_wbc (streamed arms, torso,
    grippers and a twist base). The cameras drop first (the hold of every streamed group and a
    zero twist, on sim time); then the clock jumps. A jump holds at the last command (no jump
    of the command), the executor says why, and the stack resumes on the new time base."""
    stack = Stack("r1lite_wbc", sim_time=True).start()
    try:
        stack.wait_running(since=0.0, timeout=60.0)
        # the hold of streamed arms, torso, grippers and the base twist (zero), on sim time
        cams = [c.topic for c in stack.emb.cameras]
        run_fault(stack, "r1lite cameras drop", lambda: stack.cut(*cams), stack.restore,
                  "stale: last frame")
        for case, jump in (("clock forward", 10.0), ("clock backward", -20.0)):
            stack.wait_running()
            t_jump = time.time()
            stack.jump_clock(jump)
            t_new = stack.sim_now()

            def new_base(t_jump=t_jump, t_new=t_new):  # verdicts on the new time base
                with stack.monitor.lock:
                    return [m for rt, m in stack.rec.executions if rt >= t_jump
                            and t_new - 0.1 <= conv.to_sec(m.header.stamp) <= t_new + 15.0]

            stack.wait_for(lambda: sum(m.verdict in ACCEPTED for m in new_base()) >= 2, 20.0,
                           f"{case}: chunks accepted on the new time base")
            stack.wait_running(since=t_jump)
            for m in new_base():
                if m.verdict in ACCEPTED:
                    assert conv.to_sec(m.observation_stamp) >= t_new - 1.0, (
                        f"{case}: a chunk from the old time base was executed after the jump")
            time.sleep(1.0)
        log = stack.pg.log("faster_executor")
        # the forward jump is caught by the executor's clock check or, first, by the handoff's
        # loss of inputs (the policy looks silent for the jump's length); either holds and says so
        assert re.search(r"holding: .*(clock jump|silent for (9|10)\.\d+ s)", log), (
            f"executor did not report the forward jump\n{log[-3000:]}")
        assert "time jumped back" in log, "executor did not report the backward jump"
        assert "clock jumped back" in stack.pg.log("faster_policy")
        assert_safe(stack.emb, stack.rec)
        assert_continuous(stack.emb, stack.rec)
    finally:
        stack.stop()


def assert_continuous(emb, rec) -> None:
    """No command step larger than the seam bound or the rate limit over the gap between the
    commands: the gap of their stamps (sim time), or across a clock jump (stamps not increasing
    or far apart) the gap of their receive times on this process's clock."""
    for group in emb.outputs:
        msgs = list(rec.commands.get(group.name, []))  # a snapshot: the stack still runs
        assert msgs, f"no command to {group.topic}"
        idx = list(group.indices)
        values = np.stack([conv.command_values(group, m) for _, m in msgs])
        wall = np.diff([rt for rt, _ in msgs])
        if hasattr(msgs[0][1], "header"):
            stamp = np.diff([conv.to_sec(m.header.stamp) for _, m in msgs])
            wall = np.where((stamp > 0) & (stamp < 2.0), np.maximum(stamp, wall), wall)
        gaps = wall[:, None]
        bound = np.maximum(emb.seam_bound[idx][None, :], emb.max_rate[idx][None, :] * gaps)
        steps = np.abs(np.diff(values, axis=0))
        worst = (steps / bound).max(initial=0.0)
        assert worst <= 1.0 + 1e-3, f"{group.topic}: command step {steps.max():.4f} too large"


# ------------------------------------------------------------------- model missing / corrupt


def test_model_missing_then_corrupt_then_restored(tmp_path: Path):
    """g1_inspire with the shipped model, the mock robot replaying the shared G1 bag (real frames
    and joints, as in the demo): the model directory is missing at start, then a corrupt copy
    appears, then a good one. Until it loads, PolicyStatus says why and nothing reaches a
    controller (the robot's own controller holds); then the stack runs."""
    from _paths import G1_BAG_MCAP

    from faster_ros.paths import model_path

    if not G1_BAG_MCAP.exists():
        pytest.skip(f"shared G1 bag not found at {G1_BAG_MCAP}")
    shipped = model_path("g1_inspire_vla")
    target = tmp_path / "model"
    stack = Stack("g1_inspire", model=str(target),
                  robot={"source": str(G1_BAG_MCAP), "joint_source": "commands"})
    stack.start()
    try:
        stack.wait_for(lambda: stack.rec.policy_status is not None
                       and "model directory not found" in stack.rec.policy_status.reason,
                       60.0, "PolicyStatus naming the missing model")
        assert str(target) in stack.rec.policy_status.reason
        assert stack.rec.policy_status.mode == stack.rec.policy_status.MODE_HOLD
        corrupt = tmp_path / "incoming"
        shutil.copytree(shipped, corrupt)
        weights = corrupt / "model.safetensors"
        weights.write_bytes(weights.read_bytes()[:1000])
        corrupt.rename(target)
        stack.wait_for(lambda: "failed to load" in stack.rec.policy_status.reason
                       and "not found" not in stack.rec.policy_status.reason, 30.0,
                       "PolicyStatus naming the corrupt model")
        t_corrupt = time.time()
        time.sleep(2.5)  # at least one more retry
        assert "failed to load" in stack.rec.policy_status.reason
        assert not any(stack.commands(0.0, time.time()).values()), "a command left while no model"
        assert time.time() - t_corrupt > 2.0
        shutil.rmtree(target)
        shutil.copytree(shipped, target)
        t_good = time.time()
        stack.wait_for(lambda: stack.accepted_since(t_good), 60.0, "chunks from the loaded model")
        assert_safe(stack.emb, stack.rec)
        assert "loaded model" in stack.pg.log("faster_policy")
    finally:
        stack.stop()
