"""The gripper latch: a gripper holding an object stays closed through the policy's wanders,
opens when asked clearly, at the dimension's rate; an empty gripper is never latched; the same
in the executor and in the direct sim loop (which runs the executor)."""

import numpy as np
import pytest

from faster_ros.control import Chunk, ChunkExecutor
from faster_ros.control.latch import GripperLatch, apply_latches
from faster_ros.embodiment import load_embodiment, parse_embodiment

LATCH = GripperLatch(0, close_below=0.3, open_above=0.8, holding_gap=0.25, max_step=0.12)


def test_a_held_object_stays_held_through_wanders_and_a_firmer_close_is_followed():
    values = np.array([0.5, 0.25, 0.6, 0.1, 0.7, 0.05, 0.5])
    out, changed = LATCH.apply(values, start=0.2, measured=0.6)  # fingers stopped on the cube
    np.testing.assert_allclose(out, [0.2, 0.2, 0.2, 0.1, 0.1, 0.05, 0.05])
    assert changed == 5


def test_release_at_open_above_then_rises_at_the_rate_until_it_meets_the_policy():
    values = np.array([0.7, 0.9, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.95])
    out, _ = LATCH.apply(values, start=0.0, measured=0.55)  # 0.7 begins the rise to 0.9
    np.testing.assert_allclose(out, [0.12, 0.24, 0.36, 0.48, 0.6, 0.72, 0.84, 0.96, 0.95])
    assert np.all(np.diff(out) <= 0.12 + 1e-12)


def test_a_ramp_that_crosses_open_above_late_opens_from_where_it_begins():
    # the demonstrated opening: 0 to 1 in 20 steps, here from step 4; it crosses 0.8 at step 20,
    # after the 16 steps that run before the next chunk replaces this one
    ramp = np.clip((np.arange(32) - 4) / 20.0, 0.0, 1.0)
    values = np.r_[0.5, 0.05, 0.2, 0.0, ramp[4:]]  # a wander first: held
    out, changed = LATCH.apply(values, start=0.0, measured=0.6)
    np.testing.assert_allclose(out[:4], 0.0)
    np.testing.assert_allclose(out[4:], ramp[4:])  # the policy's own ramp, within the rate
    assert changed == 3
    # the next chunk starts from the command in force after 16 steps: no longer "holding"
    assert out[15] >= LATCH.close_below and not LATCH.holding(out[15], 0.6)
    # a wander that never reaches open_above stays held however it rises
    wander = np.minimum(ramp, 0.75)
    held, _ = LATCH.apply(wander, start=0.0, measured=0.6)
    np.testing.assert_allclose(held, 0.0)


def test_an_empty_or_open_gripper_passes_through_untouched():
    opening = np.linspace(0.05, 0.35, 6)  # closed and empty (fingers at 0.1): opens freely
    for start, measured in ((0.0, 0.1), (1.0, 1.0), (0.0, None), (0.2, np.nan)):
        out, changed = LATCH.apply(opening, start=start, measured=measured)
        np.testing.assert_array_equal(out, opening)
        assert changed == 0
    with pytest.raises(ValueError, match="close_below 0.8 must be below open_above 0.3"):
        GripperLatch(0, 0.8, 0.3, 0.25, 0.1)


def test_non_finite_chunk_is_left_for_the_gate():
    values = np.array([0.6, np.nan, 0.6])
    out, changed = LATCH.apply(values, start=0.1, measured=0.6)
    assert changed == 0 and np.isnan(out[1])


def test_apply_latches_touches_only_the_latched_dimensions():
    positions = np.tile([0.5, 0.6], (4, 1))
    latch = GripperLatch(1, 0.3, 0.8, 0.25, 0.1)
    out, changed = apply_latches(positions, np.array([0.0, 0.1]), np.array([0.6, 0.6]), (latch,))
    np.testing.assert_allclose(out[:, 0], 0.5)
    np.testing.assert_allclose(out[:, 1], 0.1)
    assert changed == {1: 4}
    same, none = apply_latches(positions, np.zeros(2), None, ())
    assert same is positions and none == {}


ALOHA = load_embodiment("aloha_sim")
GRIP = ALOHA.index("left_arm_gripper")


def test_aloha_config_latches_both_grippers_at_their_rate():
    assert [(la.index, la.close_below, la.open_above, la.holding_gap)
            for la in ALOHA.latches] == [(GRIP, 0.3, 0.8, 0.25),
                                         (ALOHA.index("right_arm_gripper"), 0.3, 0.8, 0.25)]
    assert ALOHA.latches[0].max_step == pytest.approx(6.0 / 50.0)
    no_latch = parse_embodiment(_raw_without_latches(), "x.yaml")
    assert no_latch.latches == ()


def _raw_without_latches() -> dict:
    import yaml

    from faster_ros.paths import config_path

    raw = yaml.safe_load(config_path("aloha_sim").read_text())
    for dim in raw["dimensions"]:
        dim.pop("latch", None)
    return raw


def _holding_executor() -> tuple[ChunkExecutor, np.ndarray]:
    """An executor commanding the left gripper closed (0) on a cube that stops it at 0.55."""
    ex = ChunkExecutor(ALOHA)
    pose = ALOHA.home.copy()
    pose[GRIP] = 0.0
    ex.set_measured(pose, 0.0)
    assert ex.submit(Chunk(np.tile(pose, (32, 1)), start_time=0.0, dt=ALOHA.control.dt),
                     0.0).accepted
    measured = pose.copy()
    measured[GRIP] = 0.55
    measured[0] = np.nan  # another joint's reading missing: the gripper's still counts
    ex.set_measured(measured, 0.1)
    return ex, pose


