"""FASTer's action patchifier (section 3.1): a chunk (H, D) -> (m * n) patches of h * d values.

Time is cut uniformly into m = H / h groups of h steps; the D dimensions are cut NON-uniformly
into the n embodiment patch groups (left arm / right arm / hand / torso / base ...), each
zero-padded to the widest group d. The inverse drops the padding and is exact.

Example, H = 4, h = 2, groups ((0, 2), (1,)) so d = 2::

    a (4, 3) -> grouped (4, 2 groups, 2) = [[a0, a2], [a1, pad]] per step
             -> patches (m=2, n=2, h*d=4): patch (t, g) = steps 2t..2t+1 of group g, time-major
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import Tensor, nn


class Patchifier(nn.Module):
    """Patchify / unpatchify action chunks for given non-uniform dimension groups (FASTer)."""

    def __init__(self, action_dim: int, time_patch: int, groups: tuple[tuple[int, ...], ...]):
        super().__init__()
        self.action_dim = action_dim
        self.time_patch = time_patch
        self.num_groups = len(groups)
        self.group_width = max(len(g) for g in groups)
        pad = action_dim  # index of an extra all-zero column
        gather = [list(g) + [pad] * (self.group_width - len(g)) for g in groups]
        gather_flat = torch.tensor(gather, dtype=torch.long).reshape(-1)  # (n * d,)
        scatter = torch.empty(action_dim, dtype=torch.long)  # position of dim i in (n * d)
        for pos, i in enumerate(gather_flat.tolist()):
            if i != pad:
                scatter[i] = pos
        self.register_buffer("gather_index", gather_flat, persistent=False)
        self.register_buffer("scatter_index", scatter, persistent=False)
        self.register_buffer("valid", gather_flat != pad, persistent=False)

    def patchify(self, actions: Tensor) -> Tensor:
        """actions (B, H, D) -> patches (B, m, n, h * d), padding zero."""
        padded = torch.cat([actions, actions.new_zeros(*actions.shape[:-1], 1)], dim=-1)
        grouped = padded.index_select(-1, self.gather_index)  # (B, H, n * d)
        return rearrange(grouped, "b (m h) (n d) -> b m n (h d)", h=self.time_patch,
                         d=self.group_width)

    def unpatchify(self, patches: Tensor) -> Tensor:
        """patches (B, m, n, h * d) -> actions (B, H, D); padded entries are dropped."""
        grouped = rearrange(patches, "b m n (h d) -> b (m h) (n d)", h=self.time_patch,
                            d=self.group_width)
        return grouped.index_select(-1, self.scatter_index)
