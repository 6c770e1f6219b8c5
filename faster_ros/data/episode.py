"""One recorded robot episode, whatever it was read from, and the helpers that cut it up.

An :class:`Episode` is what every reader in ``faster_ros.data`` returns (npz action files, LeRobot
datasets, rosbag2 recordings): per-step actions and (optionally) proprioceptive state on one
time base, the language instruction and lazy camera frame sources. The tokenizer trains on
:func:`chunk_windows` of ``Episode.actions``; :func:`split_episodes` holds out whole episodes.

No rclpy here.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class FrameSource(Protocol):
    """Lazy access to the frames of one camera of one episode, one frame per episode step.

    ``get(i)`` returns frame ``i`` as an (H, W, 3) uint8 RGB array; ``shape`` is (H, W, 3).
    """

    def __len__(self) -> int: ...

    def get(self, i: int) -> np.ndarray: ...

    @property
    def shape(self) -> tuple[int, int, int]: ...


class ArrayFrames:
    """A :class:`FrameSource` over frames already in memory: (T, H, W, 3) uint8 RGB."""

    def __init__(self, frames: np.ndarray):
        frames = np.asarray(frames)
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
            raise ValueError(
                f"ArrayFrames expects (T, H, W, 3) uint8 RGB, got {frames.shape} {frames.dtype}"
            )
        self._frames = frames

    def __len__(self) -> int:
        return len(self._frames)

    def get(self, i: int) -> np.ndarray:
        return self._frames[_check_index(i, len(self._frames))]

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self._frames.shape[1:])  # type: ignore[return-value]


def _check_index(i: int, n: int) -> int:
    i = int(i)
    if i < 0:
        i += n
    if not 0 <= i < n:
        raise IndexError(f"frame index out of range for {n} frames")
    return i


def _readonly(a: np.ndarray) -> np.ndarray:
    a = a.view()
    a.flags.writeable = False
    return a


@dataclass(frozen=True)
class Episode:
    """One episode: T steps at ``fps`` Hz.

    actions        (T, D) float32, step t is the command issued at ``timestamps[t]``
    action_names   D names (joint / dimension names of the source)
    state          (T, S) float32 proprioceptive state at ``timestamps[t]``, or None
    state_names    S names (empty when there is no state)
    timestamps     (T,) float64 seconds from the episode start (default ``arange(T) / fps``)
    instruction    language instruction ("" when the source has none)
    frames         camera name -> :class:`FrameSource` with T frames aligned to the steps;
                   a camera missing for this episode is simply absent
    source         where it came from (file path plus the episode within it)
    units          free-text unit description of the action dimensions, if the source says

    Arrays are stored read-only (views of the reader's buffers): copy before editing in place.
    """

    name: str
    fps: float
    actions: np.ndarray
    action_names: tuple[str, ...]
    state: np.ndarray | None = None
    state_names: tuple[str, ...] = ()
    timestamps: np.ndarray | None = None
    instruction: str = ""
    frames: Mapping[str, FrameSource] = field(default_factory=dict)
    source: str = ""
    units: str = ""

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        if not (isinstance(self.fps, (int, float)) and math.isfinite(self.fps) and self.fps > 0):
            raise ValueError(f"episode {self.name!r}: fps must be positive, got {self.fps!r}")
        set_(self, "fps", float(self.fps))
        actions = np.asarray(self.actions, dtype=np.float32)
        if actions.ndim != 2:
            raise ValueError(f"episode {self.name!r}: actions must be (T, D), got {actions.shape}")
        steps, dim = actions.shape
        names = tuple(str(n) for n in self.action_names)
        if len(names) != dim:
            raise ValueError(
                f"episode {self.name!r}: {len(names)} action_names for {dim} action dims"
            )
        set_(self, "actions", _readonly(actions))
        set_(self, "action_names", names)
        if self.state is not None:
            state = np.asarray(self.state, dtype=np.float32)
            if state.ndim != 2 or len(state) != steps:
                raise ValueError(
                    f"episode {self.name!r}: state must be ({steps}, S), got {state.shape}"
                )
            state_names = tuple(str(n) for n in self.state_names)
            if len(state_names) != state.shape[1]:
                raise ValueError(
                    f"episode {self.name!r}: {len(state_names)} state_names for "
                    f"{state.shape[1]} state dims"
                )
            set_(self, "state", _readonly(state))
            set_(self, "state_names", state_names)
        elif self.state_names:
            raise ValueError(f"episode {self.name!r}: state_names given without state")
        if self.timestamps is None:
            ts = np.arange(steps, dtype=np.float64) / self.fps
        else:
            ts = np.asarray(self.timestamps, dtype=np.float64)
            if ts.shape != (steps,):
                raise ValueError(
                    f"episode {self.name!r}: timestamps must be ({steps},), got {ts.shape}"
                )
        set_(self, "timestamps", _readonly(ts))
        frames = dict(self.frames)
        for cam, src in frames.items():
            if len(src) != steps:
                raise ValueError(
                    f"episode {self.name!r}: camera {cam!r} has {len(src)} frames for "
                    f"{steps} steps"
                )
        set_(self, "frames", frames)

    def __len__(self) -> int:
        return len(self.actions)

    @property
    def action_dim(self) -> int:
        return self.actions.shape[1]

    @property
    def duration_s(self) -> float:
        return len(self) / self.fps


def chunk_windows(
    actions: np.ndarray, chunk_size: int, stride: int = 1, *, align_end: bool = False,
    pad_end: bool = False,
) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(start, actions[start:start + chunk_size])`` windows of shape (H, D).

    Windows never cross the episode end and are never padded: starts are ``0, stride,
    2 * stride, ...`` while ``start + chunk_size <= T``. An episode shorter than ``chunk_size``
    yields nothing. With ``align_end=True`` one more window, starting at ``T - chunk_size``, is
    added when the strided windows stop short of the last step, so every step of the episode is
    covered (that last window overlaps the one before more than ``stride``).

    With ``pad_end=True`` the starts go on to the last step instead, and a window that would
    cross the end repeats the episode's last action (the robot holds its final command; LeRobot
    and ACT pad their chunks the same way): a policy trained on them has seen chunk starts in the
    episode's last ``chunk_size - 1`` steps too. ``align_end`` is then moot.

    The windows are read-only views of ``actions`` (no copy; padded windows are new arrays).
    Call it per episode: passing a concatenation of episodes would produce windows that cross
    episode boundaries.

    >>> [s for s, _ in chunk_windows(np.zeros((10, 2)), 4, 3)]
    [0, 3, 6]
    >>> [s for s, _ in chunk_windows(np.zeros((11, 2)), 4, 3, align_end=True)]
    [0, 3, 6, 7]
    >>> [(s, w[:, 0].tolist()) for s, w in chunk_windows(np.arange(5.0)[:, None], 3, 2,
    ...                                                   pad_end=True)]
    [(0, [0.0, 1.0, 2.0]), (2, [2.0, 3.0, 4.0]), (4, [4.0, 4.0, 4.0])]
    """
    if not isinstance(chunk_size, (int, np.integer)) or chunk_size <= 0:
        raise ValueError(f"chunk_size must be a positive int, got {chunk_size!r}")
    if not isinstance(stride, (int, np.integer)) or stride <= 0:
        raise ValueError(f"stride must be a positive int, got {stride!r}")
    actions = np.asarray(actions)
    if actions.ndim != 2:
        raise ValueError(f"actions must be (T, D), got shape {actions.shape}")
    view = _readonly(actions)
    last = len(actions) - chunk_size
    start = -stride
    for start in range(0, last + 1, stride):
        yield start, view[start:start + chunk_size]
    if pad_end and len(actions):
        for t in range(start + stride, len(actions), stride):
            tail = view[t:]
            yield t, _readonly(np.concatenate(
                [tail, np.repeat(tail[-1:], chunk_size - len(tail), 0)]))
        return
    if align_end and last >= 0 and start != last:
        yield last, view[last:]


def split_episodes(
    episodes: Sequence[Episode], heldout_fraction: float, seed: int | str = "last"
) -> tuple[list[Episode], list[Episode]]:
    """Split whole episodes into ``(train, heldout)``, deterministically.

    ``round(heldout_fraction * n)`` episodes are held out, at least one when the fraction is
    positive and there are two or more episodes, and never all of them. ``seed="last"`` holds out
    the last ones in the given order (a temporal split); an int seed picks them by a hash of
    ``(seed, episode name)``, so an episode's side depends on its name, not on the list order.
    Both lists keep the input order.
    """
    if not 0.0 <= heldout_fraction < 1.0:
        raise ValueError(f"heldout_fraction must be in [0, 1), got {heldout_fraction!r}")
    n = len(episodes)
    k = int(round(heldout_fraction * n))
    if heldout_fraction > 0 and n >= 2:
        k = max(k, 1)
    k = min(k, max(n - 1, 0))
    if seed == "last":
        held = set(range(n - k, n))
    elif isinstance(seed, (int, np.integer)) and not isinstance(seed, bool):
        seen: dict[str, int] = {}
        keys = []
        for i, ep in enumerate(episodes):
            occurrence = seen.get(ep.name, 0)
            seen[ep.name] = occurrence + 1
            digest = hashlib.sha256(f"{int(seed)}\0{ep.name}\0{occurrence}".encode()).digest()
            keys.append((digest, i))
        held = {i for _, i in sorted(keys)[:k]}
    else:
        raise ValueError(f"seed must be an int or 'last', got {seed!r}")
    train = [ep for i, ep in enumerate(episodes) if i not in held]
    heldout = [ep for i, ep in enumerate(episodes) if i in held]
    return train, heldout
