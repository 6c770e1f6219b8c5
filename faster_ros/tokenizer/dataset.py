"""Training / evaluation action chunks for FASTerVQ from npz, LeRobot and rosbag2 datasets.

Episodes come from :func:`faster_ros.data.read_episodes` (any format it reads). A source is
written ``PATH[:RATIO][@MAP]``:

    RATIO  relative sampling weight in a mixture (FASTer Table 3), default 1
    MAP    comma-separated source dimension per target dimension, ``z`` for a constant zero,
           e.g. ``@0,1,2,3,4,5,z`` (default: identity); an entry ``I*S+O`` (``*S`` and ``+O``
           optional, e.g. ``17*100`` or ``6*-50+50``) takes source dimension I times S plus O,
           to bring stand-in data into the target's units (a 0..1 hand value as a 0..100 mm
           gripper). Used to put stand-in data on another robot's action layout.

Whole episodes are held out (the last ``heldout_fraction`` of each source, in file order), and the
split is recorded by episode name so evaluation never touches training episodes. Chunks are
sliding windows inside one episode (stride configurable), never crossing episode ends, never
padded. State-relative chunks (``anchors``: a_{t+k} - s_t, openpi's ``DeltaActions``) need the
robot state beside the actions, mapped like them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from faster_ros.data import DatasetSpec, chunk_windows, read_episodes, split_episodes

# one target dimension: a source index, None (constant zero) or (index, scale, offset)
MapEntry = int | None | tuple[int, float, float]
_NUM = r"(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_AFFINE = re.compile(rf"^(?P<index>\d+)(?:\*(?P<scale>[-+]?{_NUM}))?(?P<offset>[-+]{_NUM})?$")


@dataclass(frozen=True)
class Source:
    """One dataset of a mixture: path, sampling ratio and optional dimension map."""

    path: Path
    ratio: float = 1.0
    dim_map: tuple[MapEntry, ...] | None = None

    @classmethod
    def parse(cls, text: str) -> Source:
        """``"a.npz:2@0,1,z"`` -> Source(Path("a.npz"), 2.0, (0, 1, None))."""
        body, sep, map_text = str(text).rpartition("@")
        if not sep:
            body, map_text = map_text, ""
        spec = DatasetSpec.parse(body)
        return cls(spec.path, spec.ratio, parse_dim_map(map_text) if map_text else None)

    def spec_string(self) -> str:
        text = f"{self.path}:{self.ratio:g}"
        if self.dim_map is not None:
            text += "@" + ",".join(_format_entry(e) for e in self.dim_map)
        return text


def _format_entry(entry: MapEntry) -> str:
    if entry is None:
        return "z"
    if isinstance(entry, int):
        return str(entry)
    index, scale, offset = entry
    return f"{index}*{scale!r}" + (f"{offset:+}" if offset else "")


def parse_dim_map(text: str) -> tuple[MapEntry, ...]:
    """``"0,1,z,3*100,4*-50+50"`` -> (0, 1, None, (3, 100.0, 0.0), (4, -50.0, 50.0))."""
    out: list[MapEntry] = []
    for item in text.split(","):
        item = item.strip()
        m = _AFFINE.match(item)
        if item == "z":
            out.append(None)
        elif item.isdigit():
            out.append(int(item))
        elif m:
            scale, offset = m["scale"], m["offset"]
            out.append((int(m["index"]), float(scale or 1.0), float(offset or 0.0)))
        else:
            raise ValueError(f"bad dimension map entry {item!r} in {text!r} (use I, I*S, "
                             f"I*S+O or 'z')")
    return tuple(out)


def apply_dim_map(actions: np.ndarray, dim_map: tuple[MapEntry, ...] | None) -> np.ndarray:
    """actions (T, D_src) -> (T, len(dim_map)) float32; ``None`` entries are zeros."""
    actions = np.asarray(actions, dtype=np.float32)
    if dim_map is None:
        return actions
    entries = [(e, 1.0, 0.0) if isinstance(e, int) else e for e in dim_map]
    bad = [e[0] for e in entries if e is not None and not 0 <= e[0] < actions.shape[1]]
    if bad:
        raise ValueError(f"dimension map refers to dim {bad[0]} of a {actions.shape[1]}-D source")
    out = np.zeros((len(actions), len(dim_map)), dtype=np.float32)
    for j, e in enumerate(entries):
        if e is not None:
            out[:, j] = actions[:, e[0]] * np.float32(e[1]) + np.float32(e[2])
    return out


@dataclass
class SourceSplit:
    """Episodes (each (T, D) float32, already mapped) of one source, split by episode."""

    source: Source
    fps: float
    train: list[np.ndarray]
    heldout: list[np.ndarray]
    train_names: list[str]
    heldout_names: list[str]
    val_names: list[str] = field(default_factory=list)
    # mapped (T, D) robot states beside the episodes, for state-relative chunks (else None)
    train_state: list[np.ndarray] | None = None
    heldout_state: list[np.ndarray] | None = None

    def record(self) -> dict[str, Any]:
        """What goes into VQConfig.provenance: the split by episode name."""
        return {"spec": self.source.spec_string(), "path": str(self.source.path),
                "fps": self.fps, "train_episodes": self.train_names,
                "heldout_episodes": self.heldout_names}


def load_split(source: Source, action_dim: int, heldout_fraction: float,
               relative: bool = False) -> SourceSplit:
    """Read ``source`` and hold out its last ``heldout_fraction`` episodes; ``relative``: also
    the mapped states, for state-relative chunks."""
    episodes = read_episodes(source.path)
    if not episodes:
        raise ValueError(f"{source.path}: no episodes")
    train, held = split_episodes(episodes, heldout_fraction, "last")
    arrays = {ep.name: apply_dim_map(ep.actions, source.dim_map) for ep in episodes}
    width = next(iter(arrays.values())).shape[1]
    if width != action_dim:
        raise ValueError(f"{source.path}: episodes have {width} action dims after mapping, the "
                         f"tokenizer takes {action_dim} (give a dimension map with @...)")
    split = SourceSplit(source, float(episodes[0].fps), [arrays[e.name] for e in train],
                        [arrays[e.name] for e in held], [e.name for e in train],
                        [e.name for e in held])
    if relative:
        states = {ep.name: _mapped_state(source, ep) for ep in episodes}
        split.train_state = [states[e.name] for e in train]
        split.heldout_state = [states[e.name] for e in held]
    return split


def _mapped_state(source: Source, episode) -> np.ndarray:
    """The episode's robot state on the action layout (the same dimension map)."""
    if episode.state is None:
        raise ValueError(f"{source.path}: episode {episode.name} has no robot state; "
                         f"state-relative chunks need it beside the actions")
    if episode.state.shape != episode.actions.shape:
        raise ValueError(f"{source.path}: episode {episode.name}: state {episode.state.shape} "
                         f"and actions {episode.actions.shape} differ in shape; state-relative "
                         f"chunks need the state on the action layout")
    return apply_dim_map(episode.state, source.dim_map)


