"""Episode, chunk_windows, split_episodes, the npz reader, dataset mixing and dispatch."""

from pathlib import Path

import numpy as np
import pytest
from _paths import SHARED_DATA

from faster_ros.data import (
    ArrayFrames,
    DatasetSpec,
    Episode,
    NpzFormatError,
    chunk_windows,
    detect_format,
    mix_weights,
    parse_specs,
    read_episodes,
    read_npz,
    split_episodes,
)

SHARED = SHARED_DATA
G1_NPZ = SHARED / "actions" / "g1_inspire_26d_30hz.npz"
needs_shared = pytest.mark.skipif(not G1_NPZ.exists(), reason="shared data not present")


def make_episode(name="ep", steps=10, dim=3, **kw):
    actions = np.arange(steps * dim, dtype=np.float32).reshape(steps, dim)
    return Episode(name=name, fps=10, actions=actions,
                   action_names=tuple(f"d{i}" for i in range(dim)), **kw)


# -------------------------------------------------------------------------------------------------
# Episode


def test_episode_defaults_and_readonly():
    ep = make_episode()
    assert len(ep) == 10 and ep.action_dim == 3 and ep.actions.dtype == np.float32
    np.testing.assert_allclose(ep.timestamps, np.arange(10) / 10)
    assert ep.state is None and ep.frames == {} and ep.duration_s == 1.0
    with pytest.raises(ValueError):
        ep.actions[0, 0] = 1.0


@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(state=np.zeros((9, 2)), state_names=("a", "b")), "state must be"),
        (dict(state=np.zeros((10, 2)), state_names=("a",)), "state_names"),
        (dict(timestamps=np.zeros(3)), "timestamps"),
        (dict(frames={"cam": ArrayFrames(np.zeros((4, 2, 2, 3), np.uint8))}), "cam"),
    ],
)
def test_episode_validation(kw, match):
    with pytest.raises(ValueError, match=match):
        make_episode(**kw)


def test_episode_bad_names_and_fps():
    with pytest.raises(ValueError, match="action_names"):
        Episode("x", 10, np.zeros((3, 2)), ("a",))
    with pytest.raises(ValueError, match="fps"):
        Episode("x", 0, np.zeros((3, 2)), ("a", "b"))


def test_array_frames():
    frames = ArrayFrames(np.zeros((5, 4, 6, 3), np.uint8))
    assert len(frames) == 5 and frames.shape == (4, 6, 3) and frames.get(-1).shape == (4, 6, 3)
    with pytest.raises(IndexError):
        frames.get(5)
    with pytest.raises(ValueError):
        ArrayFrames(np.zeros((5, 4, 6), np.uint8))


# -------------------------------------------------------------------------------------------------
# chunk_windows


@pytest.mark.parametrize("steps", [0, 3, 4, 5, 10, 11])
@pytest.mark.parametrize("stride", [1, 3, 4])
@pytest.mark.parametrize("align_end", [False, True])
def test_chunk_windows_never_cross_end(steps, stride, align_end):
    actions = np.arange(steps * 2, dtype=np.float32).reshape(steps, 2)
    windows = list(chunk_windows(actions, 4, stride, align_end=align_end))
    starts = [s for s, _ in windows]
    expected = list(range(0, steps - 4 + 1, stride))
    if align_end and steps >= 4 and expected[-1] != steps - 4:
        expected.append(steps - 4)
    assert starts == expected
    for s, w in windows:
        assert w.shape == (4, 2)
        np.testing.assert_array_equal(w, actions[s:s + 4])
    if align_end and steps >= 4:
        assert starts[-1] + 4 == steps  # the last step is covered


@pytest.mark.parametrize("steps", [1, 3, 4, 5, 11])
@pytest.mark.parametrize("stride", [1, 3])
def test_chunk_windows_pad_end_starts_to_the_last_step_and_holds_the_final_action(steps, stride):
    actions = np.arange(steps * 2, dtype=np.float32).reshape(steps, 2)
    windows = list(chunk_windows(actions, 4, stride, pad_end=True))
    assert [s for s, _ in windows] == list(range(0, steps, stride))
    for s, w in windows:
        assert w.shape == (4, 2) and not w.flags.writeable
        real = actions[s:s + 4]
        np.testing.assert_array_equal(w[:len(real)], real)
        np.testing.assert_array_equal(w[len(real):], np.repeat(actions[-1:], 4 - len(real), 0))


def test_chunk_windows_bad_args():
    with pytest.raises(ValueError):
        list(chunk_windows(np.zeros((5, 2)), 0))
    with pytest.raises(ValueError):
        list(chunk_windows(np.zeros((5, 2)), 2, 0))
    with pytest.raises(ValueError):
        list(chunk_windows(np.zeros(5), 2))


# -------------------------------------------------------------------------------------------------
# split_episodes


def test_split_last_and_seeded():
    eps = [make_episode(f"e{i}") for i in range(10)]
    train, held = split_episodes(eps, 0.2)
    assert [e.name for e in held] == ["e8", "e9"] and len(train) == 8
    t1, h1 = split_episodes(eps, 0.3, seed=7)
    t2, h2 = split_episodes(list(reversed(eps)), 0.3, seed=7)
    assert {e.name for e in h1} == {e.name for e in h2} and len(h1) == 3
    assert {e.name for e in t1} | {e.name for e in h1} == {e.name for e in eps}
    _, h3 = split_episodes(eps, 0.3, seed=8)
    assert len(h3) == 3
    assert split_episodes(eps, 0.0)[1] == []
    assert len(split_episodes(eps[:2], 0.01)[1]) == 1  # at least one held out
    assert len(split_episodes(eps[:1], 0.5)[1]) == 0  # never all
    with pytest.raises(ValueError):
        split_episodes(eps, 1.0)
    with pytest.raises(ValueError):
        split_episodes(eps, 0.1, seed="first")


