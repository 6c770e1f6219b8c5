"""The ALOHA sim wrapper, the scripted transfer-cube expert and the demonstration writers.

Skipped (with the reason) only where mujoco / gym-aloha are missing or cannot render headless.
"""

import numpy as np
import pytest

from faster_ros.sim.aloha import JOINT_NAMES, AlohaSim, SimUnavailable


@pytest.fixture(scope="module")
def sim():
    try:
        s = AlohaSim(image_hw=(48, 64))
        s.reset(seed=0)
        s.render()
    except SimUnavailable as exc:
        pytest.skip(f"mujoco cannot render here: {exc}")
    yield s
    s.close()


def test_seeded_reset_and_bad_actions(sim):
    q0 = sim.reset(seed=3)
    box = sim.box_position()
    assert q0.shape == (14,) and np.all((q0[[6, 13]] > 0) & (q0[[6, 13]] <= 1.01))
    sim.reset(seed=4)
    assert not np.allclose(sim.box_position(), box)
    sim.reset(seed=3)
    assert np.allclose(sim.box_position(), box)
    with pytest.raises(ValueError, match="14 finite"):
        sim.step(np.full(14, np.nan))
    with pytest.raises(ValueError, match="14 finite"):
        sim.step(np.zeros(7))
    frame = sim.render()
    assert frame.shape == (48, 64, 3) and frame.dtype == np.uint8 and frame.std() > 1


def test_holding_still_fails_both_checks(sim):
    q0 = sim.reset(seed=0)
    for _ in range(60):
        sim.step(q0)
    o = sim.outcome()
    assert not o.strict and not o.builtin and o.box_z < 0.03 and o.max_reward == 0
    assert np.abs(sim.qpos() - q0).max() < 0.05  # position control holds the start pose


def test_scripted_expert_transfers_the_cube(sim):
    from faster_ros.sim.scripted import TransferCubeExpert

    sim.reset(seed=100)
    expert = TransferCubeExpert(sim)
    lifted = False
    for k in range(400):
        sim.step(expert.act(k))
        lifted |= sim.box_position()[2] > 0.15
    o = sim.outcome()
    assert lifted and o.strict and o.builtin and o.max_reward == 4, o
    assert o.box_z > 0.15


@pytest.mark.parametrize("seed", [101, 102])
def test_the_hand_over_tolerates_a_centimetre_of_left_arm_error(sim, seed, monkeypatch):
    """The demonstrations' hand-over sits in the middle of its window, not at an edge: moved 1 cm
    along any axis, the left grasp still ends strict, so a policy imitating it has that margin."""
    import faster_ros.sim.scripted as scripted

    nominal = scripted.LEFT_REACH.copy()
    failed = []
    for axis in range(3):
        for sign in (-1.0, 1.0):
            monkeypatch.setattr(scripted, "LEFT_REACH", nominal + sign * 0.01 * np.eye(3)[axis])
            sim.reset(seed=seed)
            expert = scripted.TransferCubeExpert(sim)
            for k in range(400):
                sim.step(expert.act(k))
            if not sim.outcome().strict:
                failed.append((axis, sign))
    assert not failed, f"seed {seed}: the hand-over failed with the left grasp moved by {failed}"


def test_a_moved_meeting_point_moves_the_hand_over(sim):
    """With the meeting point moved (``sim-demos --meet-jitter``), the right arm brings the cube
    there and the left arm's grasp follows it: the demonstrations then show the left arm going
    to the cube, wherever it is held."""
    from faster_ros.sim.record import meeting_point
    from faster_ros.sim.scripted import MEET, TransferCubeExpert

    points = np.array([meeting_point(seed, 0.04) for seed in range(20)])
    assert np.abs(points - MEET).max() <= 0.04 and points.std(0).min() > 0.01
    np.testing.assert_array_equal(meeting_point(7, 0.04), meeting_point(7, 0.04))
    np.testing.assert_array_equal(meeting_point(7, 0.0), MEET)
    with pytest.raises(ValueError, match="jitter"):
        meeting_point(7, -0.01)
    at_meeting = {}
    for offset in (np.array([0.04, -0.04, 0.03]), np.zeros(3)):
        sim.reset(seed=101)
        expert = TransferCubeExpert(sim, meet=MEET + offset)
        for k in range(400):
            sim.step(expert.act(k))
            if k == 299:
                at_meeting[tuple(offset)] = sim.box_position()
        assert sim.outcome().strict, offset
    moved = at_meeting[(0.04, -0.04, 0.03)] - at_meeting[(0.0, 0.0, 0.0)]
    np.testing.assert_allclose(moved, [0.04, -0.04, 0.03], atol=0.015)