def select_episodes(source: Source, names: list[str] | None, relative: bool = False
                    ) -> list[np.ndarray] | tuple[list[np.ndarray], list[np.ndarray]]:
    """The mapped episodes of ``source`` whose names are in ``names`` (all when None);
    ``relative``: (episodes, their mapped states)."""
    episodes = read_episodes(source.path)
    if names is not None:
        wanted = set(names)
        episodes = [e for e in episodes if e.name in wanted]
        missing = wanted - {e.name for e in episodes}
        if missing:
            raise ValueError(f"{source.path}: episodes {sorted(missing)[:3]} not found")
    actions = [apply_dim_map(e.actions, source.dim_map) for e in episodes]
    if relative:
        return actions, [_mapped_state(source, e) for e in episodes]
    return actions


def make_chunks(episodes: list[np.ndarray], chunk_size: int, stride: int = 1,
                align_end: bool = False, anchors: list[np.ndarray] | None = None) -> np.ndarray:
    """Sliding windows (N, H, D) float32 of every episode; episodes shorter than H give none.
    ``anchors`` (per episode, (T, D), e.g. the robot state): each window a_t .. a_{t+H-1}
    becomes a_{t+k} - anchor_t (state-relative chunks)."""
    if anchors is not None and len(anchors) != len(episodes):
        raise ValueError(f"make_chunks: {len(anchors)} anchor arrays for {len(episodes)} episodes")
    windows = [w if anchors is None else w - anchors[e][t]
               for e, ep in enumerate(episodes)
               for t, w in chunk_windows(ep, chunk_size, stride, align_end=align_end)]
    if not windows:
        dim = episodes[0].shape[1] if episodes else 0
        return np.zeros((0, chunk_size, dim), dtype=np.float32)
    return np.stack(windows).astype(np.float32)


def find_record(provenance: dict[str, Any], path: Path) -> dict[str, Any] | None:
    """The provenance record of a training source with the same path (or file name)."""
    records = provenance.get("data", [])
    resolved = str(Path(path).resolve())
    for rec in records:
        if str(Path(rec["path"]).resolve()) == resolved:
            return rec
    for rec in records:
        if Path(rec["path"]).name == Path(path).name:
            return rec
    return None