def test_executor_holds_a_held_object_through_a_wandering_chunk():
    ex, pose = _holding_executor()
    wander = np.tile(pose, (32, 1))
    wander[10:20, GRIP] = 0.1 + np.linspace(0, 0.5, 10)  # up to 0.6, never 0.8
    result = ex.submit(Chunk(wander, start_time=0.2, dt=ALOHA.control.dt), 0.2)
    assert result.accepted, result.reasons
    times = 0.2 + ALOHA.control.dt * np.arange(32)
    assert np.all(ex.commanded_at(times)[:, GRIP] <= 1e-12)
    assert ex.status.latched_steps == 10
    kept = result.chunk.horizon  # the anchor drops the steps already past
    assert result.action == "ok" and result.reasons == (
        f"left_arm_gripper: gripper latch changed 10 of {kept} steps (it holds an object: kept "
        f"closed until the policy asks for 0.8 or more, then opened at max_rate)",)


def test_executor_releases_on_a_clear_request_within_the_rate_gate():
    ex, pose = _holding_executor()
    release = np.tile(pose, (32, 1))
    release[:, GRIP] = 1.0  # a jump the rate gate would refuse without the latch's ramp
    result = ex.submit(Chunk(release, start_time=0.2, dt=ALOHA.control.dt), 0.2)
    assert result.accepted, result.reasons
    grip = ex.commanded_at(0.2 + ALOHA.control.dt * np.arange(32))[:, GRIP]
    assert grip[-1] == pytest.approx(1.0)
    assert np.max(np.diff(grip)) <= ALOHA.max_rate[GRIP] * ALOHA.control.dt + 1e-9


def test_executor_leaves_an_empty_gripper_alone():
    ex = ChunkExecutor(ALOHA)
    pose = ALOHA.home.copy()
    pose[GRIP] = 0.1
    ex.set_measured(pose, 0.0)
    opening = np.tile(pose, (32, 1))
    opening[:, GRIP] = np.linspace(0.1, 0.5, 32)
    assert ex.submit(Chunk(opening, start_time=0.0, dt=ALOHA.control.dt), 0.0).accepted
    grip = ex.commanded_at(ALOHA.control.dt * np.arange(32))[:, GRIP]
    np.testing.assert_allclose(grip[10:], opening[10:, GRIP])  # after the seam blend
    assert ex.status.latched_steps == 0


class _CubeInLeftGripper:
    """Stands in for the sim in the direct loop: the joints go where commanded, except that the
    left gripper's fingers stop on a cube at 0.55 while commanded below that."""

    def __init__(self, pose: np.ndarray):
        self.q, self.step_count, self.commands = pose.copy(), 0, []

    @property
    def time(self) -> float:
        return self.step_count * ALOHA.control.dt

    def step(self, action):
        self.commands.append(np.array(action))
        self.q = np.array(action, dtype=np.float64)
        self.q[GRIP] = max(self.q[GRIP], 0.55)
        self.step_count += 1

    def qpos(self) -> np.ndarray:
        return self.q.copy()

    def render(self) -> np.ndarray:
        return np.zeros((4, 4, 3), np.uint8)


class _FixedChunk:
    def __init__(self, gripper: np.ndarray, pose: np.ndarray):
        self.actions = np.tile(pose, (32, 1))
        self.actions[:, GRIP] = gripper

    def predict_action_chunk(self, obs):
        return type("Out", (), {"actions": self.actions, "invalid": []})()


@pytest.mark.parametrize("latency", [0, 3])
def test_direct_sim_loop_latches_from_the_command_it_takes_over(latency):
    from faster_ros.sim.policy_loop import drive

    pose = ALOHA.home.copy()
    pose[GRIP] = 0.55  # fingers on the cube; the expert commanded 0
    expert = pose.copy()
    expert[GRIP] = 0.0
    sim = _CubeInLeftGripper(pose)
    drive(sim, _FixedChunk(0.6, pose), ALOHA, 40, [], [pose], command=expert,
          latency_steps=latency)
    grip = np.array(sim.commands)[:, GRIP]
    assert np.all(grip == 0.0)  # the wander to 0.6 never loosened the grip
    sim = _CubeInLeftGripper(pose)
    drive(sim, _FixedChunk(0.6, pose), ALOHA, 40, [], [pose], latency_steps=latency)
    assert np.array(sim.commands)[-1, GRIP] == pytest.approx(0.6)  # from the measured 0.55


def test_direct_sim_loop_lets_the_whole_chunk_decide_a_release():
    from faster_ros.sim.policy_loop import drive

    pose = ALOHA.home.copy()
    pose[GRIP] = 0.55
    expert = pose.copy()
    expert[GRIP] = 0.0
    sim = _CubeInLeftGripper(pose)
    rise = np.clip(np.arange(32) / 20.0, 0.0, 1.0)  # crosses 0.8 at step 16
    drive(sim, _FixedChunk(rise, pose), ALOHA, 16, [], [pose], command=expert, latency_steps=0)
    grip = np.array(sim.commands)[:, GRIP]
    assert grip[-1] > 0.5 and np.all(np.diff(grip) >= -1e-12)  # opening, not held
    assert np.all(np.diff(grip) <= ALOHA.max_rate[GRIP] * ALOHA.control.dt + 1e-9)
