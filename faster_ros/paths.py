"""Where the package's data lives: config/, models/, launch/.

An editable install (``pip install -e .``) or a source checkout keeps them next to the package; a
normal ``pip install .`` or ``colcon build`` puts them in ``<prefix>/share/faster_ros``. Both are
looked up, the checkout first.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

PACKAGE_NAME = "faster_ros"
_SOURCE_ROOT = Path(__file__).resolve().parent.parent


def _share_dirs() -> list[Path]:
    dirs = []
    for prefix in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep):
        if prefix:
            dirs.append(Path(prefix) / "share" / PACKAGE_NAME)
    dirs.append(Path(sys.prefix) / "share" / PACKAGE_NAME)
    return dirs


def data_dir(kind: str) -> Path:
    """The first existing ``kind`` folder (``config``, ``models``, ``launch``) of the package."""
    for root in [_SOURCE_ROOT, *_share_dirs()]:
        candidate = root / kind
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(
        f"faster_ros data folder {kind!r} not found next to the package ({_SOURCE_ROOT}) "
        f"or in any share/{PACKAGE_NAME} of AMENT_PREFIX_PATH / {sys.prefix}"
    )


def config_path(name_or_path: str | os.PathLike) -> Path:
    """Resolve an embodiment name (``r1lite_wbc``) or a YAML path to a file path."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise FileNotFoundError(f"embodiment config file not found: {path}")
        return path
    candidate = data_dir("config") / f"{name_or_path}.yaml"
    if not candidate.is_file():
        known = sorted(p.stem for p in data_dir("config").glob("*.yaml"))
        raise FileNotFoundError(
            f"unknown embodiment {str(name_or_path)!r}: no {candidate}; known: {', '.join(known)}"
        )
    return candidate


def model_path(name_or_path: str | os.PathLike) -> Path:
    """Resolve a shipped model name (``g1_inspire_vla``) or a directory path."""
    path = Path(name_or_path)
    if path.is_dir():
        return path
    if path.is_absolute() or os.sep in str(name_or_path):
        raise FileNotFoundError(f"model directory not found: {path}")
    candidate = data_dir("models") / str(name_or_path)
    if not candidate.is_dir():
        raise FileNotFoundError(f"model {str(name_or_path)!r} not found: no directory {candidate}")
    return candidate
