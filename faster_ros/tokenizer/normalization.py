"""Per-dimension quantile normalisation of actions, stored with the tokenizer.

FASTer (appendix A.5, Fig. 14) and FAST normalise every action dimension by its 1st / 99th
percentile to [-1, 1] and clip. Here the bounds map to [-1, 1] and values are clipped to
[-clip, clip] (``VQConfig.clip``, 1.5 by default, so that the 2 % of values beyond the quantiles
are not flattened onto the bound); every clipped value is counted and reported.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

MIN_HALF_RANGE = 1e-4  # a constant dimension gets this half-range (in its own unit)


@dataclass(frozen=True)
class NormalizedActions:
    """Normalised actions (B, H, D) and how many values were clipped (per dimension, (D,))."""

    values: Tensor
    clipped: Tensor

    @property
    def num_clipped(self) -> int:
        return int(self.clipped.sum())


class QuantileNormalizer(nn.Module):
    """x_n = clip((x - center) / half_range, -clip, clip) with center / half_range from the
    ``quantile_low`` / ``quantile_high`` bounds of the training data (FAST / FASTer).

    Buffers ``low`` and ``high`` (D,) are saved in the tokenizer's safetensors file.
    """

    def __init__(self, action_dim: int, clip: float = 1.5):
        super().__init__()
        self.clip = float(clip)
        self.register_buffer("low", -torch.ones(action_dim))
        self.register_buffer("high", torch.ones(action_dim))
        self.register_buffer("fitted", torch.tensor(False))

    @torch.no_grad()
    def fit(self, actions: np.ndarray | Tensor, q_low: float, q_high: float,
            limits: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
        """Set the bounds from training actions (N, D) (any leading shape, D last).

        A dimension constant in the training data (quantile range < 1e-6) takes its bounds
        from ``limits`` (lower (D,), upper (D,), e.g. the embodiment's joint limits) when given,
        so values the data never showed are not all clipped. Returns the (D,) bool mask of
        dimensions that did."""
        data = np.asarray(actions, dtype=np.float64)
        data = data.reshape(-1, data.shape[-1])
        if data.shape[-1] != self.low.numel():
            raise ValueError(f"fit: expected {self.low.numel()} dims, got {data.shape[-1]}")
        if not np.isfinite(data).all():
            raise ValueError("fit: training actions contain NaN or inf")
        low, high = np.quantile(data, [q_low, q_high], axis=0)
        flat = (high - low) < 1e-6
        if limits is not None:
            low = np.where(flat, np.asarray(limits[0], dtype=np.float64), low)
            high = np.where(flat, np.asarray(limits[1], dtype=np.float64), high)
        self.low.copy_(torch.from_numpy(low).float())
        self.high.copy_(torch.from_numpy(high).float())
        self.fitted.fill_(True)
        return flat if limits is not None else np.zeros_like(flat)

    @property
    def center(self) -> Tensor:
        return (self.high + self.low) / 2

    @property
    def half_range(self) -> Tensor:
        """(D,) physical units per normalised unit."""
        return ((self.high - self.low) / 2).clamp_min(MIN_HALF_RANGE)

    def normalize(self, x: Tensor) -> NormalizedActions:
        """x (..., D) physical -> clipped normalised values and per-dimension clip counts."""
        z = (x - self.center) / self.half_range
        outside = z.abs() > self.clip
        clipped = outside.reshape(-1, z.shape[-1]).sum(0)
        return NormalizedActions(z.clamp(-self.clip, self.clip), clipped)

    def denormalize(self, z: Tensor) -> Tensor:
        """z (..., D) normalised -> physical units."""
        return z * self.half_range + self.center

    def extra_repr(self) -> str:
        return f"dims={self.low.numel()}, clip={self.clip}"
