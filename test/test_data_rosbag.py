"""rosbag2 reader: the shared G1 bags and small synthetic bags (sqlite3 and mcap) written with
rosbags, including every bad-bag case."""

import shutil
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest
from _paths import SHARED_DATA
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore

from faster_ros.data import read_episodes, read_npz
from faster_ros.data.resample import estimate_rate, resample_at, resample_to_rate
from faster_ros.data.rosbag import BagError, iter_bag_messages, read_rosbag

BAGS = SHARED_DATA / "bags"
NPZ = SHARED_DATA / "actions" / "g1_inspire_26d_30hz.npz"
needs_shared = pytest.mark.skipif(not BAGS.exists(), reason="shared data not present")
TS = get_typestore(Stores.LATEST)
T = TS.types
STORAGES = {"sqlite3": StoragePlugin.SQLITE3, "mcap": StoragePlugin.MCAP}
S = 1_000_000_000
T0 = 1_700_000_000 * S


# -------------------------------------------------------------------------------------------------
# shared bags


@needs_shared
def test_shared_bags_db3_and_mcap_identical():
    db3, = read_episodes(BAGS / "g1_inspire_ep1_db3")
    mcap, = read_episodes(BAGS / "g1_inspire_ep1_mcap" / "g1_inspire_ep1_mcap.mcap")
    for ep in (db3, mcap):
        assert ep.fps == 30.0 and ep.actions.shape == (393, 26) and ep.state.shape == (393, 26)
        assert list(ep.frames) == ["cam_high"] and ep.frames["cam_high"].shape == (240, 320, 3)
    np.testing.assert_array_equal(db3.actions, mcap.actions)
    np.testing.assert_array_equal(db3.state, mcap.state)
    np.testing.assert_array_equal(db3.timestamps, mcap.timestamps)
    cam_a, cam_b = db3.frames["cam_high"], mcap.frames["cam_high"]
    for i in (0, 200, 392, 17):
        np.testing.assert_array_equal(cam_a.get(i), cam_b.get(i))
    recorded = read_npz(NPZ, episodes=[1])[0]  # the bags were built from G1 episode 1
    np.testing.assert_array_equal(db3.actions, recorded.actions)
    np.testing.assert_array_equal(db3.state, recorded.state)
    assert db3.action_names == recorded.action_names


@needs_shared
@pytest.mark.parametrize("bag", ["g1_inspire_ep1_db3", "g1_inspire_ep1_mcap"])
def test_shared_bag_messages(bag):
    msgs = list(iter_bag_messages(BAGS / bag))
    assert Counter(m.topic for m in msgs) == {"/joint_states": 393, "/joint_command": 393,
                                             "/camera/cam_high/image_raw/compressed": 393}
    assert all(a.t_bag_ns <= b.t_bag_ns for a, b in zip(msgs, msgs[1:]))
    first = {}
    for topic, msgtype, stamp, t_bag, msg in msgs:
        first.setdefault(topic, (msgtype, stamp, t_bag, msg))
    msgtype, stamp, t_bag, msg = first["/joint_states"]
    assert msgtype == "sensor_msgs/msg/JointState" and stamp == t_bag == T0 and len(msg.name) == 26
    assert first["/camera/cam_high/image_raw/compressed"][3].format == "jpeg"


@needs_shared
def test_shared_bag_future_state_actions():
    ep, = read_rosbag(BAGS / "g1_inspire_ep1_mcap", actions_from="state", load_frames=False)
    recorded = read_npz(NPZ, episodes=[1])[0]
    assert ep.actions.shape == (392, 26) and ep.frames == {}
    np.testing.assert_array_equal(ep.actions, recorded.state[1:])


# -------------------------------------------------------------------------------------------------
# synthetic bags


def header(t_ns: int):
    return T["std_msgs/msg/Header"](
        stamp=T["builtin_interfaces/msg/Time"](sec=t_ns // S, nanosec=t_ns % S), frame_id="f")


def joint_state(t_ns, names, pos):
    z = np.zeros(0)
    return T["sensor_msgs/msg/JointState"](header=header(t_ns), name=list(names),
                                           position=np.asarray(pos, float), velocity=z, effort=z)


def trajectory(t_ns, names, points):
    """points: [(time_from_start_s, positions)]."""
    z = np.zeros(0)
    pts = [T["trajectory_msgs/msg/JointTrajectoryPoint"](
        positions=np.asarray(p, float), velocities=z, accelerations=z, effort=z,
        time_from_start=T["builtin_interfaces/msg/Duration"](sec=int(dt), nanosec=int(
            round((dt % 1) * S)))) for dt, p in points]
    return T["trajectory_msgs/msg/JointTrajectory"](header=header(t_ns), joint_names=list(names),
                                                    points=pts)


def raw_image(t_ns, img, encoding="rgb8", pad=3):
    h, w = img.shape[:2]
    row = img.reshape(h, -1).view(np.uint8)
    step = row.shape[1] + pad
    data = np.zeros((h, step), np.uint8)
    data[:, :row.shape[1]] = row
    return T["sensor_msgs/msg/Image"](header=header(t_ns), height=h, width=w, encoding=encoding,
                                      is_bigendian=0, step=step, data=data.ravel())


def compressed(t_ns, rgb):
    data = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))[1].ravel()
    return T["sensor_msgs/msg/CompressedImage"](header=header(t_ns), format="rgb8; png "
                                                "compressed bgr8", data=data)


