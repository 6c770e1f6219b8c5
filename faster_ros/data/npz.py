"""Read the flat action-file format of ``shared/data/actions/*.npz`` into episodes.

Keys (loaded without pickle):

    actions       (N, D) float   all episodes concatenated
    episode_ends  (E,) int       exclusive end index of each episode, increasing, last == N
    fps           scalar         control rate in Hz
    names         (D,) str       dimension names (optional: ``a0 .. a{D-1}``)
    units         scalar str     unit description (optional)
    source        scalar str     provenance (optional)
    state         (N, S) float   proprioceptive state per step (optional)
    state_names   (S,) str       state names (optional: ``names`` when S == D, else ``s0 ..``)

Any error names the file and the key.
"""

from __future__ import annotations

import math
import zipfile
from pathlib import Path

import numpy as np

from faster_ros.data.episode import Episode

REQUIRED_KEYS = ("actions", "episode_ends", "fps")


class NpzFormatError(ValueError):
    """An action npz file is missing a key or has inconsistent shapes."""


def _scalar_str(data, key: str) -> str:
    if key not in data.files:
        return ""
    value = data[key]
    return str(value.item() if value.ndim == 0 else " ".join(map(str, value.ravel())))


def read_npz(
    path: str | Path, *, episodes: list[int] | None = None, instruction: str = ""
) -> list[Episode]:
    """Read an action npz file into one :class:`Episode` per ``episode_ends`` entry.

    ``episodes`` selects a subset by episode index (in the file's order); ``instruction`` is
    given to every episode (the format has none).
    """
    path = Path(path)
    try:
        data = np.load(path, allow_pickle=False)
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise NpzFormatError(f"{path}: not a readable npz file: {exc}") from exc
    with data:
        if not isinstance(data, np.lib.npyio.NpzFile):
            raise NpzFormatError(f"{path}: expected an .npz archive, got a single array")
        missing = [k for k in REQUIRED_KEYS if k not in data.files]
        if missing:
            raise NpzFormatError(
                f"{path}: missing key(s) {', '.join(missing)} (has: {', '.join(data.files)})"
            )
        try:
            actions = np.asarray(data["actions"], dtype=np.float32)
            ends = np.asarray(data["episode_ends"])
            fps_arr = np.asarray(data["fps"])
            names = data["names"] if "names" in data.files else None
            state = data["state"] if "state" in data.files else None
            state_names = data["state_names"] if "state_names" in data.files else None
            units, source = _scalar_str(data, "units"), _scalar_str(data, "source")
        except ValueError as exc:  # e.g. an object array that would need pickle
            raise NpzFormatError(f"{path}: unreadable array: {exc}") from exc

    if actions.ndim != 2:
        raise NpzFormatError(f"{path}: 'actions' must be (N, D), got shape {actions.shape}")
    n, dim = actions.shape
    if fps_arr.size != 1:
        raise NpzFormatError(f"{path}: 'fps' must be a scalar, got shape {fps_arr.shape}")
    try:
        fps = float(fps_arr.ravel()[0])
    except (TypeError, ValueError) as exc:
        raise NpzFormatError(f"{path}: 'fps' is not a number: {fps_arr!r}") from exc
    if not (math.isfinite(fps) and fps > 0):
        raise NpzFormatError(f"{path}: 'fps' must be positive, got {fps}")
    if ends.ndim != 1 or len(ends) == 0 or not np.issubdtype(ends.dtype, np.integer):
        raise NpzFormatError(
            f"{path}: 'episode_ends' must be a non-empty 1-D int array, got {ends.shape} "
            f"{ends.dtype}"
        )
    starts = np.concatenate([[0], ends[:-1]])
    if np.any(ends <= starts) or ends[-1] != n:
        raise NpzFormatError(
            f"{path}: 'episode_ends' must increase strictly and end at N={n} "
            f"(got first {ends[:3].tolist()}..., last {int(ends[-1])})"
        )
    if names is None:
        names = tuple(f"a{i}" for i in range(dim))
    else:
        names = tuple(str(x) for x in np.asarray(names).ravel())
        if len(names) != dim:
            raise NpzFormatError(f"{path}: {len(names)} 'names' for {dim} action dims")
    if state is not None:
        state = np.asarray(state, dtype=np.float32)
        if state.ndim != 2 or len(state) != n:
            raise NpzFormatError(f"{path}: 'state' must be ({n}, S), got shape {state.shape}")
        if state_names is not None:
            state_names = tuple(str(x) for x in np.asarray(state_names).ravel())
        elif state.shape[1] == dim:
            state_names = names
        else:
            state_names = tuple(f"s{i}" for i in range(state.shape[1]))
        if len(state_names) != state.shape[1]:
            raise NpzFormatError(
                f"{path}: {len(state_names)} 'state_names' for {state.shape[1]} state dims"
            )

    indices = range(len(ends)) if episodes is None else episodes
    out = []
    for i in indices:
        if not 0 <= i < len(ends):
            raise NpzFormatError(f"{path}: episode {i} out of range (file has {len(ends)})")
        a, b = int(starts[i]), int(ends[i])
        out.append(
            Episode(
                name=f"{path.stem}/episode_{i:06d}",
                fps=fps,
                actions=actions[a:b],
                action_names=names,
                state=None if state is None else state[a:b],
                state_names=() if state is None else state_names,
                instruction=instruction,
                source=f"{path}#episode={i}" + (f" ({source})" if source else ""),
                units=units,
            )
        )
    return out
