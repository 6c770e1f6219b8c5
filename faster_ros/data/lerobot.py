"""Read LeRobot datasets (v2.0, v2.1 and v3.0 layouts) into :class:`Episode` lists.

Everything comes from the dataset's own metadata, nothing is fitted to one dataset:

* ``meta/info.json``: ``fps``, ``features`` (dtype, shape, names), ``data_path`` and
  ``video_path`` templates, ``chunks_size``. Camera keys are the features of dtype ``video``
  (frames in mp4 files) or ``image`` (encoded images inside the parquet files).
* v2.x: ``meta/episodes.jsonl`` (index, tasks, length) and ``meta/tasks.jsonl``
  (task_index -> task); one parquet file and one video per episode and camera, episode chunk =
  ``episode_index // chunks_size``.
* v3.0: ``meta/episodes/**/*.parquet`` (``data/chunk_index``, ``data/file_index``,
  ``videos/<key>/{chunk_index,file_index,from_timestamp}``) and ``meta/tasks.parquet``; several
  episodes per data file (selected by the ``episode_index`` column) and per video file (offset by
  ``from_timestamp``).

Actions are the ``action`` feature and state ``observation.state`` (configurable, several keys
are concatenated in order). The instruction is the task of the episode's first row
(``task_index``), else the first task listed for the episode. Timestamps are the ``timestamp``
column (else ``frame_index / fps``). A camera's frame for a row is the video frame nearest to
the row's timestamp (see :class:`faster_ros.data.video.VideoFrames`). An episode whose video file
is missing keeps its actions and state, lacks that camera in ``frames``, and one warning lists all
such (episode, camera) pairs.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from faster_ros.data.episode import Episode, FrameSource
from faster_ros.data.video import EncodedFrames, VideoFrames


class LeRobotFormatError(ValueError):
    """The dataset's metadata or files do not match the LeRobot layout it claims."""


@dataclass(frozen=True)
class _EpisodeRef:
    index: int
    length: int | None
    tasks: tuple[str, ...]
    data_file: Path
    videos: dict[str, tuple[Path, float]]  # video key -> (file, from_timestamp)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise LeRobotFormatError(f"{path}: cannot read JSON: {exc}") from exc