def write_bag(path: Path, storage: str, messages, empty_topics=()) -> Path:
    """messages: [(topic, msgtype, t_bag_ns, msg)]; written in the given order."""
    with Writer(path, version=9, storage_plugin=STORAGES[storage]) as writer:
        conns = {}
        for topic, msgtype, t, msg in sorted(messages, key=lambda m: m[2]):
            if topic not in conns:
                conns[topic] = writer.add_connection(topic, msgtype, typestore=TS)
            writer.write(conns[topic], t, TS.serialize_cdr(msg, msgtype))
        for topic, msgtype in empty_topics:
            writer.add_connection(topic, msgtype, typestore=TS)
    return path


JS, JT = "sensor_msgs/msg/JointState", "trajectory_msgs/msg/JointTrajectory"
IM, CI = "sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage"


def robot_messages(seconds=1.0, cam_encoding="rgb8"):
    """An R1-Lite-like recording: arm joints at 50 Hz, gripper at 20 Hz on another topic, an
    arm+gripper trajectory command at 10 Hz, a raw camera at 10 Hz, a compressed one at 5 Hz.
    Every value is a known function of time: arm a1 = t, a2 = -t, gripper g = 10 t."""
    msgs = []
    for k in range(int(seconds * 50) + 1):
        t = k / 50
        msgs.append(("/arm/joint_states", JS, T0 + int(round(t * S)),
                     joint_state(T0 + int(round(t * S)), ["a1", "a2"], [t, -t])))
    for k in range(int(seconds * 20) + 1):
        t = k / 20
        msgs.append(("/gripper/joint_states", JS, T0 + int(round(t * S)),
                     joint_state(T0 + int(round(t * S)), ["g"], [10 * t])))
    for k in range(int(seconds * 10) + 1):
        t, tn = k / 10, T0 + k * S // 10
        msgs.append(("/cmd", JT, tn, trajectory(tn, ["g", "a1"], [(0.05, [t + 1, t + 2]),
                                                                 (0.08, [t + 3, t + 4])])))
        level = np.full((5, 7, 3), 10 * k, np.uint8)
        if cam_encoding == "mono16":
            img = np.full((5, 7), 10 * k * 257, np.uint16)
        elif cam_encoding == "bgr8":
            img = level[..., ::-1].copy()
        else:
            img = level
        msgs.append(("/head/image_raw", IM, tn, raw_image(tn, img, cam_encoding)))
        if k % 2 == 0:
            msgs.append(("/wrist/image/compressed", CI, tn, compressed(tn, level)))
    return msgs


@pytest.fixture(params=list(STORAGES))
def storage(request):
    return request.param


def test_joints_gathered_by_name(tmp_path, storage):
    bag = write_bag(tmp_path / "bag", storage, robot_messages())
    ep, = read_rosbag(bag, joint_names=["g", "a2", "a1"], rate=10)
    assert ep.fps == 10 and len(ep) == 11 and ep.state_names == ("g", "a2", "a1")
    t = np.arange(11) / 10
    np.testing.assert_allclose(ep.state, np.stack([10 * t, -t, t], 1), atol=1e-6)
    assert ep.action_names == ("g", "a1")
    np.testing.assert_allclose(ep.actions, np.stack([t + 1, t + 2], 1), atol=1e-6)
    np.testing.assert_allclose(ep.timestamps, t)
    assert set(ep.frames) == {"head", "wrist"}
    head, wrist = ep.frames["head"], ep.frames["wrist"]
    assert head.shape == (5, 7, 3) and len(head) == 11
    assert [int(head.get(i)[0, 0, 0]) for i in (0, 10, 3, 4)] == [0, 100, 30, 40]
    # the 5 Hz camera holds its latest frame (zero-order hold)
    assert [int(wrist.get(i)[2, 3, 1]) for i in range(5)] == [0, 0, 20, 20, 40]