# -------------------------------------------------------------------------------------------------
# npz


@needs_shared
def test_read_shared_npz():
    eps = read_npz(G1_NPZ)
    assert len(eps) == 100
    assert all(e.action_dim == 26 and e.fps == 30.0 and e.state.shape[1] == 26 for e in eps)
    assert sum(len(e) for e in eps) == 35965 and len(eps[0]) == 479
    assert eps[0].action_names[0] == "kLeftShoulderPitch" and eps[0].state_names == \
        eps[0].action_names
    assert read_episodes(G1_NPZ, episodes=[1])[0].name.endswith("episode_000001")


@needs_shared
def test_read_all_shared_npz():
    for path in sorted((SHARED / "actions").glob("*.npz")):
        eps = read_episodes(path)
        assert eps and all(len(e) > 0 for e in eps)


def write_npz(path, **arrays):
    base = dict(actions=np.zeros((10, 2), np.float32), episode_ends=np.array([4, 10]),
                fps=np.float32(20), names=np.array(["x", "y"]))
    base.update(arrays)
    np.savez(path, **{k: v for k, v in base.items() if v is not None})
    return path


def test_npz_synthetic(tmp_path):
    eps = read_npz(write_npz(tmp_path / "a.npz", state=np.ones((10, 5), np.float32)))
    assert [len(e) for e in eps] == [4, 6] and eps[1].state_names == tuple(f"s{i}" for i in
                                                                          range(5))
    eps = read_npz(write_npz(tmp_path / "b.npz", names=None))
    assert eps[0].action_names == ("a0", "a1") and eps[0].fps == 20.0


@pytest.mark.parametrize(
    "arrays, match",
    [
        (dict(actions=None), "missing key.*actions"),
        (dict(episode_ends=None), "episode_ends"),
        (dict(fps=None), "fps"),
        (dict(episode_ends=np.array([4, 9])), "end at N=10"),
        (dict(episode_ends=np.array([4, 4, 10])), "increase"),
        (dict(names=np.array(["x"])), "names"),
        (dict(state=np.zeros((9, 2))), "state"),
        (dict(actions=np.zeros(10)), r"\(N, D\)"),
        (dict(fps=np.float32(-1)), "positive"),
    ],
)
def test_npz_errors(tmp_path, arrays, match):
    path = write_npz(tmp_path / "bad.npz", **arrays)
    with pytest.raises(NpzFormatError, match=match) as info:
        read_npz(path)
    assert "bad.npz" in str(info.value)


def test_npz_not_a_zip(tmp_path):
    path = tmp_path / "junk.npz"
    path.write_bytes(b"not a zip")
    with pytest.raises(NpzFormatError, match="junk.npz"):
        read_npz(path)


# -------------------------------------------------------------------------------------------------
# mixing and dispatch


def test_dataset_spec_parse():
    assert DatasetSpec.parse("data/g1:0.7") == DatasetSpec(Path("data/g1"), 0.7)
    assert DatasetSpec.parse("data/g1").ratio == 1.0
    assert DatasetSpec.parse("a:b/c").path == Path("a:b/c")
    assert [s.ratio for s in parse_specs("a:2,b:1")] == [2.0, 1.0]
    with pytest.raises(ValueError):
        DatasetSpec.parse("a:-1")
    with pytest.raises(ValueError):
        DatasetSpec.parse("")


def test_mix_weights():
    specs = parse_specs(["a:3", "b:1"])
    np.testing.assert_allclose(mix_weights(specs), [0.75, 0.25])
    w = mix_weights(specs, sizes=[3, 2])
    assert w.shape == (5,) and np.isclose(w.sum(), 1)
    np.testing.assert_allclose(w[:3].sum(), 0.75)
    np.testing.assert_allclose(mix_weights([1, 1], sizes=[0, 4]), [0.25] * 4)
    with pytest.raises(ValueError):
        mix_weights([0, 0])
    with pytest.raises(ValueError):
        mix_weights([1, 1], sizes=[1])


def test_detect_format(tmp_path):
    (tmp_path / "ds" / "meta").mkdir(parents=True)
    (tmp_path / "ds" / "meta" / "info.json").write_text("{}")
    (tmp_path / "bag").mkdir()
    (tmp_path / "bag" / "metadata.yaml").write_text("")
    (tmp_path / "x.mcap").write_bytes(b"")
    assert detect_format(tmp_path / "ds") == "lerobot"
    assert detect_format(tmp_path / "bag") == "rosbag"
    assert detect_format(tmp_path / "x.mcap") == "rosbag"
    assert detect_format(write_npz(tmp_path / "a.npz")) == "npz"
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="unknown dataset format"):
        detect_format(tmp_path / "empty")
    with pytest.raises(FileNotFoundError):
        detect_format(tmp_path / "nope")


def test_data_package_never_imports_rclpy():
    import ast

    import faster_ros.data

    for path in Path(faster_ros.data.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            assert not any(n.split(".")[0] == "rclpy" for n in names), path
