"""The gripper latch: a closed gripper stays closed through the policy's wanders, opens when
asked clearly, at the dimension's rate, in the executor and in the direct sim loop alike."""

import numpy as np
import pytest

from faster_ros.control import Chunk, ChunkExecutor
from faster_ros.control.latch import GripperLatch, apply_latches
from faster_ros.embodiment import load_embodiment, parse_embodiment
from faster_ros.sim.policy_loop import executable

LATCH = GripperLatch(0, close_below=0.3, open_above=0.8, max_step=0.12)


def test_wander_inside_the_band_is_held_closed_and_a_firmer_close_is_followed():
    values = np.array([0.5, 0.25, 0.6, 0.1, 0.7, 0.05, 0.5])
    out, changed = LATCH.apply(values, start=1.0)
    np.testing.assert_allclose(out, [0.5, 0.25, 0.25, 0.1, 0.1, 0.05, 0.05])
    assert changed == 3


def test_release_at_open_above_then_rises_at_the_rate_until_it_meets_the_policy():
    values = np.array([0.7, 0.9, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.95])
    out, _ = LATCH.apply(values, start=0.0)  # starts closed: the command in force is 0
    np.testing.assert_allclose(out, [0.0, 0.12, 0.24, 0.36, 0.48, 0.6, 0.72, 0.84, 0.95])
    assert np.all(np.diff(out) <= 0.12 + 1e-12)


def test_open_gripper_passes_through_untouched_and_the_start_decides_the_state():
    ramp = np.linspace(1.0, 0.35, 6)  # closing, still above close_below
    out, changed = LATCH.apply(ramp, start=1.0)
    np.testing.assert_array_equal(out, ramp)
    assert changed == 0
    held, _ = LATCH.apply(np.array([0.6, 0.6]), start=0.2)  # closed command in force
    np.testing.assert_allclose(held, [0.2, 0.2])
    with pytest.raises(ValueError, match="close_below 0.8 must be below open_above 0.3"):
        GripperLatch(0, 0.8, 0.3, 0.1)


def test_non_finite_chunk_is_left_for_the_gate():
    values = np.array([0.6, np.nan, 0.6])
    out, changed = LATCH.apply(values, start=0.1)
    assert changed == 0 and np.isnan(out[1])


def test_apply_latches_touches_only_the_latched_dimensions():
    positions = np.tile([0.5, 0.6], (4, 1))
    latch = GripperLatch(1, 0.3, 0.8, 0.1)
    out, changed = apply_latches(positions, np.array([0.0, 0.1]), (latch,))
    np.testing.assert_allclose(out[:, 0], 0.5)
    np.testing.assert_allclose(out[:, 1], 0.1)
    assert changed == 4
    same, n = apply_latches(positions, np.zeros(2), ())
    assert same is positions and n == 0


ALOHA = load_embodiment("aloha_sim")
GRIP = ALOHA.index("left_arm_gripper")


def test_aloha_config_latches_both_grippers_at_their_rate():
    assert [(latch.index, latch.close_below, latch.open_above) for latch in ALOHA.latches] == [
        (GRIP, 0.3, 0.8), (ALOHA.index("right_arm_gripper"), 0.3, 0.8)]
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


def _closed_executor(grip: float = 0.0) -> tuple[ChunkExecutor, np.ndarray]:
    ex = ChunkExecutor(ALOHA)
    pose = ALOHA.home.copy()
    pose[GRIP] = grip
    ex.set_measured(pose, 0.0)
    held = np.tile(pose, (32, 1))
    assert ex.submit(Chunk(held, start_time=0.0, dt=ALOHA.control.dt), 0.0).accepted
    return ex, pose


def test_executor_holds_a_closed_gripper_through_a_wandering_chunk():
    ex, pose = _closed_executor()
    wander = np.tile(pose, (32, 1))
    wander[:, GRIP] = 0.0
    wander[10:20, GRIP] = 0.1 + np.linspace(0, 0.5, 10)  # up to 0.6, never 0.8
    result = ex.submit(Chunk(wander, start_time=0.2, dt=ALOHA.control.dt), 0.2)
    assert result.accepted, result.reasons
    times = 0.2 + ALOHA.control.dt * np.arange(32)
    assert np.all(ex.commanded_at(times)[:, GRIP] <= 1e-12)
    assert ex.status.latched_steps == 10


def test_executor_opens_on_a_clear_request_within_the_rate_gate():
    ex, pose = _closed_executor()
    release = np.tile(pose, (32, 1))
    release[:, GRIP] = 1.0  # a jump the rate gate would refuse without the latch's ramp
    result = ex.submit(Chunk(release, start_time=0.2, dt=ALOHA.control.dt), 0.2)
    assert result.accepted, result.reasons
    grip = ex.commanded_at(0.2 + ALOHA.control.dt * np.arange(32))[:, GRIP]
    assert grip[-1] == pytest.approx(1.0)
    assert np.max(np.diff(grip)) <= ALOHA.max_rate[GRIP] * ALOHA.control.dt + 1e-9


def test_direct_sim_loop_latches_from_the_last_command_sent():
    state = ALOHA.home.copy()
    state[GRIP] = 0.45  # the fingers stop on the cube; the command in force was 0
    command = state.copy()
    command[GRIP] = 0.0
    chunk = np.tile(state, (32, 1))
    chunk[:, GRIP] = 0.6
    out = type("Out", (), {"actions": chunk, "ok": True, "invalid": []})()
    actions, refused = executable(out, state, ALOHA, command)
    assert not refused and np.all(actions[:, GRIP] == 0.0)
    actions, _ = executable(out, state, ALOHA)  # from the measured 0.45: open, untouched
    assert np.all(actions[:, GRIP] == 0.6)
