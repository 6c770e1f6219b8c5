"""Dataset mixtures: ``"path:ratio"`` specs and the sampling weights they imply.

FASTer trains its tokenizer and policy on mixtures of datasets with fixed sampling ratios (paper,
Table 3). A mixture is written as a list of ``path[:ratio]`` strings; a ratio is a non-negative
relative weight (default 1) and :func:`mix_weights` turns the ratios into sampling probabilities,
per dataset or per sample.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class DatasetSpec:
    """One dataset of a mixture: where it is and its relative sampling ratio."""

    path: Path
    ratio: float = 1.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))
        if not (isinstance(self.ratio, (int, float)) and math.isfinite(self.ratio)
                and self.ratio >= 0):
            raise ValueError(f"dataset {self.path}: ratio must be >= 0, got {self.ratio!r}")
        object.__setattr__(self, "ratio", float(self.ratio))

    @classmethod
    def parse(cls, text: str) -> DatasetSpec:
        """``"data/g1:0.7"`` -> DatasetSpec(Path("data/g1"), 0.7); no ``:ratio`` means 1.

        Only the text after the LAST colon is taken as the ratio, and only if it parses as a
        number, so paths that contain colons still work (``"a:b/c"`` is a path).
        """
        text = str(text).strip()
        if not text:
            raise ValueError("empty dataset spec")
        path, sep, tail = text.rpartition(":")
        if sep and path:
            try:
                ratio = float(tail)
            except ValueError:
                return cls(Path(text))
            if not math.isfinite(ratio) or ratio < 0:
                raise ValueError(f"dataset spec {text!r}: ratio must be >= 0, got {tail!r}")
            return cls(Path(path), ratio)
        return cls(Path(text))


def parse_specs(texts: str | Sequence[str]) -> list[DatasetSpec]:
    """Parse a comma-separated string or a list of ``path[:ratio]`` strings."""
    if isinstance(texts, str):
        texts = [t for t in texts.split(",") if t.strip()]
    specs = [DatasetSpec.parse(t) for t in texts]
    if not specs:
        raise ValueError("no datasets given")
    return specs


def mix_weights(
    specs: Sequence[DatasetSpec | float], sizes: Sequence[int] | None = None
) -> np.ndarray:
    """Sampling probabilities of a mixture.

    Without ``sizes``: (K,) probabilities of drawing from each dataset, the normalised ratios.
    With ``sizes`` (samples per dataset, e.g. chunk windows): (sum(sizes),) per-sample
    probabilities, dataset by dataset in order, such that a sample is drawn from dataset k with
    probability ``ratio_k / sum(ratios)`` and uniformly within it; an empty dataset's share is
    spread over the others. Use them with ``np.random.Generator.choice(p=...)`` or a torch
    ``WeightedRandomSampler``.
    """
    ratios = np.array([s.ratio if isinstance(s, DatasetSpec) else float(s) for s in specs],
                      dtype=np.float64)
    if ratios.size == 0:
        raise ValueError("mix_weights: no datasets")
    if np.any(~np.isfinite(ratios)) or np.any(ratios < 0):
        raise ValueError(f"mix_weights: ratios must be finite and >= 0, got {ratios.tolist()}")
    if sizes is None:
        if ratios.sum() <= 0:
            raise ValueError("mix_weights: all ratios are zero")
        return ratios / ratios.sum()
    sizes_arr = np.asarray(sizes, dtype=np.int64)
    if sizes_arr.shape != ratios.shape or np.any(sizes_arr < 0):
        raise ValueError(
            f"mix_weights: need one size >= 0 per dataset, got {list(sizes)} for "
            f"{len(ratios)} datasets"
        )
    ratios = np.where(sizes_arr > 0, ratios, 0.0)
    if ratios.sum() <= 0:
        raise ValueError("mix_weights: no dataset with a positive ratio has samples")
    per_dataset = ratios / ratios.sum()
    parts = [np.full(n, p / n) if n else np.zeros(0) for p, n in zip(per_dataset, sizes_arr)]
    return np.concatenate(parts)