def _read_jsonl(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    rows = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise LeRobotFormatError(f"{path}:{n}: bad JSON line: {exc}") from exc
    return rows


def _flat_names(names: Any, dim: int, key: str) -> tuple[str, ...]:
    """Feature names come as a list, a list of lists or a dict of lists (``{"motors": [..]}``)."""
    flat: list[str] = []

    def walk(x):
        if isinstance(x, dict):
            for v in x.values():
                walk(v)
        elif isinstance(x, (list, tuple)):
            for v in x:
                walk(v)
        elif x is not None:
            flat.append(str(x))

    walk(names)
    if len(flat) == dim:
        return tuple(flat)
    return tuple(f"{key}_{i}" for i in range(dim))


def _column(table: pa.Table, key: str, path: Path) -> np.ndarray:
    """A numeric feature column as a (T, D) float32 array (lists flattened, scalars D=1)."""
    col = table.column(key).combine_chunks()
    n = len(col)
    typ = col.type
    if pa.types.is_fixed_size_list(typ) or pa.types.is_list(typ) or pa.types.is_large_list(typ):
        values = col.flatten()
        if values.null_count or col.null_count:
            raise LeRobotFormatError(f"{path}: column {key!r} has nulls")
        arr = np.asarray(values.to_numpy(zero_copy_only=False), dtype=np.float32)
        if n and arr.size % n:
            raise LeRobotFormatError(f"{path}: column {key!r} has rows of different lengths")
        return arr.reshape(n, -1 if n else 0)
    try:
        return np.asarray(col.to_numpy(zero_copy_only=False), dtype=np.float32).reshape(n, 1)
    except (TypeError, ValueError, pa.ArrowInvalid) as exc:
        raise LeRobotFormatError(f"{path}: column {key!r} of type {typ} is not numeric") from exc


class LeRobotDataset:
    """Metadata of one LeRobot dataset; :meth:`episode` builds episodes from it."""

    def __init__(
        self,
        root: str | Path,
        *,
        action_keys: str | Sequence[str] = "action",
        state_keys: str | Sequence[str] | None = "observation.state",
        camera_keys: Sequence[str] | None = None,
    ):
        self.root = Path(root)
        self.info = _read_json(self.root / "meta" / "info.json")
        if not isinstance(self.info, dict):
            raise LeRobotFormatError(f"{self.root}/meta/info.json: expected an object")
        self.version = str(self.info.get("codebase_version", "v2.1"))
        if not self.version.startswith(("v2", "v3")):
            raise LeRobotFormatError(
                f"{self.root}: LeRobot {self.version} is not supported (v2.0, v2.1, v3.0 are)"
            )
        self.features: dict[str, dict] = self.info.get("features") or {}
        for key in ("fps", "data_path"):
            if key not in self.info:
                raise LeRobotFormatError(f"{self.root}/meta/info.json: missing {key!r}")
        self.fps = float(self.info["fps"])
        self.action_keys = self._keys(action_keys, "action")
        self.state_keys = self._keys(state_keys, "state", optional=True)
        cams = [k for k, f in self.features.items() if f.get("dtype") in ("video", "image")]
        if camera_keys is not None:
            unknown = [k for k in camera_keys if k not in cams]
            if unknown:
                raise LeRobotFormatError(
                    f"{self.root}: unknown camera key(s) {unknown} (cameras: {cams})"
                )
            cams = list(camera_keys)
        self.camera_keys = tuple(cams)
        self.tasks = self._read_tasks()
        self.episodes = self._read_episodes()

    def _keys(self, keys, what: str, optional: bool = False) -> tuple[str, ...]:
        if keys is None:
            return ()
        keys = (keys,) if isinstance(keys, str) else tuple(keys)
        missing = [k for k in keys if k not in self.features]
        if missing:
            if optional and len(missing) == len(keys):
                return ()
            raise LeRobotFormatError(
                f"{self.root}: {what} feature(s) {missing} not in meta/info.json features "
                f"({', '.join(self.features)})"
            )
        return keys

    def names(self, keys: tuple[str, ...], dims: list[int]) -> tuple[str, ...]:
        out: list[str] = []
        for key, dim in zip(keys, dims):
            out.extend(_flat_names(self.features[key].get("names"), dim, key))
        return tuple(out)

    # ------------------------------------------------------------------------------------------
    # metadata

    def _read_tasks(self) -> dict[int, str]:
        meta = self.root / "meta"
        if (meta / "tasks.jsonl").is_file():
            rows = _read_jsonl(meta / "tasks.jsonl")
            return {int(r["task_index"]): str(r["task"]) for r in rows}
        if (meta / "tasks.parquet").is_file():
            table = pq.read_table(meta / "tasks.parquet")
            text_cols = [c for c in table.column_names if pa.types.is_string(table.schema.field(
                c).type) or pa.types.is_large_string(table.schema.field(c).type)]
            if "task_index" not in table.column_names or not text_cols:
                raise LeRobotFormatError(f"{meta / 'tasks.parquet'}: no task/task_index columns")
            text = "task" if "task" in text_cols else text_cols[0]
            return dict(zip(map(int, table.column("task_index").to_pylist()),
                            map(str, table.column(text).to_pylist())))
        return {}

    def _template(self, key: str, **fields) -> Path:
        try:
            return self.root / self.info[key].format(**fields)
        except (KeyError, IndexError, ValueError) as exc:
            raise LeRobotFormatError(
                f"{self.root}/meta/info.json: cannot fill {key} {self.info[key]!r}: {exc}"
            ) from exc

    def _read_episodes(self) -> list[_EpisodeRef]:
        if self.version.startswith("v3"):
            return self._read_episodes_v3()
        chunk_size = int(self.info.get("chunks_size", 1000))
        rows = _read_jsonl(self.root / "meta" / "episodes.jsonl")
        if not rows:  # no episode metadata: one parquet per episode, indices from file names
            found = sorted((self.root / "data").glob("**/episode_*.parquet"))
            rows = [{"episode_index": int(p.stem.split("_")[-1])} for p in found]
        refs = []
        for r in rows:
            idx = int(r["episode_index"])
            fields = dict(episode_chunk=idx // chunk_size, episode_index=idx)
            videos = {}
            for key in self.camera_keys:
                if self.features[key].get("dtype") == "video" and self.info.get("video_path"):
                    videos[key] = (self._template("video_path", video_key=key, **fields), 0.0)
            refs.append(_EpisodeRef(idx, r.get("length"), tuple(r.get("tasks") or ()),
                                    self._template("data_path", **fields), videos))
        return sorted(refs, key=lambda e: e.index)

    def _read_episodes_v3(self) -> list[_EpisodeRef]:
        files = sorted((self.root / "meta" / "episodes").glob("**/*.parquet"))
        if not files:
            raise LeRobotFormatError(f"{self.root}: v3 dataset without meta/episodes/*.parquet")
        refs = []
        for f in files:
            for r in pq.read_table(f).to_pylist():
                idx = int(r["episode_index"])
                data = self._template("data_path", chunk_index=r.get("data/chunk_index", 0),
                                      file_index=r.get("data/file_index", 0), episode_index=idx)
                videos = {}
                for key in self.camera_keys:
                    if self.features[key].get("dtype") != "video" or "video_path" not in self.info:
                        continue
                    path = self._template(
                        "video_path", video_key=key, episode_index=idx,
                        chunk_index=r.get(f"videos/{key}/chunk_index", 0),
                        file_index=r.get(f"videos/{key}/file_index", 0))
                    videos[key] = (path, float(r.get(f"videos/{key}/from_timestamp") or 0.0))
                tasks = r.get("tasks") or ()
                refs.append(_EpisodeRef(idx, r.get("length"),
                                        (tasks,) if isinstance(tasks, str) else tuple(tasks),
                                        data, videos))
        return sorted(refs, key=lambda e: e.index)

    # ------------------------------------------------------------------------------------------
    # episodes

    def _table(self, ref: _EpisodeRef, columns: list[str], cache: dict) -> pa.Table:
        path = ref.data_file
        if path not in cache:
            if not path.is_file():
                raise LeRobotFormatError(f"{self.root}: episode {ref.index}: missing {path}")
            schema = pq.read_schema(path)
            missing = [c for c in columns if c in self.action_keys + self.state_keys
                       and c not in schema.names]
            if missing:
                raise LeRobotFormatError(f"{path}: missing column(s) {missing}")
            cache.clear()  # keep one file: episodes are read in file order
            cache[path] = pq.read_table(path, columns=[c for c in columns if c in schema.names])
        table = cache[path]
        if "episode_index" in table.column_names:
            ep_col = table.column("episode_index").to_numpy()
            if not np.all(ep_col == ref.index):
                table = table.filter(pa.array(ep_col == ref.index))
        if "frame_index" in table.column_names:
            order = np.argsort(table.column("frame_index").to_numpy(), kind="stable")
            if np.any(order != np.arange(len(order))):
                table = table.take(pa.array(order))
        return table

    def episode(self, ref: _EpisodeRef, load_frames: bool, cache: dict,
                missing_videos: list[tuple[int, str]]) -> Episode:
        image_keys = [k for k in self.camera_keys if self.features[k].get("dtype") == "image"]
        columns = [*self.action_keys, *self.state_keys, "timestamp", "frame_index",
                   "episode_index", "task_index", *(image_keys if load_frames else [])]
        table = self._table(ref, columns, cache)
        steps = table.num_rows
        if steps == 0:
            raise LeRobotFormatError(f"{ref.data_file}: no rows for episode {ref.index}")
        acts = [_column(table, k, ref.data_file) for k in self.action_keys]
        actions = np.concatenate(acts, axis=1)
        state = state_names = None
        if self.state_keys:
            parts = [_column(table, k, ref.data_file) for k in self.state_keys]
            state = np.concatenate(parts, axis=1)
            state_names = self.names(self.state_keys, [p.shape[1] for p in parts])
        if "timestamp" in table.column_names:
            ts = table.column("timestamp").to_numpy().astype(np.float64).reshape(-1)
        elif "frame_index" in table.column_names:
            ts = table.column("frame_index").to_numpy().astype(np.float64) / self.fps
        else:
            ts = np.arange(steps) / self.fps
        instruction = ref.tasks[0] if ref.tasks else ""
        if "task_index" in table.column_names:
            instruction = self.tasks.get(int(table.column("task_index")[0].as_py()), instruction)
        frames: dict[str, FrameSource] = {}
        if load_frames:
            for key in self.camera_keys:
                if key in ref.videos:
                    path, offset = ref.videos[key]
                    if path.is_file():
                        # the frame shape is probed from the file: info.json shapes can be stale
                        frames[key] = VideoFrames(path, ts + offset)
                    else:
                        missing_videos.append((ref.index, key))
                elif key in image_keys:
                    blobs = [(b or {}).get("bytes") for b in table.column(key).to_pylist()]
                    if all(blobs):
                        frames[key] = EncodedFrames(blobs)
                    else:
                        missing_videos.append((ref.index, key))
        return Episode(
            name=f"{self.root.name}/episode_{ref.index:06d}",
            fps=self.fps,
            actions=actions,
            action_names=self.names(self.action_keys, [a.shape[1] for a in acts]),
            state=state,
            state_names=state_names or (),
            timestamps=ts - ts[0] if len(ts) else ts,
            instruction=instruction,
            frames=frames,
            source=f"{ref.data_file}#episode_index={ref.index}",
        )


def read_lerobot(
    root: str | Path,
    *,
    episodes: Iterable[int] | None = None,
    load_frames: bool = True,
    action_keys: str | Sequence[str] = "action",
    state_keys: str | Sequence[str] | None = "observation.state",
    camera_keys: Sequence[str] | None = None,
) -> list[Episode]:
    """Read a LeRobot v2.x / v3.0 dataset directory into episodes, in episode_index order.

    episodes     episode indices to read (default all); an unknown index raises
    load_frames  attach lazy camera frame sources (nothing is decoded until ``get``)
    action_keys  feature(s) concatenated into the actions (default ``"action"``)
    state_keys   feature(s) concatenated into the state; None or absent features: no state
    camera_keys  cameras to attach (default every ``video`` / ``image`` feature)
    """
    ds = LeRobotDataset(root, action_keys=action_keys, state_keys=state_keys,
                        camera_keys=camera_keys)
    refs = ds.episodes
    if episodes is not None:
        wanted = list(episodes)
        by_index = {r.index: r for r in refs}
        unknown = [i for i in wanted if i not in by_index]
        if unknown:
            raise LeRobotFormatError(
                f"{ds.root}: unknown episode index(es) {unknown[:10]} ({len(refs)} episodes)"
            )
        refs = [by_index[i] for i in wanted]
    cache: dict = {}
    missing: list[tuple[int, str]] = []
    out = [ds.episode(ref, load_frames, cache, missing) for ref in refs]
    if missing:
        listed = ", ".join(f"{i}:{k}" for i, k in missing[:20])
        more = f" and {len(missing) - 20} more" if len(missing) > 20 else ""
        warnings.warn(
            f"{ds.root}: {len(missing)} episode camera(s) without video, kept without frames "
            f"(episode:camera): {listed}{more}",
            stacklevel=2,
        )
    return out
