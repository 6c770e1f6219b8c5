"""faster-ros replay (offline and --tokenizer-only) on the shared G1 bags, the bad-bag cases, and
faster-ros record reading back every message."""

import json
import shutil
import sqlite3
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from _paths import G1_BAG_DB3, G1_BAG_MCAP

from faster_ros.cli import main
from faster_ros.embodiment import load_embodiment

CAMERA = "/camera/cam_high/image_raw/compressed"
JOINTS = "/joint_states"
COMMAND = "/joint_command"

needs_bags = pytest.mark.skipif(not (G1_BAG_MCAP.exists() and G1_BAG_DB3.exists()),
                                reason="shared G1 bags not available")


def replay(args, capsys):
    code = main(["replay", *map(str, args), "--no-progress"])
    return code, capsys.readouterr()


def write_slice(dst: Path, windows: dict[str, tuple[float, float]], storage: str = "mcap",
                empty: tuple[str, ...] = (), rename: dict[str, str] | None = None) -> Path:
    """Copy topic -> (from_s, to_s) windows of the G1 bag (seconds from its start) to a new bag;
    topics in ``empty`` get a connection but no message; ``rename`` writes a topic under another
    name."""
    rename = rename or {}
    from rosbags.highlevel import AnyReader

    from faster_ros.replay.bagwriter import BagWriter

    with AnyReader([G1_BAG_MCAP]) as reader, BagWriter(dst, storage) as writer:
        t0 = reader.start_time
        for c in reader.connections:
            if c.topic in windows or c.topic in empty:
                writer.add(rename.get(c.topic, c.topic), c.msgtype)
        conns = [c for c in reader.connections if c.topic in windows]
        for conn, t, raw in reader.messages(connections=conns):
            lo, hi = windows[conn.topic]
            if lo <= (t - t0) * 1e-9 <= hi:
                writer.write(rename.get(conn.topic, conn.topic), t, raw)
    return dst


# ------------------------------------------------------------------------------ offline replay


@needs_bags
def test_replay_of_both_shared_bags_writes_the_report(tmp_path, capsys):
    codes = {}
    for bag in (G1_BAG_MCAP, G1_BAG_DB3):
        out = tmp_path / bag.name
        code, io = replay([bag, "--embodiment", "g1_inspire", "--duration", "2.5",
                           "--max-chunks", "3", "--out", out], capsys)
        assert code == 0, io.err
        assert {p.name for p in out.iterdir()} == {"report.json", "report.png", "report.html"}
        report = json.loads((out / "report.json").read_text())
        fig = report["figures"]
        assert fig["compared_with"] == f"command {COMMAND}"
        assert fig["published"] == 3 and fig["latency"]["chunks"] == 3
        err = fig["error"]
        assert set(err["per_group"]) == {"arms", "hands"}
        assert len(err["per_joint_mae"]) == 26 and len(err["per_step_mae"]) == 32
        assert 0.0 < err["mae"] < 0.5 and 0.0 <= err["vrr@0.001"] <= err["vrr@0.01"] <= 1.0
        assert fig["invalid_tokens"]["total"] == 0 and fig["seam"]["seams"] == 2
        assert fig["hold_state"]["mae"] > 0 and fig["hold_last_command"]["mae"] > 0
        assert "hold last command" in (out / "report.html").read_text()
        codes[bag.name] = [c["codes"] for c in report["chunks"]]
    # the same recording in both storage formats, greedy decoding: the same tokens
    assert codes[G1_BAG_MCAP.name] == codes[G1_BAG_DB3.name]


@needs_bags
def test_replay_without_command_topic_compares_with_future_states(tmp_path, capsys):
    bag = write_slice(tmp_path / "no_cmd", {CAMERA: (0, 2), JOINTS: (0, 2)})
    code, io = replay([bag, "--embodiment", "g1_inspire", "--max-chunks", "2", "--out",
                       tmp_path / "out", "--model", "builtin:wave"], capsys)
    assert code == 0, io.err
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["figures"]["compared_with"] == "joint states (future)"
    assert any("future joint states" in n for n in report["notes"])
    # the wave moves around the measured state: its error is of the order of its amplitude
    assert 0.0 < report["figures"]["error"]["mae"] < 0.2