def test_demo_writers_round_trip(sim, tmp_path):
    from faster_ros.data.lerobot import read_lerobot
    from faster_ros.data.rosbag import read_rosbag
    from faster_ros.sim.record import LeRobotWriter, write_bag

    q0 = sim.reset(seed=1)
    states, actions, frames = [], [], []
    for k in range(30):
        states.append(sim.qpos())
        frames.append(sim.render())
        a = q0.copy()
        a[0] += 0.01 * k  # a slow waist turn, visible in both state and action
        actions.append(a)
        sim.step(a)
    states, actions = np.array(states, np.float32), np.array(actions, np.float32)
    frames = np.stack(frames)
    writer = LeRobotWriter(tmp_path / "lerobot", (48, 64))
    writer.add(states, actions, frames, frame_every=1)
    write_bag(tmp_path / "bag", states, actions, frames, frame_every=1)

    (ep,) = read_lerobot(tmp_path / "lerobot")
    assert ep.action_names == JOINT_NAMES and ep.fps == 50
    np.testing.assert_allclose(ep.actions, actions, atol=1e-6)
    np.testing.assert_allclose(ep.state, states, atol=1e-6)
    frame = ep.frames["observation.images.top"].get(10)
    assert frame.shape == (48, 64, 3)
    assert np.abs(frame.astype(float) - frames[10]).mean() < 12  # H.264, lossy

    (bag_ep,) = read_rosbag(tmp_path / "bag", action_topics="/aloha/joint_command")
    assert tuple(bag_ep.action_names) == JOINT_NAMES
    assert bag_ep.actions.shape[1] == 14 and len(bag_ep.actions) >= 25
    np.testing.assert_allclose(bag_ep.actions[5], actions[5], atol=1e-5)
    assert bag_ep.frames, "no camera read back from the bag"


def test_labelled_frames_put_the_arms_at_the_given_states_and_label_the_cube(sim):
    from functools import partial

    from faster_ros.policy.processor import resize_frame
    from faster_ros.sim.vision import render_labelled

    q0 = sim.reset(seed=0)
    bent = q0.copy()
    bent[[1, 8]] += 0.3  # both shoulders
    bent[[6, 13]] = 0.2  # grippers nearly closed
    sim.set_qpos(bent)
    np.testing.assert_allclose(sim.qpos(), bent, atol=1e-6)
    with pytest.raises(ValueError, match="14 finite"):
        sim.set_qpos(bent[:7])
    states = np.stack([q0, bent])
    images, labels = render_labelled(sim, states, 3, partial(resize_frame, size=16),
                                     seed_start=7, progress=False)
    assert images.shape == (3, 16, 16, 3) and images.dtype == np.uint8
    for i in range(3):
        sim.reset(seed=7 + i)
        np.testing.assert_allclose(labels[i], sim.box_position()[:2], atol=1e-6)
    assert len({tuple(lab) for lab in labels}) == 3  # a new cube pose per frame
    _, xyz = render_labelled(sim, states, 2, partial(resize_frame, size=16), seed_start=7,
                             labels="xyz", progress=False)
    np.testing.assert_allclose(xyz[:, :2], labels[:2], atol=1e-6)
    assert xyz.shape == (2, 3) and np.all(xyz[:, 2] > 0)
    with pytest.raises(ValueError, match="labels"):
        render_labelled(sim, states, 1, partial(resize_frame, size=16), labels="z")