def test_default_rate_joints_and_linear(tmp_path):
    bag = write_bag(tmp_path / "bag", "mcap", robot_messages())
    ep, = read_rosbag(bag, load_frames=False)  # rate from the 10 Hz command topic
    assert ep.fps == 10 and ep.state_names == ("a1", "a2", "g") and ep.frames == {}
    ep, = read_rosbag(bag, rate=40, interpolation="linear", camera_topics=[])
    t = np.arange(41) / 40
    np.testing.assert_allclose(ep.state[:, 2], 10 * t, atol=1e-5)  # 20 Hz gripper, interpolated
    ep, = read_rosbag(bag, rate=40, camera_topics=[])  # zero-order hold
    np.testing.assert_allclose(ep.state[:, 2], 10 * np.floor(t * 20 + 1e-9) / 20, atol=1e-5)


def test_trajectory_all_points(tmp_path):
    bag = write_bag(tmp_path / "bag", "sqlite3", robot_messages())
    ep, = read_rosbag(bag, points="all", rate=50, camera_topics=[])
    # command k (at k/10 s) has points at +0.05 s (g = k/10 + 1) and +0.08 s (g = k/10 + 3);
    # the grid starts at the first point, 0.05 s, and holds the latest point
    samples = sorted([(k / 10 + 0.05, k / 10 + 1) for k in range(11)]
                     + [(k / 10 + 0.08, k / 10 + 3) for k in range(11)])
    times = 0.05 + np.arange(len(ep)) / 50
    expected = [[v for ts, v in samples if ts <= t + 1e-6][-1] for t in times]
    np.testing.assert_allclose(ep.actions[:, 0], expected, atol=1e-6)
    assert ep.state.shape == (len(ep), 3) and len(ep) == 48


def test_zero_header_stamps_use_bag_time(tmp_path):
    msgs = []
    for k in range(6):
        t = T0 + k * S // 5
        msgs.append(("/js", JS, t, joint_state(0, ["j"], [k])))  # unset stamps
        msgs.append(("/cmd", JT, t, trajectory(0, ["j"], [(0.0, [k + 0.5])])))
        msgs.append(("/js", JS, t + 1000, joint_state(0, ["j"], [])))  # velocity-only message
    ep, = read_rosbag(write_bag(tmp_path / "bag", "mcap", msgs))
    assert ep.fps == 5 and len(ep) == 6
    np.testing.assert_array_equal(ep.state[:, 0], np.arange(6))
    np.testing.assert_array_equal(ep.actions[:, 0], np.arange(6) + 0.5)


@pytest.mark.parametrize("encoding", ["bgr8", "mono16"])
def test_raw_image_encodings_in_bag(tmp_path, encoding):
    bag = write_bag(tmp_path / "bag", "sqlite3", robot_messages(cam_encoding=encoding))
    ep, = read_rosbag(bag, camera_topics={"front": "/head/image_raw"}, rate=10)
    frame = ep.frames["front"].get(5)
    assert frame.shape == (5, 7, 3) and frame.dtype == np.uint8
    np.testing.assert_array_equal(frame, 50)


def test_directory_of_bags(tmp_path):
    for i in range(2):
        write_bag(tmp_path / "bags" / f"run{i}", "mcap", robot_messages(0.5))
    eps = read_episodes(tmp_path / "bags", load_frames=False, instruction="wave")
    assert [e.name for e in eps] == ["run0", "run1"] and eps[0].instruction == "wave"


def test_pickled_frames(tmp_path):
    import pickle

    bag = write_bag(tmp_path / "bag", "mcap", robot_messages())
    ep, = read_rosbag(bag, rate=10)
    clone = pickle.loads(pickle.dumps(ep.frames["head"]))
    np.testing.assert_array_equal(clone.get(7), ep.frames["head"].get(7))


# -------------------------------------------------------------------------------------------------
# bad bags


def small_bag(tmp_path, storage="mcap", name="bag"):
    return write_bag(tmp_path / name, storage, robot_messages(0.5))


def test_missing_topics(tmp_path, storage):
    bag = small_bag(tmp_path, storage)
    with pytest.raises(BagError, match=r"/nope/image not in bag \(topics: /arm/joint_states"):
        read_rosbag(bag, camera_topics=["/nope/image"])
    with pytest.raises(BagError, match="/missing"):
        list(iter_bag_messages(bag, ["/missing"]))
    with pytest.raises(BagError, match=r"state joint\(s\) \['elbow'\] not found"):
        read_rosbag(bag, joint_names=["a1", "elbow"], load_frames=False)


def test_unsupported_message_type(tmp_path, storage):
    msgs = robot_messages(0.5) + [("/chatter", "std_msgs/msg/String", T0,
                                   T["std_msgs/msg/String"](data="hi"))]
    bag = write_bag(tmp_path / "bag", storage, msgs)
    with pytest.raises(BagError, match=r"state topic\(s\) of unsupported message type: "
                                       r"/chatter \(std_msgs/msg/String\)"):
        read_rosbag(bag, state_topics=["/arm/joint_states", "/chatter"])
    with pytest.raises(BagError, match="camera topic"):
        read_rosbag(bag, camera_topics=["/chatter"])


