"""LeRobot reader: the shared G1 dataset (v2.1) and synthetic v2.0 / v2.1 / v3.0 datasets."""

import json
import pickle
import warnings
from pathlib import Path

import av
import cv2
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from _paths import SHARED_DATA

from faster_ros.data import read_episodes
from faster_ros.data.lerobot import LeRobotFormatError, read_lerobot
from faster_ros.data.video import VideoDecodeError, VideoFrames

G1 = SHARED_DATA / "g1_inspire"
CAM = "observation.images.cam_high"
needs_shared = pytest.mark.skipif(not (G1 / "meta" / "info.json").exists(),
                                  reason="shared data not present")


# -------------------------------------------------------------------------------------------------
# shared dataset


@needs_shared
def test_g1_without_frames():
    eps = read_episodes(G1, load_frames=False)
    assert len(eps) == 100 and [int(e.name[-6:]) for e in eps] == list(range(100))
    assert sum(len(e) for e in eps) == 35965
    ep = eps[1]
    assert ep.fps == 30.0 and ep.actions.shape == (393, 26) and ep.state.shape == (393, 26)
    assert ep.action_names[0] == "kLeftShoulderPitch" and len(ep.state_names) == 26
    assert ep.instruction == "Pick up the yellow bottle on the table."
    assert ep.frames == {}
    np.testing.assert_allclose(ep.timestamps[:3], [0, 1 / 30, 2 / 30], atol=1e-6)


@needs_shared
def test_g1_matches_npz():
    npz = read_episodes(G1.parent / "actions" / "g1_inspire_26d_30hz.npz", episodes=[1, 47])
    ler = read_lerobot(G1, episodes=[1, 47], load_frames=False)
    for a, b in zip(npz, ler):
        np.testing.assert_array_equal(a.actions, b.actions)
        np.testing.assert_array_equal(a.state, b.state)


@needs_shared
def test_g1_frames_and_missing_videos():
    with pytest.warns(UserWarning, match=r"7 episode camera\(s\) without video.*0:observation"):
        all_eps = read_lerobot(G1)  # lazy: nothing is decoded here
    missing = [int(e.name[-6:]) for e in all_eps if not e.frames]
    assert missing == [0, 3, 6, 9, 47, 58, 61]
    with pytest.warns(UserWarning, match=r"4 episode camera\(s\)"):
        eps = read_lerobot(G1, episodes=[0, 1, 3, 47, 58])
    by_idx = {int(e.name[-6:]): e for e in eps}
    assert set(by_idx[1].frames) == {CAM}
    assert [i for i, e in by_idx.items() if e.frames] == [1]
    src = by_idx[1].frames[CAM]
    frame = src.get(1)
    assert frame.shape == (168, 224, 3) and frame.dtype == np.uint8 and len(src) == 393
    assert src.shape == (168, 224, 3)
    assert by_idx[0].actions.shape == (479, 26)  # actions kept without the video
    # random access equals sequential decode; a pickled copy (DataLoader worker) decodes too
    last = src.get(392)
    np.testing.assert_array_equal(src.get(1), frame)
    clone = pickle.loads(pickle.dumps(src))
    np.testing.assert_array_equal(clone.get(392), last)


# -------------------------------------------------------------------------------------------------
# synthetic datasets