def test_locator_rollout_frames_follow_the_cube_through_the_hand_over(sim):
    """sim-locator's rollout frames: the scripted hand-over on a seed, a prepared frame every
    N steps, each labelled with where the cube is then (on the table first, lifted later)."""
    from faster_ros.policy.locator import LocatorConfig
    from faster_ros.sim.locator_data import ALOHA_CROP, render_rollouts

    cfg = LocatorConfig(camera="top", names=("x", "y", "z"), crop=ALOHA_CROP, height=12,
                        width=16)
    images, labels = render_rollouts(sim, 1, cfg.prepare, every=50, seed_start=0,
                                     progress=False)
    assert images.shape == (8, 12, 16, 3) and labels.shape == (8, 3)
    sim.reset(seed=0)
    np.testing.assert_allclose(labels[0], sim.box_position(), atol=1e-6)
    assert labels[-3:, 2].max() > labels[0, 2] + 0.05  # seed 0 is a success: lifted by 250+
    with pytest.raises(ValueError, match="positive"):
        render_rollouts(sim, 0, cfg.prepare)


class _ChunkPolicy:
    """Stand-in policy: a fixed chunk (or NaN) for every observation; records the states."""

    def __init__(self, actions, history_s=()):
        from types import SimpleNamespace

        self.actions, self.states, self.histories = actions, [], []
        self.config = SimpleNamespace(state_history_s=history_s)

    def predict_action_chunk(self, obs):
        from types import SimpleNamespace

        self.states.append(np.array(obs.state))
        self.histories.append(getattr(obs, "state_history", None))
        return SimpleNamespace(actions=self.actions, invalid=[])


def test_the_direct_loop_runs_chunks_through_the_executor_and_holds_on_a_bad_one(sim):
    from faster_ros.embodiment import load_embodiment
    from faster_ros.ros.sim_eval import no_stack_chunks
    from faster_ros.sim.policy_loop import run_episode

    emb = load_embodiment("aloha_sim")
    q0 = sim.reset(seed=3)
    over = np.tile(q0, (32, 1))
    over[:, 6] = emb.lower[6] - 0.03  # the left gripper just below its limit: clipped
    policy, latencies = _ChunkPolicy(over, history_s=(0.1,)), []
    r = run_episode(sim, policy, emb, seed=3, steps=40, latencies_ms=latencies)
    assert r["seed"] == 3 and r["steps"] == 40 and r["chunks"] == 3 == len(latencies)
    np.testing.assert_array_equal(policy.histories[0], [policy.states[0]])  # clamped to start
    assert policy.histories[1].shape == (1, 14)  # 5 steps (0.1 s) before the second chunk
    assert not np.allclose(policy.histories[1][0], policy.states[1])
    assert r["chunks_refused"] == 0 and not r["strict_success"]
    assert r["verdicts"]["clipped"] >= 1 and "rejected" not in r["verdicts"]
    far = np.tile(q0, (32, 1))
    far[:, 1] = 10.0  # far past the limit: garbage, refused by the executor's gate
    r = run_episode(sim, _ChunkPolicy(far), emb, seed=3, steps=32, latencies_ms=[])
    assert r["chunks_refused"] == 2 and r["verdicts"]["rejected"] == 2
    assert r["refused_by_policy"] == 0
    assert np.abs(sim.qpos() - q0).max() < 0.05  # held where it started
    nan = _ChunkPolicy(np.full((32, 14), np.nan))
    r = run_episode(sim, nan, emb, seed=3, steps=32, latencies_ms=[])
    assert r["chunks_refused"] == r["refused_by_policy"] == 2
    assert r["verdicts"] == {}  # never reached the executor
    assert no_stack_chunks([r])["refused_by_policy"] == 2
    assert np.abs(sim.qpos() - nan.states[0]).max() < 0.05  # held where it started


def test_sim_eval_no_stack_writes_results_labelled_no_stack(sim, tmp_path):
    import json

    from faster_ros.ros.sim_eval import main

    assert main(["--model", "builtin:wave", "--no-stack", "--episodes", "2", "--seed", "5",
                 "--episode-steps", "20", "--out", str(tmp_path)]) == 0
    r = json.loads((tmp_path / "results.json").read_text())
    assert r["label"] == "builtin:wave (no stack)" and r["stack"] is False
    assert r["seeds"] == [5, 6] and r["episodes"] == 2 and r["strict_successes"] == 0
    assert r["chunks"]["published"] == 4 and r["latency_ms"]["chunks"] == 4