def test_unknown_message_type(tmp_path):
    """A bag whose message type is neither defined in the bag nor a standard type."""
    from rosbags.typesys import get_types_from_msg

    store = get_typestore(Stores.LATEST)
    store.register(get_types_from_msg("float64 x\n", "my_msgs/msg/Secret"))
    path = tmp_path / "bag"
    with Writer(path, version=9, storage_plugin=StoragePlugin.SQLITE3) as writer:
        conn = writer.add_connection("/secret", "my_msgs/msg/Secret", typestore=store)
        writer.write(conn, T0, store.serialize_cdr(store.types["my_msgs/msg/Secret"](x=1.0),
                                                   "my_msgs/msg/Secret"))
    import sqlite3

    db = sqlite3.connect(path / "bag.db3")
    db.execute("DELETE FROM message_definitions")  # as if recorded without definitions
    db.commit()
    db.close()
    with pytest.raises(BagError, match=r"my_msgs/msg/Secret.*/secret"):
        list(iter_bag_messages(path))


def test_no_time_overlap(tmp_path, storage):
    msgs = [("/js", JS, T0 + k * S // 10, joint_state(T0 + k * S // 10, ["j"], [k]))
            for k in range(5)]
    late = T0 + 10 * S
    msgs += [("/cmd", JT, late + k * S // 10, trajectory(late + k * S // 10, ["j"],
                                                         [(0, [k])])) for k in range(5)]
    bag = write_bag(tmp_path / "bag", storage, msgs)
    with pytest.raises(BagError, match=r"no time overlap between inputs \(/js \[0.000, 0.400\]"):
        read_rosbag(bag)


def test_empty_topic_and_no_state(tmp_path):
    msgs = [("/js", JS, T0 + k * S // 10, joint_state(T0 + k * S // 10, ["j"], [k]))
            for k in range(5)]
    bag = write_bag(tmp_path / "bag", "mcap", msgs, empty_topics=[("/cam", CI)])
    with pytest.raises(BagError, match="without messages: /cam"):
        read_rosbag(bag)
    bag2 = write_bag(tmp_path / "bag2", "mcap", [("/img", CI, T0, compressed(
        T0, np.zeros((4, 4, 3), np.uint8)))])
    with pytest.raises(BagError, match="no sensor_msgs/JointState topic"):
        read_rosbag(bag2)


@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_truncated_or_corrupt(tmp_path, storage, damage):
    bag = small_bag(tmp_path, storage)
    broken = tmp_path / "broken"
    shutil.copytree(bag, broken)
    data_file = next(p for p in broken.iterdir() if p.suffix in (".db3", ".mcap"))
    blob = bytearray(data_file.read_bytes())
    if damage == "truncate":
        blob = blob[: len(blob) // 2]
    else:
        blob[len(blob) // 4: len(blob) * 3 // 4] = b"\xa5" * (len(blob) * 3 // 4 - len(blob) // 4)
    data_file.write_bytes(bytes(blob))
    with pytest.raises(BagError, match="broken") as info:
        read_rosbag(broken, load_frames=False)
    assert isinstance(info.value, ValueError)


def test_not_a_bag(tmp_path):
    with pytest.raises(BagError, match="not found"):
        read_rosbag(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(BagError, match="no rosbag2 recording"):
        read_rosbag(tmp_path / "empty")
    (tmp_path / "x.mcap").write_bytes(b"\x89MCAP0\r\nnot really")
    with pytest.raises(BagError, match=r"x.mcap: cannot open bag"):
        read_rosbag(tmp_path / "x.mcap")


# -------------------------------------------------------------------------------------------------
# resampling


def test_resample_to_rate():
    times = np.array([0.0, 0.1, 0.2, 0.3])
    values = np.array([[0.0], [1.0], [2.0], [3.0]])
    grid, zoh = resample_to_rate(times, values, 20)
    assert grid.shape == (7,) and zoh[:, 0].tolist() == [0, 0, 1, 1, 2, 2, 3]
    _, lin = resample_to_rate(times, values, 20, method="linear")
    np.testing.assert_allclose(lin[:, 0], np.arange(7) / 2)
    # jittered stamps at the grid rate come through exactly
    jitter = times + np.array([3e-9, -2e-9, 1e-9, 0])
    np.testing.assert_array_equal(resample_at(jitter, values, np.arange(4) / 10, "linear"), values)
    with pytest.raises(ValueError, match="before the first sample"):
        resample_at(times + 1, values, [0.5])
    with pytest.raises(ValueError, match="unknown resampling"):
        resample_at(times, values, [0.5], "cubic")
    assert estimate_rate(np.arange(10) * 0.0333333) == 30.0
    assert estimate_rate(np.arange(10) / 7.3) == pytest.approx(7.3)
