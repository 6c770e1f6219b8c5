"""Lazy frame sources for episode cameras: video files (PyAV) and encoded image lists.

:class:`VideoFrames` maps each episode step to the video frame whose presentation time is
nearest to the step's timestamp (within ``tolerance_s``), the way LeRobot pairs parquet rows with
video frames. Frames are decoded on demand: sequential access continues the running decoder,
a backward or far jump seeks to the keyframe before the target; the last ``cache_size`` decoded
frames are kept. At most :data:`MAX_OPEN_VIDEOS` containers stay open process-wide (least
recently used closed first). After a fork (DataLoader workers) a source reopens its file.

Measured on the shared G1 videos (224x168 H.264, 2 cores): demuxing the packet index takes
about 10 ms per episode; decoding a whole 393-frame episode to RGB 50-70 ms (yuv420p is converted
with OpenCV, ~10x faster than libswscale's default bicubic path). A random access costs a seek
plus decoding from the previous keyframe (~10 ms with the shared videos' 250-frame GOP).
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from faster_ros.data.images import compressed_to_rgb

MAX_OPEN_VIDEOS = 16
_open_lock = threading.Lock()
_open: OrderedDict[int, VideoFrames] = OrderedDict()


class VideoDecodeError(ValueError):
    """A video file cannot be opened or lacks a frame for a requested timestamp."""


def _frame_to_rgb(frame) -> np.ndarray:
    if frame.format.name == "yuv420p" and frame.width % 2 == 0 and frame.height % 2 == 0:
        return cv2.cvtColor(frame.to_ndarray(), cv2.COLOR_YUV2RGB_I420)
    return frame.reformat(format="rgb24", interpolation="BILINEAR").to_ndarray()


class VideoFrames:
    """Frames of one video file at given timestamps (seconds in the video's time base).

    ``timestamps[i]`` is the time of episode step i; ``get(i)`` returns the (H, W, 3) uint8 RGB
    frame presented nearest to it. A step with no frame within ``tolerance_s`` (default half a
    frame period) raises :class:`VideoDecodeError` naming the file and the time.
    """

    def __init__(
        self,
        path: str | Path,
        timestamps: Sequence[float] | np.ndarray,
        *,
        tolerance_s: float | None = None,
        cache_size: int = 32,
        shape: tuple[int, int, int] | None = None,
    ):
        self.path = Path(path)
        self.timestamps = np.asarray(timestamps, dtype=np.float64)
        self.tolerance_s = tolerance_s
        self.cache_size = max(1, int(cache_size))
        self._shape = shape
        self._lock = threading.Lock()
        self._reset()

    def _reset(self) -> None:
        self._pid = os.getpid()
        self._container = self._stream = self._decoder = None
        self._next = -1  # index of the frame the running decoder yields next (-1: none)
        self._frame_pts: np.ndarray | None = None
        self._row_frame: np.ndarray | None = None
        self._pts_index: dict[int, int] = {}
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()

    def __getstate__(self):
        state = dict(self.__dict__)
        for key in ("_lock", "_container", "_stream", "_decoder"):
            state.pop(key)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._lock = threading.Lock()
        self._container = self._stream = self._decoder = None
        self._next = -1

    def __len__(self) -> int:
        return len(self.timestamps)

    @property
    def shape(self) -> tuple[int, int, int]:
        if self._shape is None:
            with self._lock:
                self._ensure_open()
                ctx = self._stream.codec_context
                self._shape = (int(ctx.height), int(ctx.width), 3)
        return self._shape

    # ------------------------------------------------------------------------------------------

    def _ensure_open(self) -> None:
        import av  # local: PyAV is only needed when frames are read

        if self._pid != os.getpid():  # forked: never touch the parent's decoder
            self._reset()
        if self._container is not None:
            return
        try:
            container = av.open(str(self.path))
        except (OSError, av.error.FFmpegError) as exc:
            raise VideoDecodeError(f"{self.path}: cannot open video: {exc}") from exc
        if not container.streams.video:
            container.close()
            raise VideoDecodeError(f"{self.path}: no video stream")
        self._container, self._stream = container, container.streams.video[0]
        self._stream.thread_type = "AUTO"
        if self._frame_pts is None:
            self._index()
        _register(self)

    def _index(self) -> None:
        """Presentation times of all frames (from packets, no decoding) and the row mapping."""
        stream = self._stream
        pts = sorted(p.pts for p in self._container.demux(stream) if p.pts is not None)
        if not pts:
            raise VideoDecodeError(f"{self.path}: video stream has no frames")
        self._container.seek(0, stream=stream, backward=True)
        self._frame_pts = np.asarray(pts, dtype=np.int64)
        self._pts_index = {p: i for i, p in enumerate(pts)}
        times = self._frame_pts * float(stream.time_base)
        tol = self.tolerance_s
        if tol is None:
            rate = float(stream.average_rate or 0) or (
                (len(times) - 1) / (times[-1] - times[0]) if times[-1] > times[0] else 30.0)
            tol = 0.5 / rate + 1e-4
        j = np.clip(np.searchsorted(times, self.timestamps), 1, len(times) - 1)
        if len(times) == 1:
            nearest = np.zeros(len(self.timestamps), dtype=np.int64)
        else:
            ts = self.timestamps
            nearest = np.where(np.abs(ts - times[j - 1]) <= np.abs(times[j] - ts), j - 1, j)
        ok = np.abs(times[nearest] - self.timestamps) <= tol
        self._row_frame = np.where(ok, nearest, -1)
        self._times = times

    def close(self) -> None:
        with self._lock:
            self._close_locked()
        with _open_lock:
            _open.pop(id(self), None)

    def _close_locked(self) -> None:
        if self._container is not None and self._pid == os.getpid():
            self._container.close()
        self._container = self._stream = self._decoder = None
        self._next = -1

    def __del__(self):
        try:
            self._close_locked()
        except Exception:  # interpreter shutdown
            pass

    # ------------------------------------------------------------------------------------------

    def frame_index(self, i: int) -> int:
        """Index of the video frame shown at step ``i``."""
        with self._lock:
            self._ensure_open()
            return self._frame_for_row(i)

    def _frame_for_row(self, i: int) -> int:
        n = len(self.timestamps)
        if not -n <= i < n:
            raise IndexError(f"{self.path}: step {i} out of range for {n} steps")
        k = int(self._row_frame[i])
        if k < 0:
            raise VideoDecodeError(
                f"{self.path}: no frame within tolerance of t={self.timestamps[i]:.4f}s "
                f"(step {i % n}; video has {len(self._times)} frames, "
                f"{self._times[0]:.3f}..{self._times[-1]:.3f}s)"
            )
        return k

    def get(self, i: int) -> np.ndarray:
        with self._lock:
            self._ensure_open()
            k = self._frame_for_row(int(i))
            if k in self._cache:
                self._cache.move_to_end(k)
                return self._cache[k]
            return self._decode(k)

    def _decode(self, k: int) -> np.ndarray:
        if not (0 <= self._next <= k < self._next + 2 * self.cache_size):
            pts = int(self._frame_pts[k])
            self._container.seek(pts, stream=self._stream, backward=True)
            self._decoder = self._container.decode(self._stream)
            self._next = 0  # unknown until the first frame: set from its pts below
        for frame in self._decoder:
            idx = self._pts_index.get(frame.pts)
            if idx is None:
                continue
            self._next = idx + 1
            if idx < k - self.cache_size:
                continue  # far before the target: skip the colour conversion
            img = _frame_to_rgb(frame)
            self._cache[idx] = img
            self._cache.move_to_end(idx)
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
            if idx >= k:
                break
        else:
            self._next = -1
        if k not in self._cache:
            raise VideoDecodeError(f"{self.path}: frame {k} could not be decoded")
        return self._cache[k]

    def to_array(self) -> np.ndarray:
        """All steps' frames decoded into one (T, H, W, 3) uint8 array (sequential decode)."""
        return np.stack([self.get(i) for i in range(len(self))]) if len(self) else \
            np.zeros((0, *self.shape), np.uint8)


def _register(src: VideoFrames) -> None:
    """Track open containers; close the least recently opened beyond MAX_OPEN_VIDEOS."""
    evict = []
    with _open_lock:
        _open[id(src)] = src
        _open.move_to_end(id(src))
        while len(_open) > MAX_OPEN_VIDEOS:
            evict.append(_open.popitem(last=False)[1])
    for other in evict:
        if other is not src and other._lock.acquire(blocking=False):
            try:
                other._close_locked()
            finally:
                other._lock.release()


class EncodedFrames:
    """Frames stored as encoded images (PNG/JPEG bytes), decoded on each ``get``."""

    def __init__(self, blobs: Sequence[bytes], shape: tuple[int, int, int] | None = None,
                 fmt: str = ""):
        self._blobs = list(blobs)
        self._shape = shape
        self._fmt = fmt

    def __len__(self) -> int:
        return len(self._blobs)

    def get(self, i: int) -> np.ndarray:
        return compressed_to_rgb(self._fmt, self._blobs[i])

    @property
    def shape(self) -> tuple[int, int, int]:
        if self._shape is None:
            self._shape = tuple(self.get(0).shape) if self._blobs else (0, 0, 3)
        return self._shape