def test_dart_noise_moves_the_arms_off_the_plan_but_records_the_plan():
    from faster_ros.sim.record import NOISE_FADE, arm_perturbation

    off = arm_perturbation(400, 0.05, seed=3)
    assert np.array_equal(off, arm_perturbation(400, 0.05, seed=3))  # seeded
    assert not off[:, [6, 13]].any() and not off[NOISE_FADE[1]:].any()
    approach = np.stack([arm_perturbation(400, 0.05, s)[: NOISE_FADE[0]] for s in range(40)])
    assert 0.04 < approach[..., [0, 1, 2, 7, 8]].std() < 0.06


def test_a_noisy_episode_keeps_the_experts_actions(sim):
    from faster_ros.sim.record import run_episode
    from faster_ros.sim.scripted import REAIM_STEP

    clean_states, clean_actions, _, _ = run_episode(sim, 4, steps=140, render=False)
    states, actions, _, _ = run_episode(sim, 4, steps=140, render=False, noise=0.05)
    assert 140 < REAIM_STEP  # before the re-aim the plan does not depend on the states
    np.testing.assert_array_equal(actions, clean_actions)
    assert np.abs(states[20:100] - clean_states[20:100])[:, [0, 7]].max() > 0.02


def test_rendering_does_not_change_an_episode(sim):
    """generate() pre-runs a noisy episode unrendered and renders only the kept ones: the two
    runs must be the same episode."""
    from faster_ros.sim.record import run_episode

    quick = run_episode(sim, 11, steps=150, render=False, noise=0.05)
    shown = run_episode(sim, 11, steps=150, render=True, frame_every=10, noise=0.05)
    np.testing.assert_array_equal(quick[0], shown[0])
    np.testing.assert_array_equal(quick[1], shown[1])
    assert shown[2].shape[0] == 15


def test_a_recovery_demo_starts_where_the_policy_left_the_arms(sim):
    """One DAgger round: the policy drives the first steps (not recorded), then the expert plans
    from the arms' and the cube's state there; the recording starts at the hand-over."""
    from faster_ros.embodiment import load_embodiment
    from faster_ros.sim.policy_loop import drive
    from faster_ros.sim.record import run_recovery_episode
    from faster_ros.sim.scripted import TransferCubeExpert

    emb = load_embodiment("aloha_sim")
    q0 = sim.reset(seed=6)
    aside = np.tile(q0, (32, 1))
    aside[:, 7] += 0.2  # the policy swings the right waist away (within the seam bound)
    policy = _ChunkPolicy(aside)
    states, actions, frames, _ = run_recovery_episode(sim, 6, policy, emb, takeover=40,
                                                      steps=60, frame_every=2)
    assert sim.step_count == 100 and states.shape == actions.shape == (60, 14)
    assert frames.shape[0] == 30 and len(policy.states) == 3  # chunks at steps 0, 16, 32
    assert states[0, 7] - q0[7] > 0.15  # recorded from where the policy left the arm
    sim.reset(seed=6)
    drive(sim, policy, emb, 40, [], [q0], latency_steps=0)
    np.testing.assert_allclose(sim.qpos(), states[0], atol=1e-9)  # the same 40 steps
    np.testing.assert_allclose(actions, TransferCubeExpert(sim, 60).actions, atol=1e-9)


def test_recovery_demo_options_are_checked_before_anything_loads(tmp_path, capsys):
    from faster_ros.sim.record import main

    for extra, message in ((["--noise", "0.05"], "separate recipes"),
                           (["--takeover", "9", "3"], "FIRST <= LAST")):
        with pytest.raises(SystemExit) as exc:
            main(["--out", str(tmp_path), "--recover", "no_such_policy", *extra])
        assert exc.value.code == 2 and message in capsys.readouterr().err
    assert not any(tmp_path.iterdir())  # nothing written