@needs_bags
def test_tokenizer_only_compares_with_fast(tmp_path, capsys):
    out = tmp_path / "tok"
    code, io = replay([G1_BAG_MCAP, "--embodiment", "g1_inspire", "--tokenizer-only",
                       "--duration", "3", "--out", out], capsys)
    assert code == 0, io.err
    report = json.loads((out / "tokenizer_report.json").read_text())
    emb = load_embodiment("g1_inspire")
    assert report["state_relative"] is True  # the shipped policy's bundled tokenizer
    assert report["chunks"] == 8  # 3 s at 30 Hz, 32-step chunks every 8 steps
    vq = report["fastervq"]
    assert vq["tokens_per_chunk"] == emb.tokenizer.tokens_per_chunk
    assert 0.0 < vq["vrr_element@0.01"] <= 1.0 and vq["mean_abs_error"] > 0
    fast = [v for k, v in report["fast"].items() if "error" not in v]
    assert fast and all(v["tokens_per_chunk"] > 0 for v in fast)
    assert (out / "tokenizer_recon.png").stat().st_size > 0


# ------------------------------------------------------------------------------ bad bags


def _truncated_mcap(tmp_path):
    dst = tmp_path / "truncated"
    shutil.copytree(G1_BAG_MCAP, dst)
    for f in dst.glob("*.mcap"):
        f.chmod(0o644)
        data = f.read_bytes()
        f.write_bytes(data[: len(data) * 2 // 5])
    return dst


def _corrupt_db3(tmp_path):
    dst = tmp_path / "corrupt"
    shutil.copytree(G1_BAG_DB3, dst)
    for f in dst.glob("*.db3"):
        f.chmod(0o644)
        data = bytearray(f.read_bytes())
        data[4096: len(data) - 4096] = bytes(len(data) - 8192)  # pages zeroed
        f.write_bytes(bytes(data))
    return dst


def _unknown_type(tmp_path):
    """/joint_states declared as a type that neither the bag nor ROS 2 defines."""
    dst = tmp_path / "unknown"
    shutil.copytree(G1_BAG_DB3, dst)
    for f in dst.iterdir():
        f.chmod(0o644)
    db = next(dst.glob("*.db3"))
    with sqlite3.connect(db) as con:
        con.execute("update topics set type='acme_msgs/msg/JointSample' where name=?",
                    (JOINTS,))
    meta = dst / "metadata.yaml"
    meta.write_text(meta.read_text().replace("type: sensor_msgs/msg/JointState",
                                             "type: acme_msgs/msg/JointSample"))
    return dst


BAD_BAGS = {
    "missing_topic": (lambda p: write_slice(p / "b", {JOINTS: (0, 2), COMMAND: (0, 2)}),
                      f"{CAMERA} needed by embodiment g1_inspire not in bag"),
    "empty_topic": (lambda p: write_slice(p / "b", {JOINTS: (0, 2)}, empty=(CAMERA,)),
                    f"{CAMERA} have no messages"),
    "unknown_type": (_unknown_type, "unknown message type 'acme_msgs/msg/JointSample' on "
                                    "/joint_states"),
    "wrong_type": (lambda p: write_slice(p / "b", {CAMERA: (0, 2), COMMAND: (0, 2)},
                                         rename={COMMAND: JOINTS}),
                   "joint input topic /joint_states has message type "
                   "trajectory_msgs/msg/JointTrajectory, expected sensor_msgs/msg/JointState"),
    "truncated_mcap": (_truncated_mcap, "truncated"),
    "corrupt_db3": (_corrupt_db3, "corrupt"),
    "no_overlap": (lambda p: write_slice(p / "b", {CAMERA: (0, 1), JOINTS: (3, 4)}),
                   "cameras and joint inputs never overlap in time"),
    "not_a_bag": (lambda p: p, "cannot open bag"),
}


@needs_bags
@pytest.mark.parametrize("case", sorted(BAD_BAGS))
@pytest.mark.parametrize("mode", [[], ["--tokenizer-only"], ["--publish"]])
def test_bad_bag_names_the_problem_and_writes_nothing(case, mode, tmp_path, capsys):
    make, expected = BAD_BAGS[case]
    (tmp_path / "in").mkdir()
    bag = make(tmp_path / "in")
    out = tmp_path / "out"
    code, io = replay([bag, "--embodiment", "g1_inspire", "--out", out, *mode], capsys)
    assert code == 2, (io.out, io.err)
    assert expected in io.err and str(bag) in io.err, io.err
    assert io.err.count("\n") == 1  # one line, no traceback
    assert not out.exists()


# ------------------------------------------------------------------------------ record


@pytest.mark.ros
@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_recorded_bag_reads_back_every_message(storage, tmp_path, ros_context):
    """faster-ros record's record(): the stack's inputs, outputs and mode changes published here
    are all in the bag, and rosbags reads them back (faster_msgs definitions embedded)."""
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.node import Node
    from rosbags.highlevel import AnyReader
    from sensor_msgs.msg import JointState
    from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

    from faster_msgs.msg import ActionChunk, ModeChange, PolicyStatus
    from faster_ros import graph
    from faster_ros.ros.qos import CHUNK_QOS, COMMAND_QOS, SENSOR_PUB_QOS, STATUS_QOS
    from faster_ros.ros.recorder import record

    emb = load_embodiment("g1_inspire")
    out = tmp_path / "rec"
    counts: dict = {}
    thread = threading.Thread(target=lambda: counts.update(
        record(out, emb, storage=storage, duration_s=8.0)))
    node = Node("publisher", context=ros_context)
    pubs = {
        JOINTS: node.create_publisher(JointState, JOINTS, SENSOR_PUB_QOS),
        graph.CHUNK_TOPIC: node.create_publisher(ActionChunk, graph.CHUNK_TOPIC, CHUNK_QOS),
        graph.MODE_TOPIC: node.create_publisher(ModeChange, graph.MODE_TOPIC, STATUS_QOS),
        graph.STATUS_TOPIC: node.create_publisher(PolicyStatus, graph.STATUS_TOPIC, STATUS_QOS),
        emb.outputs[0].topic: node.create_publisher(JointTrajectory, emb.outputs[0].topic,
                                                    COMMAND_QOS),
    }
    executor = SingleThreadedExecutor(context=ros_context)
    executor.add_node(node)
    thread.start()
    try:
        deadline = time.monotonic() + 6.0
        while time.monotonic() < deadline and not all(
                p.get_subscription_count() for p in pubs.values()):
            executor.spin_once(timeout_sec=0.05)
        assert all(p.get_subscription_count() for p in pubs.values()), "recorder not seen"
        time.sleep(1.0)  # the publisher sees the match first: let the recorder's side finish
        n = 5
        for k in range(n):
            pubs[JOINTS].publish(JointState(name=["a", "b"], position=[k, -k]))
            chunk = ActionChunk(embodiment="g1_inspire", sequence=k, horizon=2, dims=1,
                                positions=[0.5 * k, 0.25], codes=[k, 7])
            pubs[graph.CHUNK_TOPIC].publish(chunk)
            pubs[graph.MODE_TOPIC].publish(ModeChange(from_mode="HOLD", to_mode="POLICY",
                                                      reason=f"step {k}", requested_by="test"))
            pubs[graph.STATUS_TOPIC].publish(PolicyStatus(mode="POLICY", chunks_produced=k))
            pubs[emb.outputs[0].topic].publish(JointTrajectory(
                joint_names=["j"], points=[JointTrajectoryPoint(positions=[float(k)])]))
            time.sleep(0.1)  # status / mode are keep-last 1: one at a time
    finally:
        thread.join(timeout=20)
        executor.shutdown()
        node.destroy_node()
    assert not thread.is_alive()
    seen: dict = {}
    with AnyReader([out]) as reader:  # no typestore given: the bag carries the definitions
        assert {c.msgtype for c in reader.connections} >= {
            "faster_msgs/msg/ActionChunk", "faster_msgs/msg/ModeChange",
            "faster_msgs/msg/PolicyStatus", "faster_msgs/msg/ChunkExecution"}
        for conn, _, raw in reader.messages():
            seen.setdefault(conn.topic, []).append(reader.deserialize(raw, conn.msgtype))
    assert {t: len(v) for t, v in seen.items()} == {t: n for t in pubs}
    assert counts == {t: (n if t in pubs else 0) for t in counts}
    chunks = seen[graph.CHUNK_TOPIC]
    assert [c.sequence for c in chunks] == list(range(n))
    np.testing.assert_allclose(chunks[3].positions, [1.5, 0.25])
    assert list(chunks[3].codes) == [3, 7]
    assert [m.reason for m in seen[graph.MODE_TOPIC]] == [f"step {k}" for k in range(n)]
    assert [list(m.position) for m in seen[JOINTS]][2] == [2.0, -2.0]


@needs_bags
def test_offline_replay_at_given_stamps_and_with_late_joints():
    """at_stamps assembles exactly at those frames; late_joints makes the frame arrive before
    the joint message of its stamp, so the observation holds the previous joint sample."""
    from faster_ros.inference import load_policy
    from faster_ros.replay.bag import load_inputs
    from faster_ros.replay.offline import run_offline

    emb = load_embodiment("g1_inspire")
    inputs = load_inputs(G1_BAG_MCAP, emb, duration_s=1.0)
    frames = [s.stamp for s in inputs.samples if s.kind == "camera"]
    wanted = [frames[5], frames[17]]
    policy = load_policy("builtin:wave", "", "cpu", True, emb)
    on_time = run_offline(inputs, policy, at_stamps=wanted, progress=False)
    late = run_offline(inputs, policy, at_stamps=wanted, late_joints=True, progress=False)
    assert [c.stamp for c in on_time.chunks] == wanted == [c.stamp for c in late.chunks]
    joints = [s for s in inputs.samples if s.kind == "joints"]
    by_stamp = {s.stamp: s.payload[1] for s in joints}
    previous = {b.stamp: a.payload[1] for a, b in zip(joints, joints[1:])}
    for a, b in zip(on_time.chunks, late.chunks):
        np.testing.assert_array_equal(a.state, by_stamp[a.stamp])
        np.testing.assert_array_equal(b.state, previous[b.stamp])
        assert not np.array_equal(a.state, b.state)


@needs_bags
@pytest.mark.ros
def test_publish_plays_on_clock_at_the_chosen_rate(ros_context):
    """--publish's node: every input message once, header stamps unchanged, /clock never behind
    a message it precedes, and the bag's span played in span / rate of wall time."""
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.node import Node
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from rosbags.highlevel import AnyReader
    from rosgraph_msgs.msg import Clock
    from sensor_msgs.msg import CompressedImage, JointState

    from faster_ros.ros.bag_publisher import BagPublisherNode, input_topics, read_raw

    emb = load_embodiment("g1_inspire")
    rate, span = 4.0, 1.0
    messages, types = read_raw(G1_BAG_MCAP, input_topics(emb), duration_s=span)
    player = BagPublisherNode(messages, types, rate=rate, context=ros_context)
    listener = Node("listener", context=ros_context)
    got: list = []
    clock = [0.0]

    def on_clock(msg):
        clock[0] = max(clock[0], msg.clock.sec + msg.clock.nanosec * 1e-9)

    def on_msg(topic):
        return lambda msg: got.append((topic, msg.header.stamp.sec + msg.header.stamp.nanosec
                                       * 1e-9, clock[0]))

    listener.create_subscription(Clock, "/clock", on_clock, 100)
    # reliable and deep: this checks the player, not how fast this process takes messages (a
    # 5-deep sensor queue lost 10 of 62 once, on a loaded machine, at 4x)
    every = QoSProfile(depth=len(messages) + 10, reliability=ReliabilityPolicy.RELIABLE)
    listener.create_subscription(JointState, JOINTS, on_msg(JOINTS), every)
    listener.create_subscription(CompressedImage, CAMERA, on_msg(CAMERA), every)
    executor = SingleThreadedExecutor(context=ros_context)
    executor.add_node(listener)
    assert player.wait_for_subscribers(10.0)
    time.sleep(1.0)  # let the listener's side of the match complete too
    wall: list = []
    thread = threading.Thread(target=lambda: wall.append((time.monotonic(), player.play(),
                                                          time.monotonic())))
    thread.start()
    end = time.monotonic() + 10.0
    while (thread.is_alive() or len(got) < len(messages)) and time.monotonic() < end:
        executor.spin_once(timeout_sec=0.01)
    thread.join()
    executor.shutdown()
    player.destroy_node()
    listener.destroy_node()
    t0, published, t1 = wall[0]
    assert published == len(messages) == len(got)
    stamps = {t: [s for topic, s, _ in got if topic == t] for t in (JOINTS, CAMERA)}
    expected = {t: [] for t in (JOINTS, CAMERA)}
    with AnyReader([G1_BAG_MCAP]) as reader:
        for conn, _, raw in reader.messages():
            if conn.topic in expected:
                h = reader.deserialize(raw, conn.msgtype).header.stamp
                expected[conn.topic].append(h.sec + h.nanosec * 1e-9)
    for t in expected:
        assert stamps[t] == expected[t][:len(stamps[t])]
    # /clock goes out before each message, but a subscriber may take the two topics in either
    # order: no message may be ahead of the clock it sees by more than the observation
    # assembler's tolerance for future stamps (0.05 s; the player's clock steps are 0.01 s)
    ahead = max(stamp - seen_clock for _, stamp, seen_clock in got)
    assert ahead < 0.05, ahead
    played = (messages[-1][0] - messages[0][0]) * 1e-9
    assert played / rate * 0.9 <= t1 - t0 <= played / rate + 1.0, (t1 - t0, played)


def test_offline_replay_waits_for_the_frames_that_belong_with_the_reference_frame():
    """Two cameras triggered together: the wrist frame of each tick arrives 2 ms after the
    scene frame. Replay, like the node's worker, assembles once the wrist frame is in (not with
    the previous one, a period older); once the wrist camera stops, no frame of it is due and
    nothing is waited for."""
    from faster_ros.embodiment import load_embodiment
    from faster_ros.policy.modeling import PolicyOutput
    from faster_ros.replay.bag import InputSample, RecordedSeries, ReplayInputs
    from faster_ros.replay.offline import run_offline

    emb = load_embodiment("single_arm")
    joints = emb.joint_inputs[0]
    frame = np.zeros((8, 8, 3), np.uint8)
    samples = []
    for k in range(60):  # 2 s at 30 Hz, joints at 300 Hz
        t = 1.0 + k / 30
        for j in range(10):
            tj = t + j / 300
            samples.append(InputSample(tj, "joints", joints.topic, tj,
                                       (list(joints.joints), [0.1] * len(joints.joints))))
        samples.append(InputSample(t + 1e-4, "camera", "scene", t, lambda: frame))
        if k < 45:  # the wrist camera stops after 1.5 s
            samples.append(InputSample(t + 0.002, "camera", "wrist", t + 0.001, lambda: frame))
    samples.sort(key=lambda s: s.t_bag)
    states = RecordedSeries("joint states", np.array([1.0]), np.zeros((1, emb.action_dim)))
    inputs = ReplayInputs(Path("synthetic"), emb, samples, {}, None, states)

    class Hold:
        def predict_action_chunk(self, obs):
            seen.append(obs)
            h = emb.tokenizer.chunk_size
            return PolicyOutput(actions=np.zeros((h, emb.action_dim), np.float32), codes=None,
                                tokens=np.zeros(0, np.int64), invalid=[], timing={}, passes=0)

    seen = []
    run = run_offline(inputs, Hold(), replan_s=0.2, progress=False)
    with_wrist = [o for o in seen if o.stamp < 1.0 + 44 / 30]
    assert with_wrist, "no observation before the wrist camera stopped"
    for obs in with_wrist:  # the wrist frame of the same tick, never the previous one
        assert obs.input_stamps["wrist"] == pytest.approx(obs.stamp + 0.001)
    # one attempt every 6th scene frame (0.2 s), none lost to the wait: the first (no wrist
    # frame yet, so none is due) and the two after the wrist camera stopped (frames 48 and 54:
    # nothing due either) fail on the missing wrist frame
    assert run.attempts == 10 and len(seen) == 7 and len(run.chunks) == 7
    assert sum(run.failures.values()) == 3
