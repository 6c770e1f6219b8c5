"""Robot datasets as :class:`Episode` lists: npz action files, LeRobot v2.x/v3.0, rosbag2.

``read_episodes(source)`` picks the reader from the source:

    *.npz                                  -> :func:`faster_ros.data.npz.read_npz`
    directory with meta/info.json          -> :func:`faster_ros.data.lerobot.read_lerobot`
    directory with metadata.yaml, a .db3 /
    .mcap file, or a directory of bag dirs -> :func:`faster_ros.data.rosbag.read_rosbag`

Keyword arguments go to that reader (``load_frames`` is accepted and ignored for npz, which has
no frames). No rclpy anywhere in this package.
"""

from __future__ import annotations

from pathlib import Path

from faster_ros.data.episode import (
    ArrayFrames,
    Episode,
    FrameSource,
    chunk_windows,
    split_episodes,
)
from faster_ros.data.mixing import DatasetSpec, mix_weights, parse_specs
from faster_ros.data.npz import NpzFormatError, read_npz

__all__ = [
    "ArrayFrames",
    "DatasetSpec",
    "Episode",
    "FrameSource",
    "NpzFormatError",
    "chunk_windows",
    "detect_format",
    "mix_weights",
    "parse_specs",
    "read_episodes",
    "read_npz",
    "split_episodes",
]


def detect_format(source: str | Path) -> str:
    """``"npz"``, ``"lerobot"`` or ``"rosbag"`` for a source path; ValueError otherwise."""
    path = Path(source)
    if not path.exists():
        raise FileNotFoundError(f"dataset not found: {path}")
    if path.is_file():
        if path.suffix == ".npz":
            return "npz"
        if path.suffix in (".db3", ".mcap"):
            return "rosbag"
        if path.is_file() and path.name == "metadata.yaml":
            return "rosbag"
        if path.name == "info.json" and path.parent.name == "meta":
            return "lerobot"
    elif (path / "meta" / "info.json").is_file():
        return "lerobot"
    elif (path / "metadata.yaml").is_file() or any(path.glob("*.db3")) or any(path.glob("*.mcap")):
        return "rosbag"
    elif any((p / "metadata.yaml").is_file() for p in path.iterdir()):
        return "rosbag"  # a directory of bag directories: one episode per bag
    raise ValueError(
        f"{path}: unknown dataset format (expected a .npz file, a LeRobot directory with "
        f"meta/info.json, or a rosbag2 directory with metadata.yaml / a .db3 or .mcap file)"
    )


def read_episodes(source: str | Path, **kw) -> list[Episode]:
    """Read every episode of ``source`` (see the module docstring for the dispatch)."""
    path = Path(source)
    kind = detect_format(path)
    if kind == "npz":
        kw.pop("load_frames", None)
        return read_npz(path, **kw)
    if kind == "lerobot":
        from faster_ros.data.lerobot import read_lerobot

        root = path.parent.parent if path.is_file() else path
        return read_lerobot(root, **kw)
    from faster_ros.data.rosbag import read_rosbag

    if path.is_file() and path.name == "metadata.yaml":
        path = path.parent
    return read_rosbag(path, **kw)