def gray_video(path: Path, n: int, fps: int, size=(32, 24), start=0) -> None:
    """mp4 whose frame k is uniformly gray at level 10 * (start + k)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("mpeg4", rate=fps)
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
        stream.options = {"qscale": "1"}
        stream.gop_size = 4  # several keyframes: exercises seeking
        for k in range(n):
            img = np.full((size[1], size[0], 3), 10 * (start + k), np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


def level(img: np.ndarray) -> int:
    return int(round(img.mean() / 10))


def feature(dim, names=None, dtype="float32"):
    return {"dtype": dtype, "shape": [dim], "names": names}


def write_v2(root: Path, *, version="v2.1", fps=15, lengths=(6, 9), act="action.joints",
             state="observation.state", names=None, videos=("top", "wrist"), skip_video=(),
             image_key=None) -> Path:
    features = {act: feature(3, names or ["j0", "j1", "j2"]), state: feature(2),
                "timestamp": feature(1), "frame_index": feature(1, dtype="int64"),
                "episode_index": feature(1, dtype="int64"),
                "task_index": feature(1, dtype="int64")}
    for cam in videos:
        features[f"observation.images.{cam}"] = {"dtype": "video", "shape": [3, 8, 8],
                                                 "names": ["channel", "height", "width"]}
    if image_key:
        features[image_key] = {"dtype": "image", "shape": [24, 32, 3], "names": None}
    info = {"codebase_version": version, "fps": fps, "chunks_size": 1, "features": features,
            "data_path": "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet",
            "video_path": "videos/chunk-{episode_chunk:03d}/{video_key}/"
                          "episode_{episode_index:06d}.mp4"}
    (root / "meta").mkdir(parents=True)
    (root / "meta" / "info.json").write_text(json.dumps(info))
    tasks = ["stack the cups", "open the drawer"]
    (root / "meta" / "tasks.jsonl").write_text(
        "".join(json.dumps({"task_index": i, "task": t}) + "\n" for i, t in enumerate(tasks)))
    (root / "meta" / "episodes.jsonl").write_text("".join(
        json.dumps({"episode_index": i, "tasks": [tasks[i]], "length": n}) + "\n"
        for i, n in enumerate(lengths)))
    for ep, n in enumerate(lengths):
        cols = {act: [[ep * 100 + t, t, -t] for t in range(n)],
                state: [[t, ep] for t in range(n)],
                "timestamp": np.arange(n, dtype=np.float32) / fps,
                "frame_index": np.arange(n), "episode_index": np.full(n, ep),
                "task_index": np.full(n, ep)}
        if image_key:
            cols[image_key] = [{"bytes": cv2.imencode(".png", np.full((24, 32, 3), 10 * t,
                                                                        np.uint8))[1].tobytes(),
                                "path": None} for t in range(n)]
        path = root / info["data_path"].format(episode_chunk=ep, episode_index=ep)
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.table(cols), path)
        for cam in videos:
            if (ep, cam) not in skip_video:
                key = f"observation.images.{cam}"
                gray_video(root / info["video_path"].format(
                    episode_chunk=ep, video_key=key, episode_index=ep), n, fps)
    return root


def test_synthetic_v21_two_cameras(tmp_path):
    root = write_v2(tmp_path / "ds")
    eps = read_episodes(root, action_keys="action.joints")
    assert [len(e) for e in eps] == [6, 9] and eps[0].fps == 15
    assert eps[1].action_names == ("j0", "j1", "j2") and eps[1].state_names == \
        ("observation.state_0", "observation.state_1")
    assert eps[1].actions[4].tolist() == [104, 4, -4]
    assert [e.instruction for e in eps] == ["stack the cups", "open the drawer"]
    np.testing.assert_allclose(eps[1].timestamps, np.arange(9) / 15, atol=1e-6)
    assert set(eps[1].frames) == {"observation.images.top", "observation.images.wrist"}
    src = eps[1].frames["observation.images.top"]
    assert src.shape == (24, 32, 3)
    order = [8, 0, 5, 6, 7, 2, 2, 3]  # backward jumps, repeats, forward runs
    assert [level(src.get(i)) for i in order] == order
    assert [level(f) for f in src.to_array()] == list(range(9))


def test_synthetic_missing_video_and_subset(tmp_path):
    root = write_v2(tmp_path / "ds", skip_video={(1, "wrist")})
    with pytest.warns(UserWarning, match="1:observation.images.wrist"):
        eps = read_lerobot(root, action_keys=["action.joints"], episodes=[1])
    assert len(eps) == 1 and set(eps[0].frames) == {"observation.images.top"}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert read_lerobot(root, action_keys="action.joints", load_frames=False)[1].frames == {}
    with pytest.raises(LeRobotFormatError, match=r"unknown episode index\(es\) \[7\]"):
        read_lerobot(root, action_keys="action.joints", episodes=[7])


def test_synthetic_v20_dict_names_no_state_image_feature(tmp_path):
    root = write_v2(tmp_path / "ds", version="v2.0", fps=50, act="action",
                    names={"motors": ["a", "b", "c"]}, videos=(),
                    image_key="observation.images.cam")
    eps = read_lerobot(root, state_keys="observation.missing")
    assert eps[0].action_names == ("a", "b", "c") and eps[0].state is None and eps[0].fps == 50
    src = eps[1].frames["observation.images.cam"]
    assert src.shape == (24, 32, 3) and level(src.get(7)) == 7
    with pytest.raises(LeRobotFormatError, match="action feature"):
        read_lerobot(root, action_keys="action.eef")


def test_video_shorter_than_episode(tmp_path):
    path = tmp_path / "v.mp4"
    gray_video(path, 5, 10)
    src = VideoFrames(path, np.arange(8) / 10)
    assert level(src.get(4)) == 4
    with pytest.raises(VideoDecodeError, match="no frame within tolerance of t=0.7"):
        src.get(7)
    with pytest.raises(VideoDecodeError, match="cannot open"):
        VideoFrames(tmp_path / "nope.mp4", [0.0]).get(0)


def write_v3(root: Path, fps=20, lengths=(5, 7, 4)) -> Path:
    """Three episodes in one data file and one video file (LeRobot v3.0 layout)."""
    features = {"action": feature(2), "observation.state": feature(2, ["x", "y"]),
                "timestamp": feature(1), "frame_index": feature(1, dtype="int64"),
                "episode_index": feature(1, dtype="int64"), "index": feature(1, dtype="int64"),
                "task_index": feature(1, dtype="int64"),
                "observation.images.front": {"dtype": "video", "shape": [24, 32, 3],
                                             "names": ["height", "width", "channels"]}}
    info = {"codebase_version": "v3.0", "fps": fps, "chunks_size": 1000, "features": features,
            "data_path": "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet",
            "video_path": "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"}
    (root / "meta" / "episodes" / "chunk-000").mkdir(parents=True)
    (root / "meta" / "info.json").write_text(json.dumps(info))
    pq.write_table(pa.table({"task_index": [0, 1], "task": ["push", "pull"]}),
                   root / "meta" / "tasks.parquet")
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    rows = {"action": [], "observation.state": [], "timestamp": [], "frame_index": [],
            "episode_index": [], "index": [], "task_index": []}
    for ep, (s, n) in enumerate(zip(starts, lengths)):
        for t in range(n):
            rows["action"].append([ep, t])
            rows["observation.state"].append([t, t])
            rows["timestamp"].append(t / fps)
            rows["frame_index"].append(t)
            rows["episode_index"].append(ep)
            rows["index"].append(s + t)
            rows["task_index"].append(ep % 2)
    (root / "data" / "chunk-000").mkdir(parents=True)
    pq.write_table(pa.table(rows), root / "data" / "chunk-000" / "file-000.parquet")
    key = "observation.images.front"
    pq.write_table(pa.table({
        "episode_index": list(range(len(lengths))), "length": list(lengths),
        "tasks": [["push"], ["pull"], ["push"]][:len(lengths)],
        "data/chunk_index": [0] * len(lengths), "data/file_index": [0] * len(lengths),
        f"videos/{key}/chunk_index": [0] * len(lengths),
        f"videos/{key}/file_index": [0] * len(lengths),
        f"videos/{key}/from_timestamp": [float(s) / fps for s in starts],
    }), root / "meta" / "episodes" / "chunk-000" / "file-000.parquet")
    gray_video(root / "videos" / key / "chunk-000" / "file-000.mp4", int(sum(lengths)), fps)
    return root


def test_synthetic_v30(tmp_path):
    eps = read_episodes(write_v3(tmp_path / "ds3"))
    assert [len(e) for e in eps] == [5, 7, 4] and eps[2].fps == 20
    assert [e.instruction for e in eps] == ["push", "pull", "push"]
    assert eps[1].actions[:, 0].tolist() == [1] * 7 and eps[1].state_names == ("x", "y")
    src = eps[1].frames["observation.images.front"]  # frames 5..11 of the shared video
    assert [level(src.get(i)) for i in (0, 6, 3)] == [5, 11, 8]
    assert level(eps[2].frames["observation.images.front"].get(0)) == 12


def test_bad_metadata(tmp_path):
    root = tmp_path / "bad"
    (root / "meta").mkdir(parents=True)
    (root / "meta" / "info.json").write_text(json.dumps({"codebase_version": "v1.6", "fps": 10}))
    with pytest.raises(LeRobotFormatError, match="v1.6 is not supported"):
        read_lerobot(root)
    (root / "meta" / "info.json").write_text("{not json")
    with pytest.raises(LeRobotFormatError, match="cannot read JSON"):
        read_lerobot(root)
